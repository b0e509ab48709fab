package bridge

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationBridgeMTLS connects `drover bridge` to a mosquitto that
// requires a client certificate and a password: it becomes ready with the
// right credentials and stays unready with a wrong password.
func TestIntegrationBridgeMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	// mosquitto drops root privileges before reading some files: keep them
	// in a world-readable directory (t.TempDir's parents are private).
	dir, err := os.MkdirTemp("", "drover-bridge-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certs := devtest.WriteCerts(t, dir)
	ca, srvCert, srvKey, cliCert, cliKey := certs.CA, certs.ServerCert, certs.ServerKey, certs.ClientCert, certs.ClientKey
	pwFile := filepath.Join(dir, "passwd")
	if out, err := exec.Command("mosquitto_passwd", "-b", "-c", pwFile, "bridge", "s3cret").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd (apt-get install -y mosquitto): %v: %s", err, out)
	}
	_ = os.Chmod(pwFile, 0o644)
	tcpURL := devtest.Mosquitto(t, "cafile "+ca, "certfile "+srvCert, "keyfile "+srvKey, "require_certificate true",
		"password_file "+pwFile, "allow_anonymous false")
	mqttsURL := "mqtts://" + strings.TrimPrefix(tcpURL, "tcp://")
	e := newEnv(t)
	for _, tc := range []struct {
		name, password string
		ready          bool
	}{
		{"right password", "s3cret", true},
		{"wrong password", "nope", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pw := filepath.Join(t.TempDir(), "pw")
			if err := os.WriteFile(pw, []byte(tc.password+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				code, out := execute(t, ctx, "bridge", "--mqtt-url", mqttsURL, "--mqtt-tls-ca", ca, "--mqtt-tls-cert", cliCert, "--mqtt-tls-key", cliKey,
					"--mqtt-username", "bridge", "--mqtt-password-file", pw, "--kafka-brokers", strings.Join(e.brokers, ","),
					"--schema-registry-url", e.regURL, "--admin-addr", addr, "--mqtt-client-id", "tls-"+tc.password, "--log-level", "error")
				if code != 0 {
					t.Errorf("bridge exited %d: %s", code, out)
				}
			}()
			defer func() { cancel(); <-done }()
			get := func(path string) (int, string) {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if tc.ready {
				waitFor(t, 60*time.Second, "/readyz 200 over mTLS", func() bool { c, _ := get("/readyz"); return c == 200 })
				return
			}
			waitFor(t, 60*time.Second, "a refused connection attempt", func() bool {
				_, m := get("/metrics")
				return strings.Contains(m, "drover_bridge_mqtt_connect_errors_total 1") || strings.Contains(m, "drover_bridge_mqtt_connect_errors_total 2")
			})
			if _, m := get("/metrics"); !strings.Contains(m, "drover_bridge_mqtt_connections_total 0") {
				t.Error("connected with a wrong password")
			}
			if c, body := get("/readyz"); c != 503 || !strings.Contains(body, "mqtt not connected") {
				t.Errorf("/readyz %d %s, want 503 mqtt not connected", c, body)
			}
		})
	}
}
