package compose

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertRules runs the promtool unit tests of the alert rules
// (config/prometheus/alerts.test.yml): the bridge's session-takeover alert
// pages on the first takeover and resolves, the reconnect alert fires on a
// storm and not on one reconnect.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: apt-get install prometheus (make test installs it: scripts/deps)")
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts.test.yml")
	cmd.Dir = filepath.Join("config", "prometheus")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
