package compose

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/devstack/postgres"
)

// testCA is a certificate authority for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "drover-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// server returns a server certificate and key (PEM) for the DNS names.
func (ca *testCA) server(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// writeServerFile writes a file the server reads: mode 0600, owned by the
// postgres OS user when the tests run as root (the server runs as it).
func writeServerFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationDatabaseTLS starts PostgreSQL with the staging and prod
// overlays' TimescaleDB settings (ssl on, the certificate set, their
// pg_hba.conf) and checks that clients get in only over TLS they verified:
// Grafana's role with sslmode=verify-full and the CA, the sink with the
// overlay's own URL; no TLS, another CA, another host name or a wrong
// password are refused. It always starts its own server: it tests the
// server's configuration.
func TestIntegrationDatabaseTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	all := overlays(t)
	for _, o := range []overlay{all[2], all[3]} {
		p := mustLoad(t, o)
		if got := strings.Join(p.Services["timescaledb"].Command, " "); !strings.Contains(got, "ssl=on") || !strings.Contains(got, "hba_file=") {
			t.Fatalf("%s: timescaledb runs %q, want ssl=on and the overlay's hba_file", o.name, got)
		}
	}
	staging := mustLoad(t, all[2])
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	c, err := postgres.Start(ctx, postgres.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	runDBInit(t, mustLoad(t, all[0]), "db-init", c.URL("postgres"))
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// The overlay's server settings, its files put in the data directory.
	ca, otherCA := newTestCA(t), newTestCA(t)
	certPEM, keyPEM := ca.server(t, "timescaledb")
	files := map[string][]byte{"/run/secrets/postgres_cert.pem": certPEM, "/run/secrets/postgres_key.pem": keyPEM}
	ts := staging.Services["timescaledb"]
	for _, v := range ts.Volumes {
		if strings.HasSuffix(v.Target, "pg_hba.conf") {
			hba, err := os.ReadFile(v.Source)
			if err != nil {
				t.Fatal(err)
			}
			// The test harness's own readiness check (postgres, no TLS,
			// from 127.0.0.1) comes first; the overlay's file follows as is.
			files[v.Target] = append([]byte("host postgres postgres 127.0.0.1/32 trust\n"), hba...)
		}
	}
	var conf strings.Builder
	for i, a := range ts.Command {
		if a != "-c" || i+1 == len(ts.Command) {
			continue
		}
		k, v, _ := strings.Cut(ts.Command[i+1], "=")
		if data, ok := files[v]; ok {
			v = filepath.Join(dir, filepath.Base(v))
			writeServerFile(t, v, data)
		}
		conf.WriteString(k + " = '" + v + "'\n")
	}
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf.String()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c, err = postgres.Start(ctx, postgres.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("restart with the overlay's TLS settings:\n%s\n%v", conf.String(), err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	caFile, otherFile := filepath.Join(t.TempDir(), "ca.pem"), filepath.Join(t.TempDir(), "other-ca.pem")
	for f, b := range map[string][]byte{caFile: ca.pem, otherFile: otherCA.pem} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	grafanaPW := exampleSecret(t, "postgres_grafana_password")
	psql := func(conninfo, password string) (string, error) {
		cmd := exec.Command(psqlPath(t), "-X", "-A", "-t", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
			conninfo+" hostaddr=127.0.0.1 port="+strconv.Itoa(c.Port())+" dbname=postgres user=drover_grafana")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=10")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := psql("host=timescaledb sslmode=verify-full sslrootcert="+caFile, grafanaPW); err != nil || out != "t" {
		t.Errorf("drover_grafana with verify-full and the CA: %v %q, want a TLS session", err, out)
	}
	for _, c := range []struct{ name, conninfo, password, want string }{
		{"without TLS", "host=timescaledb sslmode=disable", grafanaPW, "no pg_hba.conf entry"},
		{"trusting another CA", "host=timescaledb sslmode=verify-full sslrootcert=" + otherFile, grafanaPW, "certificate verify failed"},
		{"under another host name", "host=db.example sslmode=verify-full sslrootcert=" + caFile, grafanaPW, "does not match host name"},
		{"with a wrong password", "host=timescaledb sslmode=verify-full sslrootcert=" + caFile, "wrong", "password authentication failed"},
	} {
		if out, err := psql(c.conninfo, c.password); err == nil || !strings.Contains(out, c.want) {
			t.Errorf("drover_grafana %s: %v %q, want refused (%s)", c.name, err, out, c.want)
		}
	}

	// The sink, with the overlay's own URL: the CA file is where the
	// overlay mounts it, the name resolves to this server.
	raw := envOf(staging.Services["sink"], "DROVER_DATABASE_URL")
	u, err := url.Parse(strings.ReplaceAll(raw, "/run/secrets/ca.pem", caFile))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/postgres"
	u.User = url.UserPassword(u.User.Username(), strings.SplitN(exampleSecret(t, "pgpass"), ":", 5)[4])
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(c.Port())
	cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	sink, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("sink with %s: %v", raw, err)
	}
	defer sink.Close(ctx)
	var ssl bool
	if err := sink.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("sink session: ssl = %t, %v", ssl, err)
	}
}
