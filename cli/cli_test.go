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
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	tok := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	for name, data := range map[string]string{pw: "secret\n", tok: "eyJhbGciOi.x.y\n", empty: "\n"} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	brokers := []string{"a:1"}
	tests := []struct {
		name    string
		conn    Conn
		wantErr string
	}{
		{name: "no brokers", conn: Conn{KafkaBrokers: []string{" "}}, wantErr: "--kafka-brokers ($DROVER_KAFKA_BROKERS)"},
		{name: "unknown mechanism", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "GSSAPI"}, wantErr: "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM): unknown mechanism \"GSSAPI\""},
		{name: "misspelt mechanism", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "SCRAM-SHA512", KafkaSASLUser: "u", KafkaSASLPassFile: pw}, wantErr: "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM): unknown mechanism"},
		{name: "missing ca", conn: Conn{KafkaBrokers: brokers, KafkaTLSCA: "/nonexistent/ca.pem"}, wantErr: "--kafka-tls-ca ($DROVER_KAFKA_TLS_CA)"},
		{name: "ca not pem", conn: Conn{KafkaBrokers: brokers, KafkaTLSCA: pw}, wantErr: "--kafka-tls-ca ($DROVER_KAFKA_TLS_CA) " + pw + ": no PEM certificate found"},
		{name: "cert without key", conn: Conn{KafkaBrokers: brokers, KafkaTLSCert: "/x.pem"}, wantErr: "--kafka-tls-cert and --kafka-tls-key go together"},
		{name: "unreadable key pair", conn: Conn{KafkaBrokers: brokers, KafkaTLSCert: pw, KafkaTLSKey: pw}, wantErr: "--kafka-tls-cert ($DROVER_KAFKA_TLS_CERT)/--kafka-tls-key ($DROVER_KAFKA_TLS_KEY)"},
		{name: "missing password file", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "PLAIN", KafkaSASLUser: "u", KafkaSASLPassFile: "/nonexistent"}, wantErr: "--kafka-sasl-password-file ($DROVER_KAFKA_SASL_PASSWORD_FILE)"},
		{name: "scram without password file", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "SCRAM-SHA-512", KafkaSASLUser: "u"}, wantErr: "--kafka-sasl-password-file ($DROVER_KAFKA_SASL_PASSWORD_FILE): SCRAM-SHA-512 needs a password file"},
		{name: "scram without user", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "SCRAM-SHA-256", KafkaSASLPassFile: pw}, wantErr: "--kafka-sasl-user ($DROVER_KAFKA_SASL_USER)"},
		{name: "oauth without token file", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "OAUTHBEARER"}, wantErr: "--kafka-sasl-token-file ($DROVER_KAFKA_SASL_TOKEN_FILE): OAUTHBEARER needs a token file"},
		{name: "oauth missing token file", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "OAUTHBEARER", KafkaSASLTokenFile: "/nonexistent/token"}, wantErr: "--kafka-sasl-token-file ($DROVER_KAFKA_SASL_TOKEN_FILE): stat /nonexistent/token"},
		{name: "oauth empty token file", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "OAUTHBEARER", KafkaSASLTokenFile: empty}, wantErr: "empty token"},
		{name: "token file without oauth", conn: Conn{KafkaBrokers: brokers, KafkaSASLTokenFile: tok}, wantErr: "--kafka-sasl-token-file ($DROVER_KAFKA_SASL_TOKEN_FILE) is set but --kafka-sasl-mechanism"},
		{name: "aws with a password", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "AWS_MSK_IAM", KafkaSASLUser: "u", KafkaSASLPassFile: pw}, wantErr: "AWS_MSK_IAM takes its credentials from the AWS chain"},
		{name: "plain", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "plain", KafkaSASLUser: "u", KafkaSASLPassFile: pw}},
		{name: "scram-sha-256", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "SCRAM-SHA-256", KafkaSASLUser: "u", KafkaSASLPassFile: pw}},
		{name: "scram-sha-512", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "scram-sha-512", KafkaSASLUser: "u", KafkaSASLPassFile: pw}},
		{name: "oauthbearer", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "OAUTHBEARER", KafkaSASLTokenFile: tok}},
		{name: "aws msk iam", conn: Conn{KafkaBrokers: brokers, KafkaSASLMechanism: "AWS_MSK_IAM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The AWS chain must not find a stray profile of the caller.
			t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
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

func TestAWSProfileMissingIsUsageError(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "no-such-profile")
	c := Conn{KafkaBrokers: []string{"b-1.mycluster.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"}, KafkaSASLMechanism: "AWS_MSK_IAM"}
	_, err := c.KafkaOpts()
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM) AWS_MSK_IAM: AWS configuration") {
		t.Fatalf("err = %v (exit %d), want a usage error about the AWS configuration", err, ExitCode(err))
	}
}

