package compose

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

var pathRE = regexp.MustCompile(`/[A-Za-z0-9._/-]+`)

// TestIntegrationServicesPassCheckConfig runs every drover service of every
// compose combination through the binary's own configuration validation:
// its command and environment with --check-config, its secrets and bind
// mounts at the host files compose would mount (the example secrets), must
// exit 0. A value a stage refuses at start (a SASL mechanism it does not
// support, a CA that is not PEM, a file that is not mounted) fails here.
func TestIntegrationServicesPassCheckConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the drover binary")
	}
	seen := map[string]bool{}
	pems := placeholderPEMs(t)
	for _, o := range overlays(t) {
		p := mustLoad(t, o)
		for name, s := range p.Services {
			if s.Image != testImage {
				continue
			}
			args, env := serviceRun(t, p, s, pems)
			key := strings.Join(args, "\x00") + "\x01" + strings.Join(env, "\x00")
			if seen[key] {
				continue
			}
			seen[key] = true
			t.Run(o.name+"/"+name, func(t *testing.T) {
				out, err := runDrover(t, append(args, "--check-config"), env...)
				if err != nil || !strings.Contains(out, "configuration ok") {
					t.Errorf("%v\nenvironment:\n  %s", err, strings.Join(env, "\n  "))
				}
			})
		}
	}
}

// serviceRun returns the service's drover arguments and DROVER_*
// environment with container paths moved to the host files compose mounts
// there (secrets, bind mounts) or, for named volumes, a temporary directory.
func serviceRun(t *testing.T, p *types.Project, s types.ServiceConfig, pems func(string) string) (args, env []string) {
	t.Helper()
	mounts := map[string]string{} // container path → host path
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = sec.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		if def, ok := p.Secrets[sec.Source]; ok && def.File != "" {
			mounts[target] = pems(def.File)
		}
	}
	for _, v := range s.Volumes {
		switch v.Type {
		case types.VolumeTypeBind:
			mounts[v.Target] = v.Source
		default:
			mounts[v.Target] = t.TempDir()
		}
	}
	targets := make([]string, 0, len(mounts))
	for k := range mounts {
		targets = append(targets, k)
	}
	// Longest first: mounts may nest.
	sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
	rewrite := func(v string) string {
		return pathRE.ReplaceAllStringFunc(v, func(path string) string {
			for _, tg := range targets {
				if path == tg {
					return mounts[tg]
				}
				if rel, ok := strings.CutPrefix(path, strings.TrimSuffix(tg, "/")+"/"); ok {
					return filepath.Join(mounts[tg], rel)
				}
			}
			return path
		})
	}
	for _, a := range s.Command {
		args = append(args, rewrite(a))
	}
	for k, v := range s.Environment {
		if v != nil && strings.HasPrefix(k, "DROVER_") {
			env = append(env, k+"="+rewrite(*v))
		}
	}
	slices.Sort(env)
	return args, env
}

// placeholderPEMs returns a function that maps an example secret file to
// itself, or, for the placeholder PEM files of secrets/example (not
// certificates), to a generated CA, certificate or key of the same role.
func placeholderPEMs(t *testing.T) func(string) string {
	ca := newTestCA(t)
	cert, key := ca.server(t, "drover")
	dir := t.TempDir()
	gen := map[string]string{}
	for name, data := range map[string][]byte{"ca.pem": ca.pem, "cert.pem": cert, "key.pem": key} {
		gen[name] = filepath.Join(dir, name)
		if err := os.WriteFile(gen[name], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, []byte("PLACEHOLDER")) {
			return path
		}
		base := filepath.Base(path)
		switch {
		case strings.Contains(base, "key"):
			return gen["key.pem"]
		case strings.HasPrefix(base, "ca"):
			return gen["ca.pem"]
		}
		return gen["cert.pem"]
	}
}
