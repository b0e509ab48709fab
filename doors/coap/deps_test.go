package coap_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoFakesLinked: the doors, their commands and the ingest packages below
// them never link the embedded stand-ins (kfake, mochi, gofakes3, srfake);
// only doorsdev (drover dev's stages) and ingesttest (tests) may.
func TestNoFakesLinked(t *testing.T) {
	pkgs := []string{".", "../httpapi", "../doorscmd", "../../ingest", "../../ingest/lorawan", "../../ingest/sparkplug/..."}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, fake := range []string{"franz-go/pkg/kfake", "mochi-mqtt/server", "johannesboyne/gofakes3", "pkg/sr/srfake"} {
			if strings.Contains(dep, fake) {
				t.Errorf("links %s", dep)
			}
		}
	}
}
