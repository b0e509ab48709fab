package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"kafka-brokers":   "DROVER_KAFKA_BROKERS",
		"admin-addr":      "DROVER_ADMIN_ADDR",
		"s3.endpoint":     "DROVER_S3_ENDPOINT",
		"replication-cap": "DROVER_REPLICATION_CAP",
	} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{name: "plain", in: "A=1\nB=two\n", want: map[string]string{"A": "1", "B": "two"}},
		{name: "comments and blanks", in: "# c\n\nA=1\n", want: map[string]string{"A": "1"}},
		{name: "quoted and export", in: "export A=\"x y\"\nB='z'\n", want: map[string]string{"A": "x y", "B": "z"}},
		{name: "value with equals", in: "U=postgres://a@b/c?x=1\n", want: map[string]string{"U": "postgres://a@b/c?x=1"}},
		{name: "no equals", in: "A=1\nbroken\n", wantErr: "dev.env:2: expected KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnv([]byte(tt.in), "dev.env")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"plain", errors.New("boom"), 1},
		{"usage", Usagef("--x: bad"), 2},
		{"wrapped usage", fmt.Errorf("ctx: %w", Usagef("--x: bad")), 2},
		{"check", fmt.Errorf("drift in 3 topics: %w", ErrCheckFailed), 3},
		{"cancelled", context.Canceled, 0},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("%s: ExitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// newTestRoot builds a root with one subcommand that records the Conn values
// it sees.
func newTestRoot(t *testing.T) (*Root, *[]string) {
	t.Helper()
	r := NewRoot("test")
	var seen []string
	sub := &cobra.Command{Use: "show", RunE: func(cmd *cobra.Command, _ []string) error {
		seen = append([]string{}, r.Conn.KafkaBrokers...)
		seen = append(seen, r.Conn.SchemaRegistryURL)
		return nil
	}}
	r.Conn.AddKafkaFlags(sub.Flags())
	r.Conn.AddRegistryFlags(sub.Flags())
	r.Cmd.AddCommand(sub)
	return r, &seen
}

func TestFlagEnvPrecedence(t *testing.T) {
	dir := t.TempDir()
	devEnv := filepath.Join(dir, "dev.env")
	if err := os.WriteFile(devEnv, []byte("DROVER_KAFKA_BROKERS=10.0.0.3:9092\nDROVER_SCHEMA_REGISTRY_URL=http://from-file:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "default", args: []string{"show", "--dev-env", ""}, want: "[127.0.0.1:9092 http://127.0.0.1:8081]"},
		{name: "dev env file", args: []string{"show", "--dev-env", devEnv}, want: "[10.0.0.3:9092 http://from-file:1]"},
		{name: "environment beats file", env: map[string]string{"DROVER_KAFKA_BROKERS": "a:1,b:2"}, args: []string{"show", "--dev-env", devEnv}, want: "[a:1 b:2 http://from-file:1]"},
		{name: "flag beats environment", env: map[string]string{"DROVER_KAFKA_BROKERS": "a:1"}, args: []string{"show", "--kafka-brokers", "c:3", "--dev-env", devEnv}, want: "[c:3 http://from-file:1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r, seen := newTestRoot(t)
			if code := r.Execute(tt.args); code != 0 {
				t.Fatalf("exit %d", code)
			}
			if got := fmt.Sprint(*seen); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBadEnvValueNamesVariable(t *testing.T) {
	r := NewRoot("test")
	var n int
	sub := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	sub.Flags().IntVar(&n, "replication-cap", 0, "cap")
	r.Cmd.AddCommand(sub)
	t.Setenv("DROVER_REPLICATION_CAP", "three")
	err := r.prepare(sub, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "DROVER_REPLICATION_CAP") || !strings.Contains(err.Error(), "--replication-cap") {
		t.Fatalf("err = %v, want it to name the variable and flag", err)
	}
	if ExitCode(err) != 2 {
		t.Fatalf("exit code %d, want 2", ExitCode(err))
	}
}

func TestBadFlagsAreUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"unknown flag", []string{"show", "--nope"}, 2},
		{"bad log level", []string{"show", "--log-level", "loud", "--dev-env", ""}, 2},
		{"bad log format", []string{"show", "--log-format", "xml", "--dev-env", ""}, 2},
		{"ok", []string{"show", "--dev-env", ""}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newTestRoot(t)
			if got := r.Execute(tt.args); got != tt.want {
				t.Fatalf("exit %d, want %d", got, tt.want)
			}
		})
	}
}

func TestHelpShowsEnvVars(t *testing.T) {
	r, _ := newTestRoot(t)
	annotateEnv(r.Cmd)
	sub, _, err := r.Cmd.Find([]string{"show"})
	if err != nil {
		t.Fatal(err)
	}
	if u := sub.Flags().Lookup("kafka-brokers").Usage; !strings.Contains(u, "$DROVER_KAFKA_BROKERS") {
		t.Fatalf("usage %q lacks the env var", u)
	}
	annotateEnv(r.Cmd) // idempotent
	if u := sub.Flags().Lookup("kafka-brokers").Usage; strings.Count(u, "$DROVER_") != 1 {
		t.Fatalf("usage annotated twice: %q", u)
	}
}

func TestKafkaOptsErrors(t *testing.T) {
	tests := []struct {
		name    string
		conn    Conn
		wantErr string
	}{
		{name: "no brokers", conn: Conn{KafkaBrokers: []string{" "}}, wantErr: "--kafka-brokers"},
		{name: "bad mechanism", conn: Conn{KafkaBrokers: []string{"a:1"}, KafkaSASLMechanism: "GSSAPI"}, wantErr: "--kafka-sasl-mechanism"},
		{name: "missing ca", conn: Conn{KafkaBrokers: []string{"a:1"}, KafkaTLSCA: "/nonexistent/ca.pem"}, wantErr: "--kafka-tls-ca"},
		{name: "cert without key", conn: Conn{KafkaBrokers: []string{"a:1"}, KafkaTLSCert: "/x.pem"}, wantErr: "--kafka-tls-cert and --kafka-tls-key go together"},
		{name: "missing password file", conn: Conn{KafkaBrokers: []string{"a:1"}, KafkaSASLMechanism: "PLAIN", KafkaSASLPassFile: "/nonexistent"}, wantErr: "--kafka-sasl-password-file"},
		{name: "ok", conn: Conn{KafkaBrokers: []string{"a:1"}, KafkaSASLMechanism: "scram-sha-512"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.conn.KafkaOpts()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if ExitCode(err) != 2 {
				t.Fatalf("exit code %d, want 2", ExitCode(err))
			}
		})
	}
}

func TestRegistryTLSErrors(t *testing.T) {
	tests := []struct {
		name    string
		conn    Conn
		wantErr string
	}{
		{name: "missing ca", conn: Conn{SchemaRegistryURL: "https://r:8081", SchemaRegistryTLSCA: "/nonexistent/ca.pem"}, wantErr: "--schema-registry-tls-ca"},
		{name: "cert without key", conn: Conn{SchemaRegistryURL: "https://r:8081", SchemaRegistryTLSCert: "/x.pem"}, wantErr: "--schema-registry-tls-cert and --schema-registry-tls-key go together"},
		{name: "not pem", conn: Conn{SchemaRegistryURL: "https://r:8081", SchemaRegistryTLSCA: "cli_test.go"}, wantErr: "no PEM certificate"},
		{name: "plain", conn: Conn{SchemaRegistryURL: "http://r:8081"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.conn.Registry()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want usage error with %q", err, ExitCode(err), tt.wantErr)
			}
		})
	}
}
