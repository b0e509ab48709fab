package registry_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoFakesLinked: the registry's production packages (the service, the
// CLI, the broker adapters) never link the embedded stand-ins.
func TestNoFakesLinked(t *testing.T) {
	pkgs := []string{".", "./api", "./command", "./dynsec", "./emqx", "./service"}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, fake := range []string{"franz-go/pkg/kfake", "mochi-mqtt/server", "johannesboyne/gofakes3", "pkg/sr/srfake"} {
			if strings.Contains(dep, fake) {
				t.Errorf("a registry package links %s", dep)
			}
		}
	}
}