// TestTokenFileRereadOnChange: the OAUTHBEARER token is read from its file
// at every authentication, and a rotated file is picked up.
func TestTokenFileRereadOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Conn{KafkaBrokers: []string{"a:1"}, KafkaSASLMechanism: "OAUTHBEARER", KafkaSASLTokenFile: path}
	mech, err := c.KafkaSASL()
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		t.Helper()
		_, msg, err := mech.Authenticate(context.Background(), "broker:9092")
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if m := first(); !strings.Contains(m, "auth=Bearer first\x01") {
		t.Fatalf("first message %q lacks the token", m)
	}
	// A rotation: new content, new modification time.
	if err := os.WriteFile(path, []byte("second-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Now().Add(time.Minute), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if m := first(); !strings.Contains(m, "auth=Bearer second-token\x01") {
		t.Fatalf("after rotation the message %q lacks the new token", m)
	}
	// A token file that disappears fails the authentication (and so the
	// connection), it does not fall back to nothing.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mech.Authenticate(context.Background(), "broker:9092"); err == nil {
		t.Fatal("authenticated without a token file")
	}
}

// TestIntegrationSASLAgainstKafka authenticates franz-go clients built by
// KafkaOpts against an embedded Kafka requiring SASL: every mechanism kfake
// implements gets in with the right password and is refused with a wrong
// one.
func TestIntegrationSASLAgainstKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "drover-bridge", "s3cret"), kfake.SeedTopics(1, "t"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pw := filepath.Join(t.TempDir(), "pw")
			for _, tc := range []struct {
				pass string
				ok   bool
			}{{"s3cret\n", true}, {"wrong", false}} {
				if err := os.WriteFile(pw, []byte(tc.pass), 0o600); err != nil {
					t.Fatal(err)
				}
				conn := Conn{KafkaBrokers: c.ListenAddrs(), KafkaSASLMechanism: mech, KafkaSASLUser: "drover-bridge", KafkaSASLPassFile: pw}
				cl, err := conn.Kafka(kgo.DefaultProduceTopic("t"), kgo.RecordRetries(1), kgo.RetryTimeout(2*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
				cancel()
				cl.Close()
				if tc.ok && err != nil {
					t.Fatalf("right password: %v", err)
				}
				if !tc.ok && err == nil {
					t.Fatal("wrong password: produced anyway")
				}
			}
		})
	}
}

