package bridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest/routes"
)

func execute(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(Command(root.Conn))
	var out bytes.Buffer
	root.Cmd.SetOut(&out)
	root.Cmd.SetErr(&out)
	root.Cmd.SetArgs(append(args, "--dev-env", ""))
	err := root.Cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(&out, "%v", err)
	}
	return cli.ExitCode(err), out.String()
}

func TestCommandBadFlags(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		errSub string
	}{
		{"bad scheme", []string{"--mqtt-url", "http://x:1"}, "--mqtt-url"},
		{"no host", []string{"--mqtt-url", "tcp://"}, "--mqtt-url"},
		{"receive maximum", []string{"--mqtt-receive-maximum", "0"}, "--mqtt-receive-maximum 0"},
		{"receive maximum high", []string{"--mqtt-receive-maximum", "70000"}, "--mqtt-receive-maximum"},
		{"session expiry", []string{"--mqtt-session-expiry", "0s"}, "--mqtt-session-expiry"},
		{"group", []string{"--mqtt-group", "a/b"}, "--mqtt-group"},
		{"default tenant bidi", []string{"--default-tenant", "wild\u202elife"}, `--default-tenant: tenant id "wild\u202elife" has a character outside`},
		{"default tenant slash", []string{"--default-tenant", "a/b"}, "--default-tenant"},
		{"max payload", []string{"--max-payload", "0"}, "--max-payload"},
		{"max age", []string{"--max-age", "-1h"}, "--max-age"},
		{"compression", []string{"--kafka-compression", "brotli"}, "--kafka-compression"},
		{"routes missing", []string{"--routes", "testdata/nope.yaml"}, "--routes"},
		{"routes bad", []string{"--routes", "../ingest/routes/testdata/unknown_decoder.bad.yaml"}, `unknown_decoder.bad.yaml:4: route sensor: decoder`},
		{"password without user", []string{"--mqtt-password-file", pw}, "--mqtt-username"},
		{"password file missing", []string{"--mqtt-username", "u", "--mqtt-password-file", "/nonexistent"}, "--mqtt-password-file"},
		{"tls on tcp", []string{"--mqtt-tls-ca", pw}, "--mqtt-tls-ca"},
		{"tls ca not pem", []string{"--mqtt-url", "mqtts://x:8883", "--mqtt-tls-ca", pw}, "--mqtt-tls-ca"},
		{"share prefix", []string{"--mqtt-topics", "$share/g/devices/#"}, "--mqtt-topics"},
		{"unknown flag", []string{"--mqtt-qos", "2"}, "unknown flag"},
		{"args", []string{"extra"}, "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := execute(t, context.Background(), append([]string{"bridge"}, tc.args...)...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (%s)", code, out)
			}
			if !strings.Contains(out, tc.errSub) {
				t.Errorf("output %q does not contain %q", out, tc.errSub)
			}
		})
	}
}

func TestCommandPrintRoutes(t *testing.T) {
	code, out := execute(t, context.Background(), "bridge", "--print-routes")
	if code != 0 || !strings.Contains(out, "match: devices/{tenant}/{device}/sensor") {
		t.Fatalf("exit %d, output %q", code, out)
	}
	if _, err := routes.Parse("printed", []byte(out)); err != nil {
		t.Errorf("printed routes do not parse: %v", err)
	}
}

// TestIntegrationBridgeCommand runs `drover bridge` in process and checks
// /readyz, /healthz and /metrics, then stops it through its context.
func TestIntegrationBridgeCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, out := execute(t, ctx, "bridge", "--mqtt-url", mqttURL, "--kafka-brokers", strings.Join(e.brokers, ","),
			"--schema-registry-url", e.regURL, "--admin-addr", addr, "--mqtt-client-id", "cmd-bridge", "--log-level", "error")
		if code != 0 {
			t.Errorf("bridge exited %d: %s", code, out)
		}
		done <- code
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 60*time.Second, "/readyz 200", func() bool { c, _ := get("/readyz"); return c == 200 })
	if c, _ := get("/healthz"); c != 200 {
		t.Errorf("/healthz %d", c)
	}
	pub := newPublisher(t, mqttURL, "cmd-pub", nil)
	pub.publish(t, "devices/farm1/cow-1/sensor", fmt.Appendf(nil, `{"ts":%d,"metric":"t","value":1}`, time.Now().UnixMilli()), nil)
	pub.publish(t, "devices/farm1/cow-1/sensor", []byte(`nope`), nil)
	e.consume(t, 2, 30*time.Second)
	waitFor(t, 30*time.Second, "metrics", func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, `drover_bridge_records_produced_total{topic="raw.sensor"} 1`) &&
			strings.Contains(body, `drover_bridge_dead_letters_total{reason="not_json",stage="decode"} 1`) &&
			strings.Contains(body, `drover_bridge_messages_received_total 2`) &&
			strings.Contains(body, `drover_bridge_mqtt_subscribed 1`) &&
			strings.Contains(body, `drover_bridge_produce_latency_seconds_count`) &&
			strings.Contains(body, `drover_bridge_inflight_messages 0`) &&
			strings.Contains(body, `drover_bridge_kafka_connects_total{client="producer"`) &&
			strings.Contains(body, `drover_bridge_kafka_connects_total{client="downlink"`)
	})
	cancel()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("bridge did not stop")
	}
}
