package alerts

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/topics"
)

func TestFlagsOptions(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "defaults", args: nil},
		{name: "rules file", args: []string{"--alerts-rules", "testdata/example.yaml"}},
		{name: "bad rules file", args: []string{"--alerts-rules", "testdata/missing-threshold.bad.yaml"},
			wantErr: `--alerts-rules: testdata/missing-threshold.bad.yaml: rule "fever": threshold: required for kind threshold`},
		{name: "missing rules file", args: []string{"--alerts-rules", "testdata/nope.yaml"}, wantErr: "--alerts-rules: reading rules"},
		{name: "zero interval", args: []string{"--alerts-check-interval", "0s"}, wantErr: "--alerts-check-interval: must be positive"},
		{name: "negative horizon", args: []string{"--alerts-horizon", "-1m"}, wantErr: "--alerts-horizon: must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f Flags
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			f.Register(fs, "alerts-")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			_, err := f.Options()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if cli.ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2 (usage)", cli.ExitCode(err))
			}
		})
	}
}

func TestRulesCommand(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "defaults", args: []string{"rules"}, want: "fever"},
		{name: "default file", args: []string{"rules", "--defaults"}, want: "threshold: 39.5"},
		{name: "example", args: []string{"rules", "--rules", "testdata/example.yaml"}, want: "north-pasture"},
		{name: "bad file", args: []string{"rules", "--rules", "testdata/unknown-field.bad.yaml"}, wantErr: `rule "fever": treshold: unknown field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := Command(&cli.Conn{})
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cli.ExitCode(err) != 2 {
					t.Fatalf("error %v (exit %d), want usage error containing %q", err, cli.ExitCode(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Fatalf("output %q lacks %q", out.String(), tc.want)
			}
		})
	}
}

// TestIntegrationRunCommand runs `drover alerts run` against the embedded
// Kafka and registry: /readyz turns ready, /metrics has the group's
// metrics, and cancelling the context (what SIGTERM does) stops it cleanly.
func TestIntegrationRunCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short")
	}
	c := devtest.Kafka(t, kfake.SeedTopics(2, topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DLQ))
	_, url := devtest.Registry(t)
	testRegistryAt(t, url)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	conn := &cli.Conn{Log: devtest.Logger()}
	cmd := Command(conn)
	cmd.SetArgs([]string{"run", "--kafka-brokers", strings.Join(c.ListenAddrs(), ","), "--schema-registry-url", url,
		"--admin-addr", addr, "--check-interval", "1s"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("run did not stop within 60s of cancellation")
		}
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
	waitFor(t, "/readyz 200", 60*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v", err)
		default:
		}
		code, _ := get("/readyz")
		return code == http.StatusOK
	})
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "drover_alerts_sweep_duration_seconds") {
		t.Errorf("/metrics %d lacks the alerts metrics", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
}

func TestRunCommandUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad rules", []string{"run", "--rules", "testdata/bad-op.bad.yaml"}, `--rules: testdata/bad-op.bad.yaml: rule "fever": op: unknown operator`},
		{"bad replication", []string{"run", "--table-replication", "0"}, "--table-replication: must be at least 1"},
		{"no brokers", []string{"run", "--kafka-brokers", " "}, "--kafka-brokers ($DROVER_KAFKA_BROKERS): no broker given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := Command(&cli.Conn{Log: devtest.Logger()})
			cmd.SetArgs(tc.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.Execute()
			var ue *cli.UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want usage error containing %q", err, tc.wantErr)
			}
		})
	}
}
