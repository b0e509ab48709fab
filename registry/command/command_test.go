package command

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// run executes a command tree (devices, tenants, registry) with args
// against the test registry and returns stdout, stderr and the exit code.
func run(t *testing.T, e *registrytest.Env, build func(*cli.Conn) *cobra.Command, args ...string) (string, string, int) {
	t.Helper()
	cmd := build(&cli.Conn{})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append(args, "--kafka-brokers", strings.Join(e.Brokers, ","), "--schema-registry-url", e.RegistryURL))
	err := cmd.ExecuteContext(registrytest.Ctx(t))
	if err != nil {
		errOut.WriteString(err.Error())
	}
	e.Sync(t) // what the command wrote is in the test's view
	return out.String(), errOut.String(), cli.ExitCode(err)
}

func wantCode(t *testing.T, code, want int, stdout, stderr string) {
	t.Helper()
	if code != want {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, want, stdout, stderr)
	}
}

func TestIntegrationTenantsAndDevices(t *testing.T) {
	e := registrytest.New(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "farm1-ca.key")

	out, errOut, code := run(t, e, TenantsCommand, "add", "farm1", "--ca-key-out", keyFile)
	wantCode(t, code, 0, out, errOut)
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v %v", st, err)
	}
	if tn, ok := e.View.Tenant("farm1"); !ok || tn.CACertPEM == "" {
		t.Fatal("the tenant's CA certificate is not in the registry")
	}
	_, errOut, code = run(t, e, TenantsCommand, "add", "farm1", "--no-ca")
	if code != 1 || !strings.Contains(errOut, "tenant farm1 already exists") {
		t.Fatalf("duplicate tenant: exit %d, %s", code, errOut)
	}
	_, errOut, code = run(t, e, TenantsCommand, "add", "farm2", "--ca-key-out", keyFile)
	if code != 2 || !strings.Contains(errOut, "exists; not overwriting it") {
		t.Fatalf("tenant add over an existing key file: exit %d, %s", code, errOut)
	}

	out, errOut, code = run(t, e, DevicesCommand, "add", "farm1/cow-1", "--label", "herd=north", "--type", "collar")
	wantCode(t, code, 0, out, errOut)
	secret := field(out, "secret: ")
	if d, ok := e.View.Device("farm1", "cow-1"); !ok || !d.Secret.Verify([]byte(secret)) || d.Labels["herd"] != "north" {
		t.Fatalf("added device %+v does not verify the printed secret %q", d, secret)
	}
	_, errOut, code = run(t, e, DevicesCommand, "add", "farm1/cow-1")
	if code != 1 || !strings.Contains(errOut, "device farm1/cow-1 already exists") {
		t.Fatalf("duplicate device: exit %d, %s", code, errOut)
	}
	_, errOut, code = run(t, e, DevicesCommand, "add", "farm1/cow\u202e2")
	if code != 2 || !strings.Contains(errOut, `"farm1/cow\u202e2"`) {
		t.Fatalf("bad id: exit %d, %s", code, errOut)
	}

	// A certificate-only device whose key and certificate are generated.
	certFile, devKey := filepath.Join(dir, "gate.crt"), filepath.Join(dir, "gate.key")
	out, errOut, code = run(t, e, DevicesCommand, "add", "farm1/gate-1", "--no-secret", "--issue-cert", "--ca-key", keyFile, "--cert-out", certFile, "--key-out", devKey)
	wantCode(t, code, 0, out, errOut)
	if strings.Contains(out, "secret:") {
		t.Fatalf("a certificate-only device printed a secret: %s", out)
	}
	if st, err := os.Stat(devKey); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("device key file: %v %v", st, err)
	}
	certPEM, _ := os.ReadFile(certFile)
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := e.View.DeviceByCert(registry.Fingerprint(cert.Raw)); !ok || d.Key() != "farm1/gate-1" {
		t.Fatal("the issued certificate is not enrolled")
	}
	tn, _ := e.View.Tenant("farm1")
	ca, _ := tn.CACert()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the certificate does not verify against the tenant's published CA: %v", err)
	}

	out, _, code = run(t, e, DevicesCommand, "show", "farm1/cow-1")
	if code != 0 || !strings.Contains(out, `"algorithm": "pbkdf2-sha512"`) || strings.Contains(out, `"hash"`) || strings.Contains(out, `"salt"`) {
		t.Fatalf("show: %s", out)
	}
	for _, verb := range []string{"suspend", "activate", "revoke"} {
		out, errOut, code = run(t, e, DevicesCommand, verb, "farm1/cow-1")
		wantCode(t, code, 0, out, errOut)
	}
	if d, _ := e.View.Device("farm1", "cow-1"); d.Status != registry.StatusRevoked {
		t.Fatalf("status %s after revoke", d.Status)
	}
	_, errOut, code = run(t, e, DevicesCommand, "activate", "farm1/cow-1")
	if code != 1 || !strings.Contains(errOut, "revoked, which is final") {
		t.Fatalf("activate revoked: exit %d %s", code, errOut)
	}
	out, errOut, code = run(t, e, DevicesCommand, "delete", "farm1/cow-1")
	wantCode(t, code, 0, out, errOut)

	out, errOut, code = run(t, e, DevicesCommand, "add", "farm1/cow-2")
	wantCode(t, code, 0, out, errOut)
	old := field(out, "secret: ")
	out, errOut, code = run(t, e, DevicesCommand, "rotate", "farm1/cow-2")
	wantCode(t, code, 0, out, errOut)
	if d, _ := e.View.Device("farm1", "cow-2"); d.Secret.Verify([]byte(old)) || !d.Secret.Verify([]byte(field(out, "secret: "))) {
		t.Fatal("rotate did not replace the secret")
	}
	out, _, code = run(t, e, TenantsCommand, "ca")
	if code != 0 || !strings.Contains(out, "# tenant farm1\n-----BEGIN CERTIFICATE-----") {
		t.Fatalf("tenants ca: %s", out)
	}
	out, _, code = run(t, e, TenantsCommand, "list", "--format", "json")
	if code != 0 || !strings.Contains(out, `"tenant":"farm1"`) || !strings.Contains(out, `"devices":2`) {
		t.Fatalf("tenants list: %s", out)
	}
}

