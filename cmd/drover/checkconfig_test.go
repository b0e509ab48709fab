package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// kafkaCommands walks the real command tree and returns the path of every
// runnable command that connects to Kafka (has --kafka-brokers).
func kafkaCommands(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			walk(s, append(append([]string(nil), path...), s.Name()))
		}
		if c.Runnable() && c.Flags().Lookup("kafka-brokers") != nil {
			out = append(out, path)
		}
	}
	walk(newRoot().Cmd, nil)
	if len(out) < 15 {
		t.Fatalf("found only %d commands with Kafka flags: %v", len(out), out)
	}
	return out
}

// withArgs adds placeholder positional arguments until cobra accepts the
// command's arguments (state get DEVICE, schemas show SUBJECT, ...).
func withArgs(t *testing.T, path []string, env []string) []string {
	t.Helper()
	args := append(append([]string(nil), path...), "--check-config", "--dev-env", "")
	for i := 0; i < 3; i++ {
		_, out := drover(t, env, args...)
		if !strings.Contains(out, "accepts ") && !strings.Contains(out, "requires at least") && !strings.Contains(out, "received 0") {
			return args
		}
		args = append(append(append([]string(nil), path...), "placeholder"), args[len(path):]...)
		path = append(path, "placeholder")
	}
	return args
}

// TestKafkaConfigErrorsOnEveryCommand: on every command that talks to
// Kafka, an unknown or misspelt SASL mechanism, a missing OAUTHBEARER token
// file and an unreadable CA are configuration errors naming the flag and
// its variable (exit 2), and every mechanism with its files in place passes
// --check-config.
func TestKafkaConfigErrorsOnEveryCommand(t *testing.T) {
	dir := t.TempDir()
	pw, tok := filepath.Join(dir, "password"), filepath.Join(dir, "token")
	for _, f := range []string{pw, tok} {
		if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The AWS chain must not read the caller's files; the sink checks its
	// database URL too.
	aws := []string{"AWS_CONFIG_FILE=" + filepath.Join(dir, "aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "aws-credentials"),
		"DROVER_DATABASE_URL=postgres://drover@127.0.0.1:5432/drover"}
	bad := []struct {
		name, want string
		env        []string
	}{
		{"misspelt mechanism", "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM): unknown mechanism \"SCRAM-SHA512\"", []string{"DROVER_KAFKA_SASL_MECHANISM=SCRAM-SHA512", "DROVER_KAFKA_SASL_USER=u", "DROVER_KAFKA_SASL_PASSWORD_FILE=" + pw}},
		{"unknown mechanism", "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM): unknown mechanism \"GSSAPI\"", []string{"DROVER_KAFKA_SASL_MECHANISM=GSSAPI"}},
		{"missing token file", "--kafka-sasl-token-file ($DROVER_KAFKA_SASL_TOKEN_FILE): stat /nonexistent/token", []string{"DROVER_KAFKA_SASL_MECHANISM=OAUTHBEARER", "DROVER_KAFKA_SASL_TOKEN_FILE=/nonexistent/token"}},
		{"unreadable CA", "--kafka-tls-ca ($DROVER_KAFKA_TLS_CA): open /nonexistent/ca.crt", []string{"DROVER_KAFKA_TLS_CA=/nonexistent/ca.crt"}},
	}
	good := map[string][]string{
		"PLAIN":         {"DROVER_KAFKA_SASL_MECHANISM=PLAIN", "DROVER_KAFKA_SASL_USER=u", "DROVER_KAFKA_SASL_PASSWORD_FILE=" + pw},
		"SCRAM-SHA-256": {"DROVER_KAFKA_SASL_MECHANISM=SCRAM-SHA-256", "DROVER_KAFKA_SASL_USER=u", "DROVER_KAFKA_SASL_PASSWORD_FILE=" + pw},
		"SCRAM-SHA-512": {"DROVER_KAFKA_SASL_MECHANISM=SCRAM-SHA-512", "DROVER_KAFKA_SASL_USER=u", "DROVER_KAFKA_SASL_PASSWORD_FILE=" + pw},
		"OAUTHBEARER":   {"DROVER_KAFKA_SASL_MECHANISM=OAUTHBEARER", "DROVER_KAFKA_SASL_TOKEN_FILE=" + tok},
		"AWS_MSK_IAM":   {"DROVER_KAFKA_SASL_MECHANISM=AWS_MSK_IAM", "AWS_ACCESS_KEY_ID=AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY=secret", "AWS_REGION=eu-west-1"},
	}
	for _, path := range kafkaCommands(t) {
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			args := withArgs(t, path, aws)
			for _, b := range bad {
				code, out := drover(t, append(append([]string(nil), aws...), b.env...), args...)
				if code != 2 || !strings.Contains(out, b.want) {
					t.Errorf("%s: exit %d, want 2 with %q:\n%s", b.name, code, b.want, out)
				}
			}
			for name, env := range good {
				if code, out := drover(t, append(append([]string(nil), aws...), env...), args...); code != 0 {
					t.Errorf("%s: exit %d, want 0:\n%s", name, code, out)
				}
			}
		})
	}
}
