package devstage_test

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

// fakes are the embedded stand-ins of drover dev and the tests.
var fakes = []string{
	"github.com/twmb/franz-go/pkg/kfake",
	"github.com/twmb/franz-go/pkg/sr/srfake",
	"github.com/mochi-mqtt/server/v2",
	"github.com/johannesboyne/gofakes3",
	"github.com/drover-iot/drover/devstack",
}

// mayLinkFakes are the packages that compose the embedded stack: drover
// dev itself, the binary that offers it, the benchmarks, and test helpers
// (packages named *test).
func mayLinkFakes(pkg string) bool {
	p := strings.TrimPrefix(pkg, "github.com/drover-iot/drover/")
	switch {
	case p == "cmd/drover", p == "bench", p == "devstack", strings.HasSuffix(path.Base(p), "test"):
		return true
	}
	return false
}

// TestProductionPackagesLinkNoFake: no production package (every stage,
// door and tool of drover) links an embedded fake; stages hand `drover
// dev` a devstage.Stage, and devstack composes them.
func TestProductionPackagesLinkNoFake(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "github.com/drover-iot/drover/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || mayLinkFakes(f[0]) {
			continue
		}
		checked++
		for _, d := range f[1:] {
			for _, fake := range fakes {
				if d == fake || strings.HasPrefix(d, fake+"/") && fake != "github.com/drover-iot/drover/devstack" {
					t.Errorf("%s links the fake %s", f[0], d)
				}
			}
		}
	}
	if checked < 30 {
		t.Fatalf("checked only %d packages; go list output:\n%s", checked, out)
	}
	for _, must := range []string{"bridge", "processors", "processors/timescale", "backfill", "doors/httpapi", "doors/coap", "ingest"} {
		if mayLinkFakes("github.com/drover-iot/drover/" + must) {
			t.Errorf("%s is exempt", must)
		}
	}
}