// TestCheckConfig: --check-config validates the connection settings of the
// flags a command registered and exits 0 without running it; a bad value
// exits 2 naming the flag and its variable.
func TestCheckConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want int
		ran  bool
	}{
		{name: "ok, not run", args: []string{"show", "--check-config"}, want: 0},
		{name: "without the flag it runs", args: []string{"show"}, want: 0, ran: true},
		{name: "bad mechanism from the environment", env: map[string]string{"DROVER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-1"}, args: []string{"show", "--check-config"}, want: 2},
		{name: "scram ok", env: map[string]string{"DROVER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "DROVER_KAFKA_SASL_USER": "u", "DROVER_KAFKA_SASL_PASSWORD_FILE": pw}, args: []string{"show", "--check-config"}, want: 0},
		{name: "check from the environment", env: map[string]string{"DROVER_CHECK_CONFIG": "true"}, args: []string{"show"}, want: 0},
		{name: "unreadable registry CA", args: []string{"show", "--check-config", "--schema-registry-tls-ca", "/nonexistent"}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r, seen := newTestRoot(t)
			if code := r.Execute(tt.args); code != tt.want {
				t.Fatalf("exit %d, want %d", code, tt.want)
			}
			if ran := *seen != nil; ran != tt.ran {
				t.Fatalf("command ran = %v, want %v", ran, tt.ran)
			}
		})
	}
	// A command that checks its own configuration runs to ConfigChecked,
	// and Kafka() refuses to connect under --check-config.
	r := NewRoot("test")
	var reached bool
	sub := &cobra.Command{Use: "own", RunE: func(cmd *cobra.Command, _ []string) error {
		reached = true
		if _, err := r.Conn.Kafka(); !errors.Is(err, ErrConfigOK) {
			return fmt.Errorf("Kafka() under --check-config: %v", err)
		}
		return r.Conn.ConfigChecked()
	}}
	ChecksConfig(sub)
	r.Conn.AddKafkaFlags(sub.Flags())
	r.Cmd.AddCommand(sub)
	if code := r.Execute([]string{"own", "--check-config"}); code != 0 || !reached {
		t.Fatalf("exit %d, reached %v", code, reached)
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

func TestDevEnvNamedButMissingIsAnError(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // the default .drover/dev.env does not exist here
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantErr string
	}{
		{name: "default path missing is fine", args: []string{"show"}, want: 0},
		{name: "empty flag reads none", args: []string{"show", "--dev-env", ""}, want: 0},
		{name: "flag names a missing file", args: []string{"show", "--dev-env", filepath.Join(dir, "nope.env")}, want: 2, wantErr: "--dev-env " + filepath.Join(dir, "nope.env") + ": no such file"},
		{name: "variable names a missing file", env: map[string]string{"DROVER_DEV_ENV": "/nonexistent/dev.env"}, args: []string{"show"}, want: 2, wantErr: "DROVER_DEV_ENV /nonexistent/dev.env: no such file"},
		{name: "empty variable reads none", env: map[string]string{"DROVER_DEV_ENV": ""}, args: []string{"show"}, want: 0},
		{name: "a directory", args: []string{"show", "--dev-env", dir}, want: 2, wantErr: "--dev-env " + dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r, _ := newTestRoot(t)
			sub, _, err := r.Cmd.Find(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.ParseFlags(tt.args[1:]); err != nil {
				t.Fatal(err)
			}
			err = r.prepare(sub, &bytes.Buffer{})
			if got := ExitCode(err); got != tt.want {
				t.Fatalf("exit %d (%v), want %d", got, err, tt.want)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// groupRoot is a root with a command group (no Run) of two subcommands,
// one nested group, and a runnable command.
func groupRoot() *Root {
	r := NewRoot("test")
	grp := &cobra.Command{Use: "grp", Short: "a group"}
	run := func(*cobra.Command, []string) error { return nil }
	nested := &cobra.Command{Use: "nested", Short: "a nested group", Args: cobra.NoArgs}
	nested.AddCommand(&cobra.Command{Use: "leaf", RunE: run})
	grp.AddCommand(&cobra.Command{Use: "a", RunE: run}, &cobra.Command{Use: "b", RunE: run}, nested)
	r.Cmd.AddCommand(grp, &cobra.Command{Use: "solo", RunE: run})
	return r
}

func TestGroupsWithoutSubcommandAreUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
	}{
		{name: "group alone", args: []string{"grp"}, want: 2, wantErr: "grp: a subcommand is required: a, b, nested (see 'drover grp --help')"},
		{name: "nested group alone", args: []string{"grp", "nested"}, want: 2, wantErr: "grp nested: a subcommand is required: leaf"},
		{name: "unknown subcommand", args: []string{"grp", "zzz"}, want: 2, wantErr: `grp: unknown command "zzz" (want a, b, nested`},
		{name: "unknown nested subcommand", args: []string{"grp", "nested", "zzz"}, want: 2, wantErr: `unknown command "zzz" for "drover grp nested"`},
		{name: "root alone", args: nil, want: 2, wantErr: "a command is required: grp, solo"},
		{name: "subcommand", args: []string{"grp", "a"}, want: 0},
		{name: "nested subcommand", args: []string{"grp", "nested", "leaf"}, want: 0},
		{name: "help", args: []string{"grp", "--help"}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := groupRoot()
			out := captureStderr(t, func() {
				if got := r.Execute(append([]string{"--dev-env", ""}, tt.args...)); got != tt.want {
					t.Errorf("exit %d, want %d", got, tt.want)
				}
			})
			if !strings.Contains(out, tt.wantErr) {
				t.Fatalf("stderr %q lacks %q", out, tt.wantErr)
			}
			if tt.want != 0 && (!strings.HasPrefix(out, "drover: ") || strings.Count(out, "drover: ") != 1 || strings.Contains(out, "drover: drover")) {
				t.Fatalf("want one line with one drover: prefix, got %q", out)
			}
		})
	}
}

func TestErrorsHaveOneDroverPrefix(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown flag of a subcommand", args: []string{"grp", "a", "--frob"}, want: "drover: grp a: unknown flag: --frob (see 'drover grp a --help')\n"},
		{name: "unknown flag of the root", args: []string{"--frob"}, want: "drover: unknown flag: --frob (see 'drover --help')\n"},
		{name: "bad argument count", args: []string{"solo2", "x", "y"}, want: "drover: solo2: accepts 1 arg(s), received 2 (see 'drover solo2 --help')\n"},
		{name: "unknown command", args: []string{"nope"}, want: "drover: unknown command \"nope\" for \"drover\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := groupRoot()
			r.Cmd.AddCommand(&cobra.Command{Use: "solo2", Args: cobra.ExactArgs(1), RunE: func(*cobra.Command, []string) error { return nil }})
			out := captureStderr(t, func() { r.Execute(append([]string{"--dev-env", ""}, tt.args...)) })
			if out != tt.want {
				t.Fatalf("got %q, want %q", out, tt.want)
			}
		})
	}
}

// captureStderr returns what fn wrote to os.Stderr.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = wr
	done := make(chan string)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(rd)
		done <- b.String()
	}()
	fn()
	os.Stderr = old
	wr.Close()
	return <-done
}

func TestOffsetsAfterBeforeTheEpoch(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	base := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	for i := range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x"), Timestamp: base.Add(time.Duration(i) * time.Minute)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	tests := []struct {
		name string
		at   time.Time
		want int64
	}{
		// -1 ms is Kafka's "latest" when passed on as a timestamp.
		{"one millisecond before the epoch", time.UnixMilli(-1).UTC(), 0},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"the epoch", time.UnixMilli(0), 0},
		{"between records", base.Add(90 * time.Second), 2},
		{"after every record", base.Add(time.Hour), 3},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OffsetsAfter(ctx, adm, tt.at, "t")
			if err == nil {
				err = got.Error()
			}
			if err != nil {
				t.Fatal(err)
			}
			o, ok := got.Lookup("t", 0)
			off := o.Offset
			if !ok || off < 0 {
				off = 3 // no record at or after: the end offset
			}
			if off != tt.want {
				t.Fatalf("offset %d, want %d", off, tt.want)
			}
		})
	}
}
