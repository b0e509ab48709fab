package consolecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/cli"
)

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	_ = os.WriteFile(short, []byte("abc\n"), 0o600)
	tokenFile := func(name, body string) string {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	badRoutes := filepath.Join(dir, "routes.yaml")
	_ = os.WriteFile(badRoutes, []byte("routes: [{name: x}]\n"), 0o644)
	notGeo := filepath.Join(dir, "p.json")
	_ = os.WriteFile(notGeo, []byte(`{"type":"Point","coordinates":[1,2]}`), 0o644)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"tls half", []string{"--console-tls-cert", "c.pem"}, "--console-tls-cert and --console-tls-key"},
		{"refresh", []string{"--console-refresh", "100ms"}, "--console-refresh"},
		{"short token", []string{"--operator-token-file", short}, "shorter than 16"},
		{"missing token", []string{"--operator-token-file", filepath.Join(dir, "nope")}, "--operator-token-file"},
		{"no token", []string{"--operator-token-file", tokenFile("empty", "# nobody yet\n\n")}, "holds no token"},
		{"three fields", []string{"--operator-token-file", tokenFile("three", "alice smith 0123456789abcdef0123\n")}, "line 1: want TOKEN or NAME TOKEN"},
		{"bad name", []string{"--operator-token-file", tokenFile("name", "a/b 0123456789abcdef0123\n")}, `name "a/b"`},
		{"short named token", []string{"--operator-token-file", tokenFile("shortnamed", "alice 0123456789abcdef0123\nbob short\n")}, "line 2: token shorter than 16"},
		{"token twice", []string{"--operator-token-file", tokenFile("twice", "alice 0123456789abcdef0123\nbob 0123456789abcdef0123\n")}, "line 2: a token given twice"},
		{"routes", []string{"--routes", badRoutes}, "--routes"},
		{"registry mode", []string{"--registry", "strict"}, "--registry"},
		{"paddocks", []string{"--paddocks", notGeo}, "--paddocks"},
		{"stage url", []string{"--stage-urls", "bridge=ftp://x"}, "--stage-urls"},
		{"stage name", []string{"--stage-urls", "http://127.0.0.1:9410"}, "--stage-urls"},
		{"addr", []string{"--console-addr", "9480"}, "--console-addr"},
		{"cap", []string{"--replication-cap", "-1"}, "--replication-cap"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f Flags
			fs := pflag.NewFlagSet("console", pflag.ContinueOnError)
			f.AddFlags(fs)
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			_, err := f.Config("test")
			if err == nil || !strings.Contains(err.Error(), c.want) || cli.ExitCode(err) != 2 {
				t.Fatalf("err %v (exit %d), want a usage error naming %q", err, cli.ExitCode(err), c.want)
			}
		})
	}
}

func TestDefaultsAreLoopbackAndReadOnly(t *testing.T) {
	var f Flags
	fs := pflag.NewFlagSet("console", pflag.ContinueOnError)
	f.AddFlags(fs)
	cfg, err := f.Config("test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(f.Addr, "127.0.0.1:") || cfg.TokenFile != "" || len(cfg.Stages) != 4 {
		t.Fatalf("defaults: addr %s token %q stages %d", f.Addr, cfg.TokenFile, len(cfg.Stages))
	}
}
