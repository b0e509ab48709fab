package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// pemFiles is throw-away TLS material for --check-config runs: a CA and a
// client certificate with its key.
type pemFiles struct{ ca, cert, key []byte }

func newPEMFiles(t *testing.T) pemFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "check-config"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return pemFiles{ca: cert, cert: cert, key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

// content guesses a mounted secret file's content from its name: CAs and
// certificates get a real PEM certificate, keys a matching key, anything
// else (passwords, tokens) a line of text.
func (p pemFiles) content(name string) []byte {
	base := strings.ToLower(filepath.Base(name))
	switch {
	case strings.HasSuffix(base, ".key") || strings.Contains(base, "key.pem"):
		return p.key
	case strings.HasPrefix(base, "ca") || strings.Contains(base, "-ca"):
		return p.ca
	case strings.HasSuffix(base, ".crt") || strings.HasSuffix(base, ".pem"):
		return p.cert
	}
	return []byte("placeholder-secret\n")
}

// secretValues stand in for env variables a container takes from Secrets
// (keys as the operators write them).
var secretValues = map[string]string{
	"uri": "postgres://drover_sink@drover-db-rw.db.svc:5432/drover",
}

var pathRE = regexp.MustCompile(`/[A-Za-z0-9._/-]+`)

// podFS lays out what a container would see under its mounts in a
// temporary root: ConfigMap volumes with their real data, Secret and other
// volumes as generated files, every path named in a value created; it
// returns the values with every mount path moved below the root.
type podFS struct {
	t     *testing.T
	root  string
	mnts  []corev1.VolumeMount
	vols  map[string]corev1.Volume
	cms   map[string]*corev1.ConfigMap
	files pemFiles
}

func (p *podFS) rewrite(v string) string {
	return pathRE.ReplaceAllStringFunc(v, func(path string) string {
		// The longest mount path containing path (mounts may nest).
		var best *corev1.VolumeMount
		for i, m := range p.mnts {
			mp := strings.TrimSuffix(m.MountPath, "/")
			if (path == mp || strings.HasPrefix(path, mp+"/")) && (best == nil || len(mp) > len(strings.TrimSuffix(best.MountPath, "/"))) {
				best = &p.mnts[i]
			}
		}
		if best == nil {
			return path
		}
		p.ensure(path, *best)
		return filepath.Join(p.root, path)
	})
}

// ensure creates path below the root: from the ConfigMap behind the mount
// when there is one, else generated; a path without an extension under an
// emptyDir or PVC is a directory.
func (p *podFS) ensure(path string, m corev1.VolumeMount) {
	full := filepath.Join(p.root, path)
	if _, err := os.Stat(full); err == nil {
		return
	}
	v := p.vols[m.Name]
	rel := strings.TrimPrefix(strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")), "/")
	var data []byte
	switch {
	case v.ConfigMap != nil && p.cms[v.ConfigMap.Name] != nil:
		key := rel
		for _, it := range v.ConfigMap.Items {
			if it.Path == rel {
				key = it.Key
			}
		}
		d, ok := p.cms[v.ConfigMap.Name].Data[key]
		if !ok {
			p.t.Errorf("%s: ConfigMap %s has no key %s", path, v.ConfigMap.Name, key)
		}
		data = []byte(d)
	case v.Secret != nil || v.Projected != nil:
		data = p.files.content(path)
	case rel == "" || filepath.Ext(rel) == "":
		if err := os.MkdirAll(full, 0o755); err != nil {
			p.t.Fatal(err)
		}
		return
	default:
		data = p.files.content(path)
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(full, data, 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// checkConfig runs `drover <args> --check-config` with exactly env, in an
// empty working directory, and returns its output and exit code.
func checkConfig(t *testing.T, args, env []string) (string, int) {
	t.Helper()
	cmd := exec.Command(drover(t), append(slices.Clone(args), "--check-config")...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"HOME=" + cmd.Dir, "DROVER_DEV_ENV=", "PATH=/usr/bin:/bin",
		// The AWS chain must not read the developer's own files.
		"AWS_CONFIG_FILE=" + filepath.Join(cmd.Dir, "aws-config"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(cmd.Dir, "aws-credentials")}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// containerCheck is one container of a rendered overlay with the arguments
// and environment it would run with, its files laid out below a root.
type containerCheck struct {
	where string
	args  []string
	env   []string
}

func containerChecks(t *testing.T, dir string, files pemFiles) []containerCheck {
	t.Helper()
	objs := render(t, dir)
	cms := configMaps(objs)
	var out []containerCheck
	for _, w := range workloads(objs) {
		vols := map[string]corev1.Volume{}
		for _, v := range w.Pod.Volumes {
			vols[v.Name] = v
		}
		for _, c := range append(slices.Clone(w.Pod.InitContainers), w.Pod.Containers...) {
			fs := &podFS{t: t, root: t.TempDir(), mnts: c.VolumeMounts, vols: vols, cms: cms, files: files}
			cc := containerCheck{where: fmt.Sprintf("%s %s %s container %s", dir, w.Kind, w.Name, c.Name)}
			for _, a := range c.Args {
				cc.args = append(cc.args, fs.rewrite(a))
			}
			vars := map[string]string{}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && cms[ef.ConfigMapRef.Name] != nil {
					for k, v := range cms[ef.ConfigMapRef.Name].Data {
						vars[ef.Prefix+k] = v
					}
				}
			}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom == nil:
					vars[e.Name] = e.Value
				case e.ValueFrom.ConfigMapKeyRef != nil:
					cm := cms[e.ValueFrom.ConfigMapKeyRef.Name]
					if cm == nil {
						t.Errorf("%s: env %s: ConfigMap %s is not rendered", cc.where, e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
						continue
					}
					vars[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
				case e.ValueFrom.SecretKeyRef != nil:
					v, ok := secretValues[e.ValueFrom.SecretKeyRef.Key]
					if !ok {
						v = "placeholder-secret"
					}
					vars[e.Name] = v
				default:
					vars[e.Name] = "placeholder"
				}
			}
			for k, v := range vars {
				cc.env = append(cc.env, k+"="+fs.rewrite(v))
			}
			slices.Sort(cc.env)
			out = append(out, cc)
		}
	}
	return out
}

// TestIntegrationContainersPassCheckConfig runs every container of every
// overlay through drover's own configuration validation: its arguments and
// environment (ConfigMaps resolved, Secrets and mounted files stood in for
// with well-formed values) with --check-config must exit 0. A value the
// binary would refuse at start — a SASL mechanism a stage does not support,
// a CA that is not PEM, a missing mounted file — fails here, not in the
// cluster.
func TestIntegrationContainersPassCheckConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the drover binary")
	}
	files := newPEMFiles(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			for _, cc := range containerChecks(t, dir, files) {
				out, code := checkConfig(t, cc.args, cc.env)
				if code != 0 || !strings.Contains(out, "configuration ok") {
					t.Errorf("%s: drover %s --check-config: exit %d\n%s\nenvironment:\n  %s", cc.where, strings.Join(cc.args, " "), code, out, strings.Join(cc.env, "\n  "))
				}
			}
		})
	}
}

// TestIntegrationCheckConfigCatchesABadOverlay proves the test above can
// fail: the prod process container with a misspelt mechanism, an unreadable
// CA and a missing password file each exit 2 naming the variable.
func TestIntegrationCheckConfigCatchesABadOverlay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the drover binary")
	}
	var proc *containerCheck
	for _, cc := range containerChecks(t, "overlays/prod", newPEMFiles(t)) {
		if len(cc.args) > 0 && cc.args[0] == "process" {
			proc = &cc
			break
		}
	}
	if proc == nil {
		t.Fatal("prod overlay runs no drover process")
	}
	for _, tc := range []struct{ set, want string }{
		{"DROVER_KAFKA_SASL_MECHANISM=SCRAM-SHA512", "($DROVER_KAFKA_SASL_MECHANISM): unknown mechanism"},
		{"DROVER_KAFKA_TLS_CA=/etc/hostname", "($DROVER_KAFKA_TLS_CA)"},
		{"DROVER_KAFKA_SASL_PASSWORD_FILE=/nonexistent/password", "($DROVER_KAFKA_SASL_PASSWORD_FILE)"},
	} {
		env := slices.DeleteFunc(slices.Clone(proc.env), func(kv string) bool {
			return strings.HasPrefix(kv, strings.SplitN(tc.set, "=", 2)[0]+"=")
		})
		out, code := checkConfig(t, proc.args, append(env, tc.set))
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 2 naming %q:\n%s", tc.set, code, tc.want, out)
		}
	}
}
