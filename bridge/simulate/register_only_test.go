package simulate

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry/registrytest"
)

// TestIntegrationRegisterOnly: `simulate --register-only` registers the
// herd, writes the secrets and exits without touching the broker (compose's
// dev overlay runs it before Mosquitto exists); a second run adds nothing
// and keeps the secrets.
func TestIntegrationRegisterOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Setenv("DROVER_DEV_ENV", "")
	e := registrytest.New(t)
	secrets := filepath.Join(t.TempDir(), "herd.csv")
	run := func() string {
		t.Helper()
		root := cli.NewRoot("test")
		root.Cmd.AddCommand(Command(root.Conn))
		var out lockedBuffer
		root.Cmd.SetOut(&out)
		root.Cmd.SetErr(&out)
		// No broker listens at --mqtt-url: publishing would fail.
		root.Cmd.SetArgs([]string{"simulate", "--log-level", "error", "--admin-addr", "127.0.0.1:0",
			"--mqtt-url", "tcp://127.0.0.1:" + strconv.Itoa(devtest.FreePort(t)), "--connect-timeout", "1s",
			"--kafka-brokers", strings.Join(e.Brokers, ","), "--schema-registry-url", e.RegistryURL,
			"--register-only", "--secrets-file", secrets, "--devices", "7", "--tenant", "farm-7"})
		if err := root.Cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("simulate --register-only: %v\n%s", err, out.String())
		}
		return out.String()
	}
	if out := run(); !strings.Contains(out, "simulate: 7 device(s) registered") {
		t.Fatalf("output: %s", out)
	}
	first, err := ReadSecrets(secrets, "farm-7")
	if err != nil || len(first) != 7 {
		t.Fatalf("secrets file: %v %v", first, err)
	}
	waitFor(t, "the herd in the registry view", 30*time.Second, func() bool {
		for id, s := range first {
			d, ok := e.View.Device("farm-7", id)
			if !ok || !d.Active() || d.Secret == nil || !d.Secret.Verify([]byte(s)) {
				return false
			}
		}
		return true
	})
	run()
	second, err := ReadSecrets(secrets, "farm-7")
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range first {
		if second[id] != s {
			t.Errorf("device %s: a second run changed its secret", id)
		}
	}
}