func field(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

func TestIntegrationImport(t *testing.T) {
	e := registrytest.New(t)
	e.AddTenant(t, "farm1")
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-9"})
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.csv", "tenant,device_id,type,label.herd,alt.deveui\nfarm1,cow-1,collar,north,70B3D57ED0000001\nfarm1,cow-2,collar,south,\n")
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"bad value", "tenant,device_id,offline_timeout\nfarm1,cow-1,1h\nfarm1,cow-2,a while\n", []string{`line 3, field offline_timeout: "a while" is not a duration`}},
		{"unknown column", "tenant,device_id,colour\nfarm1,cow-1,red\n", []string{"line 1, field colour: unknown column"}},
		{"duplicate in the file", "tenant,device_id\nfarm1,cow-1\nfarm1,cow-1\n", []string{"line 3: device farm1/cow-1 duplicates line 2"}},
		{"already registered", "tenant,device_id\nfarm1,cow-1\nfarm1,cow-9\n", []string{"line 3: device farm1/cow-9 already exists"}},
		{"unknown tenant", "tenant,device_id\nfarm7,cow-1\n", []string{"line 2: tenant farm7 is not registered"}},
		{"bad id and bad label", "tenant,device_id,label.owner\nfarm1,cow 1,ann\nfarm1,cow-3,\x1b[31mred\n",
			[]string{`line 2, field device_id: device id "cow 1"`, "line 3, field label.owner: has a control or format character"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(t, e, DevicesCommand, "import", write(strings.ReplaceAll(tc.name, " ", "-")+".csv", tc.body))
			if code != 2 {
				t.Fatalf("exit %d, want 2: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if !strings.Contains(errOut, "nothing") {
				t.Errorf("stderr %q does not say nothing was applied", errOut)
			}
			if n := len(e.View.Devices()); n != 1 {
				t.Fatalf("%d devices after a refused import, want 1", n)
			}
		})
	}
	out, errOut, code := run(t, e, DevicesCommand, "import", good, "--dry-run")
	wantCode(t, code, 0, out, errOut)
	if !strings.Contains(errOut, "2 device(s) would be added; nothing written") || out != "would add farm1/cow-1\nwould add farm1/cow-2\n" || len(e.View.Devices()) != 1 {
		t.Fatalf("dry run: %q %q, %d devices", out, errOut, len(e.View.Devices()))
	}
	secrets := filepath.Join(dir, "secrets.csv")
	out, errOut, code = run(t, e, DevicesCommand, "import", good, "--secrets-out", secrets)
	wantCode(t, code, 0, out, errOut)
	st, err := os.Stat(secrets)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", st, err)
	}
	b, _ := os.ReadFile(secrets)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "tenant,device_id,secret" {
		t.Fatalf("secrets file:\n%s", b)
	}
	sec := strings.Split(lines[1], ",")[2]
	if d, ok := e.View.Device("farm1", "cow-1"); !ok || !d.Secret.Verify([]byte(sec)) || d.AltIDs["deveui"] != "70b3d57ed0000001" {
		t.Fatalf("imported cow-1 %+v", d)
	}
	_, errOut, code = run(t, e, DevicesCommand, "import", good)
	if code != 2 || !strings.Contains(errOut, "line 2: device farm1/cow-1 already exists") {
		t.Fatalf("importing again: exit %d %s", code, errOut)
	}
}

