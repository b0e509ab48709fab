package ingest_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/drover-iot/drover/"

// doors are the packages through which devices speak; each stands on the
// ingest core alone.
var doors = []string{"bridge", "doors/httpapi", "doors/coap"}

// deps returns the drover packages pkg links (go list -deps, tests
// excluded).
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var ds []string
	for _, l := range strings.Fields(string(out)) {
		if p, ok := strings.CutPrefix(l, module); ok && p != pkg {
			ds = append(ds, p)
		}
	}
	return ds
}

// TestNoDoorImportsAnotherDoor keeps the import picture of DESIGN.md: the
// ingest contract lives below every door, no door imports another, and
// neither the ingest packages nor the other users of the contract (media
// notifications and backfill, dead-letter re-drive, the console) link a
// door.
func TestNoDoorImportsAnotherDoor(t *testing.T) {
	below := []string{"ingest", "ingest/decode", "ingest/routes", "ingest/lorawan", "ingest/sparkplug",
		"backfill", "backfill/dlq", "console"}
	for _, pkg := range append(slices.Clone(doors), below...) {
		t.Run(pkg, func(t *testing.T) {
			t.Parallel()
			for _, d := range deps(t, pkg) {
				if slices.Contains(doors, d) {
					t.Errorf("%s links the door %s", pkg, d)
				}
			}
		})
	}
}
