package smoke

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
)

// droverBin is the drover binary TestMain builds for the integration test.
var droverBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "drover-smoke-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if droverBin, err = devtest.BuildDrover(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func TestFromEnv(t *testing.T) {
	good := map[string]string{
		"DROVER_MQTT_URL": "tcp://127.0.0.1:1883", "DROVER_KAFKA_BROKERS": "127.0.0.1:9092, 127.0.0.1:9093",
		"DROVER_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081", "DROVER_S3_ENDPOINT": "http://127.0.0.1:9000",
		"DROVER_DATABASE_URL": "postgres://u:p@127.0.0.1:5432/drover",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "complete", env: good},
		{name: "no mqtt", env: with("DROVER_MQTT_URL", ""), wantErr: "missing variable: DROVER_MQTT_URL"},
		{name: "no database", env: with("DROVER_DATABASE_URL", ""), wantErr: "DROVER_DATABASE_URL"},
		{name: "empty", env: map[string]string{}, wantErr: "DROVER_MQTT_URL, DROVER_KAFKA_BROKERS, DROVER_SCHEMA_REGISTRY_URL, DROVER_S3_ENDPOINT, DROVER_DATABASE_URL"},
		{name: "bad mqtt scheme", env: with("DROVER_MQTT_URL", "http://x:1"), wantErr: `DROVER_MQTT_URL: scheme "http"`},
		{name: "bad registry", env: with("DROVER_SCHEMA_REGISTRY_URL", "registry"), wantErr: "DROVER_SCHEMA_REGISTRY_URL"},
		{name: "bad database", env: with("DROVER_DATABASE_URL", "mysql://x/y"), wantErr: `DROVER_DATABASE_URL: scheme "mysql"`},
		{name: "blank brokers", env: with("DROVER_KAFKA_BROKERS", " , "), wantErr: "DROVER_KAFKA_BROKERS: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv("test.env", tt.env)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "127.0.0.1:9093" {
					t.Fatalf("brokers %q", c.KafkaBrokers)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "test.env") {
				t.Fatalf("err %v, want one naming test.env and containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadEnvFileMissing(t *testing.T) {
	_, err := LoadEnvFile(filepath.Join(t.TempDir(), "nope.env"))
	if err == nil || !strings.Contains(err.Error(), "nope.env") {
		t.Fatalf("err %v, want one naming the file", err)
	}
}

func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://drover:secret@127.0.0.1:5432/drover", "postgres://drover:***@127.0.0.1:5432/drover"},
		{"postgres://127.0.0.1/drover", "postgres://127.0.0.1/drover"},
	} {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestChecklistPrintsAsItGoes(t *testing.T) {
	var b bytes.Buffer
	cl := NewChecklist(&b)
	cl.Add(Result{Name: "one", Status: Pass})
	cl.Add(Result{Name: "two", Status: Fail, Detail: "broken"})
	cl.Add(Result{Name: "three", Status: Skip, Detail: "why"})
	cl.Summary()
	want := "✓ one\n✗ two: broken\n– three: why\nsmoke: 1 passed, 1 failed, 1 skipped\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	if f := cl.Failed(); len(f) != 1 || f[0] != "two" {
		t.Fatalf("failed %v", f)
	}
}

// TestIntegrationSmokeUnreachable: a stack that is not there fails fast,
// naming the endpoint, with the checklist so far and exit code 1.
func TestIntegrationSmokeUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := filepath.Join(t.TempDir(), "dev.env")
	// Port 1 on loopback: nothing listens there.
	if err := os.WriteFile(env, []byte("DROVER_MQTT_URL=tcp://127.0.0.1:1\nDROVER_KAFKA_BROKERS=127.0.0.1:1\n"+
		"DROVER_SCHEMA_REGISTRY_URL=http://127.0.0.1:1\nDROVER_S3_ENDPOINT=http://127.0.0.1:1\n"+
		"DROVER_DATABASE_URL=postgres://127.0.0.1:1/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := runSmoke(t, "--env-file", env, "--dev-env", "")
	if code != 1 || !strings.Contains(out, "✗ reach schema registry http://127.0.0.1:1") || !strings.Contains(out, "unreachable") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Fatalf("took %v to notice", d)
	}
}

