package bridge

import (
	"os"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/ingest/decode"
)

// TestReadmeDocumentsEverything keeps README.md in step with the flags and
// the dead-letter reasons.
func TestReadmeDocumentsEverything(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	Command(&cli.Conn{}).Flags().VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(readme, "| `--"+f.Name+"` |") {
			t.Errorf("README.md flags table lacks --%s", f.Name)
		}
	})
	reasons := append([]decode.Reason{ReasonCommandExpired, ReasonCommandInvalid, ReasonReplyInvalid, ReasonReplyUnknown, ReasonReplyWrongDevice}, decode.Reasons()...)
	for _, r := range reasons {
		if !strings.Contains(readme, "| `"+string(r)+"` |") {
			t.Errorf("README.md reason table lacks %s", r)
		}
	}
	for _, name := range decode.Names() {
		if !strings.Contains(readme, name) {
			t.Errorf("README.md does not mention decoder %s", name)
		}
	}
}
