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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

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

// TestIntegrationDatabaseTLS starts PostgreSQL with the prod overlay's
// TimescaleDB node settings (the postgresql.parameters of the Patroni
// configuration its nodes run: ssl on, the certificate set, the overlay's
// pg_hba.conf), checks that staging's single server runs with the same TLS
// settings, and checks that clients get in only over TLS they verified:
// Grafana's role with sslmode=verify-full and the CA, the sink, its
// migrations and the console with the overlays' own URLs (prod: PgBouncer,
// HAProxy's read-write and read-only ports, which pass TLS through to the
// node, so the certificate carries those names); no TLS, another CA, another
// host name or a wrong password are refused. It always starts its own
// server: it tests the server's configuration.
func TestIntegrationDatabaseTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	all := overlays(t)
	staging, prod := mustLoad(t, all[2]), mustLoad(t, all[3])
	stagingTLS := commandSettings(staging.Services["timescaledb"].Command)
	prodTLS := patroniParameters(t, prod.Services["timescaledb"])
	for name, got := range map[string]map[string]string{"staging": stagingTLS, "prod": prodTLS} {
		if got["ssl"] != "on" || got["hba_file"] == "" {
			t.Fatalf("%s: timescaledb runs with %v, want ssl=on and the overlay's hba_file", name, got)
		}
	}
	for _, k := range []string{"ssl", "ssl_cert_file", "ssl_key_file", "hba_file"} {
		if stagingTLS[k] != prodTLS[k] {
			t.Errorf("%s: staging %q, prod's Patroni nodes %q", k, stagingTLS[k], prodTLS[k])
		}
	}
	for _, node := range []string{"timescaledb", "timescaledb-2"} {
		if got := prod.Services[node].Command; !slices.Equal(got, prod.Services["timescaledb"].Command) {
			t.Errorf("prod %s runs %q, want the same as timescaledb", node, got)
		}
	}
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
	certPEM, keyPEM := ca.server(t, "timescaledb", "timescaledb-2", "haproxy", "pgbouncer")
	files := map[string][]byte{"/run/secrets/postgres_cert.pem": certPEM, "/run/secrets/postgres_key.pem": keyPEM}
	ts := prod.Services["timescaledb"]
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
	if _, ok := files[prodTLS["hba_file"]]; !ok {
		t.Fatalf("prod timescaledb mounts no file at its hba_file %s", prodTLS["hba_file"])
	}
	var conf strings.Builder
	keys := make([]string, 0, len(prodTLS))
	for k := range prodTLS {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := prodTLS[k]
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

	// The sink, its migrations and the console, with the overlays' own
	// URLs: the CA file is where the overlay mounts it, every name resolves
	// to this server.
	for _, tc := range []struct{ overlay, service, env, pgpass string }{
		{"staging", "sink", "DROVER_DATABASE_URL", "pgpass"},
		{"prod", "sink", "DROVER_DATABASE_URL", "pgpass"},
		{"prod", "sink-migrate", "DROVER_DATABASE_URL", "pgpass"},
		{"prod", "console", "DROVER_CONSOLE_DATABASE_URL", "console_pgpass"},
	} {
		p := staging
		if tc.overlay == "prod" {
			p = prod
		}
		raw := envOf(p.Services[tc.service], tc.env)
		u, err := url.Parse(strings.ReplaceAll(raw, "/run/secrets/ca.pem", caFile))
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/postgres"
		// The password of the pgpass line for this host and port, as libpq
		// would pick it in the container.
		u.User = url.UserPassword(u.User.Username(), pgpassPassword(t, exampleSecret(t, tc.pgpass), u.Hostname(), u.Port(), u.User.Username()))
		cfg, err := pgx.ParseConfig(u.String())
		if err != nil {
			t.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(c.Port())
		cfg.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		cfg.LookupFunc = func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Errorf("%s %s with %s: %v", tc.overlay, tc.service, raw, err)
			continue
		}
		var ssl bool
		if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
			t.Errorf("%s %s session: ssl = %t, %v", tc.overlay, tc.service, ssl, err)
		}
		conn.Close(ctx)
	}
}

// commandSettings returns the -c key=value settings of a postgres command.
func commandSettings(cmd []string) map[string]string {
	out := map[string]string{}
	for i, a := range cmd {
		if a == "-c" && i+1 < len(cmd) {
			k, v, _ := strings.Cut(cmd[i+1], "=")
			out[k] = v
		}
	}
	return out
}

// patroniParameters returns the postgresql.parameters of the Patroni
// configuration a node service runs (the file its command names, mounted
// from the repository).
func patroniParameters(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	if len(s.Command) != 2 || s.Command[0] != "patroni" {
		t.Fatalf("timescaledb runs %q, want patroni <config>", s.Command)
	}
	for _, v := range s.Volumes {
		if v.Target != s.Command[1] {
			continue
		}
		data, err := os.ReadFile(v.Source)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			PostgreSQL struct {
				Parameters map[string]string `yaml:"parameters"`
			} `yaml:"postgresql"`
		}
		if err := yaml.Unmarshal(data, &conf); err != nil {
			t.Fatalf("%s: %v", v.Source, err)
		}
		return conf.PostgreSQL.Parameters
	}
	t.Fatalf("timescaledb mounts no file at %s", s.Command[1])
	return nil
}