// TestIntegrationListJoinsState: list shows registry devices with their
// last-seen state from state.latest, and --unregistered the devices only
// state.latest knows.
func TestIntegrationListJoinsState(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1", Labels: map[string]string{"herd": "north"}})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-2"})
	if _, err := schemas.Register(ctx, e.SR, []string{topics.StateLatest}); err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(e.Producer).CreateTopic(ctx, 2, 1, nil, topics.StateLatest); err != nil {
		t.Fatal(err)
	}
	seen := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	for _, dev := range []string{"cow-1", "ghost"} {
		v, err := e.Serde.Encode(ctx, topics.StateLatest, &schemas.DeviceState{Tenant: "farm1", DeviceID: dev, TS: seen, IngestedAt: seen, Online: true, LastSeen: seen, Metrics: map[string]float64{}, UpdatedAt: seen})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Producer.ProduceSync(ctx, &kgo.Record{Topic: topics.StateLatest, Key: []byte(dev), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := run(t, e, DevicesCommand, "list", "--format", "json", "--unregistered")
	wantCode(t, code, 0, out, errOut)
	var rows []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		rows = append(rows, m)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(rows), out)
	}
	if rows[0]["device_id"] != "cow-1" || rows[0]["online"] != true || rows[0]["last_seen"] == nil || rows[0]["labels"].(map[string]any)["herd"] != "north" {
		t.Errorf("cow-1: %v", rows[0])
	}
	if rows[1]["device_id"] != "cow-2" || rows[1]["last_seen"] != nil || rows[1]["status"] != "active" {
		t.Errorf("cow-2 (never seen): %v", rows[1])
	}
	if rows[2]["device_id"] != "ghost" || rows[2]["status"] != "unregistered" {
		t.Errorf("ghost: %v", rows[2])
	}
	out, _, _ = run(t, e, DevicesCommand, "list", "--format", "table", "--status", "active")
	if !strings.Contains(out, "herd=north") || strings.Contains(out, "ghost") || !strings.Contains(out, "never") {
		t.Fatalf("table:\n%s", out)
	}
	_, errOut, code = run(t, e, DevicesCommand, "list", "--status", "lost")
	if code != 2 || !strings.Contains(errOut, "--status") {
		t.Fatalf("bad --status: exit %d %s", code, errOut)
	}
	bare := DevicesCommand(&cli.Conn{})
	bare.SetArgs(nil)
	bare.SetOut(&bytes.Buffer{})
	if err := bare.Execute(); cli.ExitCode(err) != 2 {
		t.Fatalf("bare 'devices': %v", err)
	}
}

// TestIntegrationDynsecConfig: the rendered file carries the admin and
// every device that is not revoked, with its stored hash, mode 0600.
func TestIntegrationDynsecConfig(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	a := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-2"})
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-2", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pass := filepath.Join(dir, "admin.pass")
	if err := os.WriteFile(pass, []byte("admin-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, e, RegistryCommand, "dynsec-config", "--dynsec-password-file", pass)
	if code != 2 || !strings.Contains(errOut, "--out") {
		t.Fatalf("without --out: exit %d %s", code, errOut)
	}
	out := filepath.Join(dir, "dynamic-security.json")
	stdout, errOut, code := run(t, e, RegistryCommand, "dynsec-config", "--dynsec-password-file", pass, "--out", out)
	wantCode(t, code, 0, stdout, errOut)
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("rendered file: %v %v", st, err)
	}
	var cfg struct {
		Clients []struct {
			Username, Password, Salt string
			Iterations               int
		}
	}
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cfg.Clients {
		names = append(names, c.Username)
		if c.Username == "farm1/cow-1" && (c.Iterations != a.Device.Secret.Iterations || c.Password == "" || c.Salt == "") {
			t.Errorf("cow-1 without its hash: %+v", c)
		}
	}
	if strings.Join(names, ",") != "drover-registry,farm1/cow-1" {
		t.Fatalf("clients %v, want the admin and the one device that is not revoked", names)
	}
}