func TestIntegrationSmokeBadEnvFile(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dir := t.TempDir()
	partial := filepath.Join(dir, "partial.env")
	if err := os.WriteFile(partial, []byte("DROVER_MQTT_URL=tcp://127.0.0.1:1883\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := filepath.Join(dir, "complete.env")
	if err := os.WriteFile(complete, []byte("DROVER_MQTT_URL=tcp://127.0.0.1:1\nDROVER_KAFKA_BROKERS=127.0.0.1:1\n"+
		"DROVER_SCHEMA_REGISTRY_URL=http://127.0.0.1:1\nDROVER_S3_ENDPOINT=http://127.0.0.1:1\n"+
		"DROVER_DATABASE_URL=postgres://127.0.0.1:1/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbled := filepath.Join(dir, "garbled.env")
	if err := os.WriteFile(garbled, []byte("this is not an env file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "missing file", args: []string{"--env-file", filepath.Join(dir, "none.env")}, wantErr: "none.env does not exist"},
		{name: "missing variables", args: []string{"--env-file", partial}, wantErr: "missing variable: DROVER_KAFKA_BROKERS"},
		{name: "garbled file", args: []string{"--env-file", garbled}, wantErr: "garbled.env:1: expected KEY=VALUE"},
		{name: "offline too long", args: []string{"--env-file", complete, "--offline-after", "1h"}, wantErr: "offline-after: 1h0m0s outside [0, 5m0s]"},
		{name: "negative timeout", args: []string{"--env-file", complete, "--timeout", "-1s"}, wantErr: "timeout: -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runSmoke(t, append([]string{"--dev-env", ""}, tt.args...)...)
			if code != 2 || !strings.Contains(out, tt.wantErr) {
				t.Fatalf("exit %d (want 2), output lacks %q:\n%s", code, tt.wantErr, out)
			}
		})
	}
}

// TestIntegrationSmoke is `make smoke`: a fresh `drover dev` on free ports
// in a temporary data dir (the processors as a separate `drover process`
// with a 1-minute offline rule), then `drover smoke` against its env file.
func TestIntegrationSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts drover dev")
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "dev.env")
	args := []string{"dev", "--data-dir", filepath.Join(dir, "data"), "--env-file", envFile, "--dev-env", "",
		"--mqtt-port", "0", "--kafka-port", "0", "--registry-port", "0", "--s3-port", "0",
		"--skip", "processors,simulator"}
	if os.Getenv(devtest.EnvTestDatabaseURL) != "" {
		// An external database (TimescaleDB, say): a fresh database (or
		// schema) of its own on that server instead of drover dev's
		// throwaway PostgreSQL.
		args = append(args, "--database-url", devtest.Postgres(t))
	}
	dev := startDrover(t, "dev", args...)
	waitFile(t, envFile, dev, 3*time.Minute)

	// Without the processors the run must fail (exit 3) on features,
	// alerts and state, with the checklist printed all the same.
	out, code := runSmoke(t, "--env-file", envFile, "--dev-env", "", "--timeout", "40s")
	t.Logf("drover smoke without processors:\n%s", out)
	if code != 3 {
		t.Fatalf("drover smoke without processors exited %d, want 3", code)
	}
	for _, want := range []string{"✓ raw: sensor/senml → raw.sensor", "✓ dlq: not_json/truncated → decode/not_json", "✓ sparkplug: NDATA of edge node", "✓ http: POST /v1/devices/", "✓ http: the reading posted as",
		"✓ coap: POST /devices/", "✓ coap: the reading posted as", "✓ lorawan: POST /v1/lorawan/chirpstack?event=up",
		"✓ lorawan: the uplink of DevEUI", "✓ lorawan: the uplink's RSSI",
		"✗ alerts: fever fires", "✗ state.latest: ", "– alerts: offline fires", "✓ db: sensor_readings holds exactly",
		"✓ db: dead_letters holds exactly", "✗ db: features holds exactly the run's rows", "no rows expected: the pipeline produced nothing", "failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output without processors lacks %q", want)
		}
	}

	rules, _ := filepath.Abs("testdata/rules.yaml")
	startDrover(t, "process", "process", "--dev-env", envFile, "--rules", rules,
		"--alert-check-interval", "5s", "--admin-addr", "127.0.0.1:0")
	out, code = runSmoke(t, "--env-file", envFile, "--dev-env", "", "--offline-after", "1m", "--timeout", "5m")
	t.Logf("drover smoke:\n%s", out)
	if code != 0 {
		t.Fatalf("drover smoke exited %d", code)
	}
	for _, want := range []string{"✓ alerts: fever fires", "✓ alerts: fever resolves", "✓ alerts: offline fires",
		"✓ db: sensor_readings holds exactly", "✓ registry: a schema for every topic", "✓ raw: events/tamper → raw.sensor",
		"✓ dlq: event_invalid_severity/urgent → decode/event_invalid_severity", "✓ db: sensor_readings holds the event row of ",
		"✓ commands: one round trip", "✓ shadow: desired state reaches the device as a delta and clears once reported",
		"0 failed, 0 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// proc is a drover subprocess whose output is kept for the log.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}

// startDrover starts a long-running drover command and stops it with
// SIGTERM (then SIGKILL after 60 s) at cleanup.
func startDrover(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(droverBin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Env = append(os.Environ(), "DROVER_LOG_FORMAT=text")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			t.Errorf("drover %s did not stop within 60 s of SIGTERM; killing it", name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("drover %s output:\n%s", name, p.tail())
		}
	})
	return p
}

// waitFile waits for path to appear while p runs.
func waitFile(t *testing.T, path string, p *proc, max time.Duration) {
	t.Helper()
	deadline := time.Now().Add(max)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("drover exited before writing %s:\n%s", path, p.tail())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v:\n%s", path, max, p.tail())
		}
	}
}

// runSmoke runs `drover smoke args...` in process (main.go is the lead's
// to wire) under a root command like the binary's, and returns its output
// (plus the error line the binary would print) and exit code.
func runSmoke(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(Command(root.Conn))
	var b bytes.Buffer
	root.Cmd.SetOut(&b)
	root.Cmd.SetErr(&b)
	root.Cmd.SetArgs(append([]string{"smoke", "--log-format", "text"}, args...))
	err := root.Cmd.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(&b, "drover: %v\n", err)
	}
	return b.String(), cli.ExitCode(err)
}

var _ io.Writer = (*proc)(nil)
