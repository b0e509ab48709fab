package simulate

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationMosquittoAuth publishes to a mosquitto that requires a
// password: credentials from the URL and from --mqtt-user with
// --mqtt-password-file work, a wrong password fails fast.
func TestIntegrationMosquittoAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	// mosquitto reads the password file after dropping root, so it must
	// sit in a world-traversable directory (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "drover-sim-auth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-b", "-c", pwFile, "sim", "s3cret pass").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pwFile, 0o644); err != nil {
		t.Fatal(err)
	}
	broker := devtest.Mosquitto(t, "allow_anonymous false", "password_file "+pwFile)
	u, _ := url.Parse(broker)

	withUser := *u
	withUser.User = url.UserPassword("sim", "s3cret pass")
	sum, err := Run(context.Background(), Config{MQTTURL: withUser.String(), Count: 20, Rate: 500, MediaRatio: -1, SummaryEvery: -1}, devtest.Logger())
	if err != nil || sum.Total() != 20 {
		t.Fatalf("credentials in the URL: %v, %s", err, sum)
	}

	secret := filepath.Join(dir, "mqtt-password")
	if err := os.WriteFile(secret, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DROVER_DEV_ENV", "")
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(Command(root.Conn))
	var out lockedBuffer
	root.Cmd.SetOut(&out)
	root.Cmd.SetErr(&out)
	root.Cmd.SetArgs([]string{"simulate", "--log-level", "error", "--admin-addr", "", "--mqtt-url", broker,
		"--mqtt-user", "sim", "--mqtt-password-file", secret, "--count", "20", "--rate", "500", "--media-ratio", "0"})
	if err := root.Cmd.ExecuteContext(context.Background()); err != nil || !strings.Contains(out.String(), "simulate: sent 20 (") {
		t.Fatalf("--mqtt-password-file: %v\n%s", err, out.String())
	}

	_, err = Run(context.Background(), Config{MQTTURL: broker, MQTTUser: "sim", MQTTPassword: "wrong", Count: 1,
		MediaRatio: -1, ConnectTimeout: 3 * time.Second}, devtest.Logger())
	if !errors.Is(err, ErrNotConnected) {
		t.Fatalf("wrong password: error = %v, want ErrNotConnected", err)
	}
}
