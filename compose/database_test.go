package compose

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/console"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/devstack/postgres"
)

// testServer is a PostgreSQL server the database tests may create roles
// and databases on: DROVER_TEST_DATABASE_URL's (a superuser), or a
// throwaway cluster from the machine's binaries, stopped at the end.
func testServer(t *testing.T) (admin string, cluster *postgres.Cluster) {
	t.Helper()
	if u := os.Getenv(devtest.EnvTestDatabaseURL); u != "" {
		return u, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := postgres.Start(ctx, postgres.Options{DataDir: filepath.Join(t.TempDir(), "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c.URL("postgres"), c
}

// freshDatabase creates an empty database named drover_<n> on the server
// and returns its superuser URL; it is dropped at the end.
func freshDatabase(t *testing.T, admin string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("drover_compose_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("%v (the database tests need a superuser: they create roles and a database)", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	u, _ := url.Parse(admin)
	u.Path = "/" + name
	return u.String()
}

// psqlPath finds psql (Debian: /usr/lib/postgresql/<v>/bin or PATH).
func psqlPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql"); len(m) > 0 {
		return m[len(m)-1]
	}
	t.Fatal("psql not found: apt-get install -y postgresql-client (make test installs postgresql: scripts/deps)")
	return ""
}

// runDBInit runs the overlay's db-init or db-grants service the way compose
// does: its entrypoint and command with its environment, the mounted
// scripts and secret files mapped to the repository's, libpq pointed at
// dbURL (as the superuser) and TLS settings replaced by extra.
func runDBInit(t *testing.T, p *types.Project, service, dbURL string, extra ...string) {
	t.Helper()
	s, ok := p.Services[service]
	if !ok {
		t.Fatalf("no service %s", service)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	local := func(v string) string {
		for _, vol := range s.Volumes {
			if strings.HasPrefix(v, vol.Target+"/") {
				return filepath.Join(vol.Source, strings.TrimPrefix(v, vol.Target+"/"))
			}
		}
		if m := secretPathRe.FindString(v); m != "" {
			return secretPath(t, p, s, m)
		}
		return v
	}
	pass, _ := u.User.Password()
	superPass := filepath.Join(t.TempDir(), "superuser")
	if err := os.WriteFile(superPass, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + filepath.Dir(psqlPath(t)) + ":" + os.Getenv("PATH")}
	for k, v := range s.Environment {
		if v != nil {
			env = append(env, k+"="+local(*v))
		}
	}
	env = append(env, "PGHOST="+u.Hostname(), "PGPORT="+u.Port(), "PGDATABASE="+strings.TrimPrefix(u.Path, "/"),
		"PGUSER="+u.User.Username(), "POSTGRES_PASSWORD_FILE="+superPass)
	env = append(env, extra...)
	args := make([]string, 0, len(s.Entrypoint)+len(s.Command))
	for _, a := range append(append([]string{}, s.Entrypoint...), s.Command...) {
		args = append(args, local(a))
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (%s): %v\n%s", service, strings.Join(args, " "), err, out)
	}
}

// secretPath is the repository file behind /run/secrets/<name> in s.
func secretPath(t *testing.T, p *types.Project, s types.ServiceConfig, path string) string {
	t.Helper()
	src := strings.TrimPrefix(mountedAt(s, path), "secret ")
	sec, ok := p.Secrets[src]
	if !ok {
		t.Fatalf("%s: %s is not a mounted secret", s.Name, path)
	}
	return sec.File
}

var macroRe = regexp.MustCompile(`\$__[A-Za-z]+(\(([^)]*)\))?`)

// expandMacros expands the Grafana PostgreSQL macros the dashboards use,
// as Grafana does; an unknown macro is an error.
func expandMacros(sql string, from, to time.Time) (string, error) {
	var bad []string
	out := macroRe.ReplaceAllStringFunc(sql, func(m string) string {
		sub := macroRe.FindStringSubmatch(m)
		switch name := strings.SplitN(m, "(", 2)[0]; name {
		case "$__timeFilter":
			return fmt.Sprintf("%s BETWEEN '%s' AND '%s'", sub[2], from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
		default:
			bad = append(bad, name)
			return m
		}
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("macros the test does not expand: %v", bad)
	}
	return out, nil
}

// TestIntegrationGrafanaRole creates the roles exactly as the overlays do
// (db-init, the sink's migrations as drover_sink, db-grants), then runs
// every SQL query of the dashboards as drover_grafana against the migrated
// schema, and checks what Grafana and the sink may not do.
func TestIntegrationGrafanaRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and builds drover")
	}
	p := mustLoad(t, overlays(t)[0])
	admin, _ := testServer(t)
	db := freshDatabase(t, admin)
	for i := 0; i < 2; i++ { // idempotent: a second run changes nothing and fails nothing
		runDBInit(t, p, "db-init", db)
		migrateAsSink(t, p, db)
		runDBInit(t, p, "db-grants", db)
	}
	ctx := context.Background()
	grafana := connectAs(t, db, "drover_grafana", exampleSecret(t, "postgres_grafana_password"))
	defer grafana.Close(ctx)

	n := 0
	to := time.Now()
	for file, d := range loadDashboards(t) {
		for _, pn := range d.Panels {
			for _, tg := range pn.Targets {
				if tg.RawSQL == "" {
					continue
				}
				n++
				q, err := expandMacros(tg.RawSQL, to.Add(-6*time.Hour), to)
				if err != nil {
					t.Errorf("%s: %q: %v", file, pn.Title, err)
					continue
				}
				rows, err := grafana.Query(ctx, q)
				if err == nil {
					for rows.Next() {
					}
					rows.Close()
					err = rows.Err()
				}
				if err != nil {
					t.Errorf("%s: panel %q as drover_grafana: %v\n%s", file, pn.Title, err, q)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no SQL query in the dashboards")
	}

	for _, c := range []struct{ name, sql string }{
		{"dead letters' payload bytes", "SELECT payload_excerpt FROM dead_letters"},
		{"dead letters' headers", "SELECT headers FROM dead_letters"},
		{"a table no dashboard reads", "SELECT count(*) FROM media_objects"},
		{"writing", "DELETE FROM alerts"},
		{"creating", "CREATE TABLE grafana_was_here (i int)"},
		{"raising its rights", "SET default_transaction_read_only = off; UPDATE device_state SET online = false"},
	} {
		if _, err := grafana.Exec(ctx, c.sql); !isDenied(err) {
			t.Errorf("drover_grafana %s (%s): err = %v, want permission denied or read-only", c.name, c.sql, err)
		}
	}

	// The sink owns what it created and is no superuser.
	su, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	var owner string
	var super, createRole bool
	if err := su.QueryRow(ctx, `SELECT tableowner, r.rolsuper, r.rolcreaterole FROM pg_tables t JOIN pg_roles r ON r.rolname = t.tableowner
		WHERE t.schemaname = 'public' AND t.tablename = 'sensor_readings'`).Scan(&owner, &super, &createRole); err != nil {
		t.Fatal(err)
	}
	if owner != "drover_sink" || super || createRole {
		t.Errorf("sensor_readings owned by %s (superuser %t, createrole %t), want drover_sink, neither", owner, super, createRole)
	}
}

// migrateAsSink runs sink-migrate's command with its DROVER_DATABASE_URL's
// user (drover_sink) against db; --timescale on becomes auto where the
// server has no TimescaleDB.
func migrateAsSink(t *testing.T, p *types.Project, db string) {
	t.Helper()
	s := p.Services["sink-migrate"]
	want, err := url.Parse(envOf(s, "DROVER_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(db)
	u.User = url.User(want.User.Username())
	args := append([]string{}, s.Command...)
	for i, a := range args {
		if a == "on" && i > 0 && args[i-1] == "--timescale" {
			args[i] = "auto"
		}
	}
	pgpass := filepath.Join(t.TempDir(), "pgpass")
	line := fmt.Sprintf("*:*:*:%s:%s\n", want.User.Username(), pgpassPassword(t, exampleSecret(t, "pgpass"), "*", "*", "drover_sink"))
	if err := os.WriteFile(pgpass, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runDrover(t, args, "DROVER_DATABASE_URL="+u.String(), "PGPASSFILE="+pgpass); err != nil {
		t.Fatalf("sink-migrate as %s: %v\n%s", want.User.Username(), err, out)
	}
}

func connectAs(t *testing.T, db, user, pass string) *pgx.Conn {
	t.Helper()
	u, _ := url.Parse(db)
	u.User = url.UserPassword(user, pass)
	c, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// isDenied: insufficient_privilege, or a write in a read-only transaction.
func isDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42501" || pe.Code == "25006")
}

// TestDatabaseClients checks every database client of every overlay: only
// db-init and db-grants log in as the superuser (drover); the sink as
// drover_sink, Grafana as drover_grafana. In staging and prod every client
// verifies the server (sslmode=verify-full) against a mounted CA.
func TestDatabaseClients(t *testing.T) {
	ds, err := os.ReadFile(filepath.Join("config", "grafana", "provisioning", "datasources", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"user: drover_grafana", "sslmode: $GRAFANA_DB_SSLMODE", "sslRootCertFile: $GRAFANA_DB_CA", "$__file{/run/secrets/postgres_grafana_password}"} {
		if !strings.Contains(string(ds), want) {
			t.Errorf("datasources.yaml lacks %q", want)
		}
	}
	for _, o := range overlays(t) {
		t.Run(o.name, func(t *testing.T) {
			p := mustLoad(t, o)
			tls := o.name != "base" && o.name != "dev"
			// client checks one client's user, sslmode and CA file.
			client := func(name, user, wantUser, sslmode, ca string) {
				s := p.Services[name]
				if user != wantUser {
					t.Errorf("%s logs in to the database as %q, want %q", name, user, wantUser)
				}
				if !tls {
					return
				}
				if sslmode != "verify-full" || ca == "" || mountedAt(s, ca) == "" {
					t.Errorf("%s: sslmode %q with CA %q (mounted: %t), want verify-full with a mounted CA", name, sslmode, ca, mountedAt(s, ca) != "")
				}
			}
			for name, s := range p.Services {
				if raw := envOf(s, "DROVER_DATABASE_URL"); raw != "" {
					u, err := url.Parse(raw)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					client(name, u.User.Username(), "drover_sink", u.Query().Get("sslmode"), u.Query().Get("sslrootcert"))
				}
			}
			if raw := envOf(p.Services["console"], "DROVER_CONSOLE_DATABASE_URL"); raw == "" {
				t.Error("console has no DROVER_CONSOLE_DATABASE_URL")
			} else if u, err := url.Parse(raw); err != nil {
				t.Fatalf("console: %v", err)
			} else {
				client("console", u.User.Username(), "drover_console", u.Query().Get("sslmode"), u.Query().Get("sslrootcert"))
				if _, ok := u.User.Password(); ok {
					t.Error("console: DROVER_CONSOLE_DATABASE_URL holds a password; use PGPASSFILE")
				}
				if pf := envOf(p.Services["console"], "PGPASSFILE"); pf == "" || mountedAt(p.Services["console"], pf) == "" {
					t.Errorf("console: PGPASSFILE %q is not a mounted secret", pf)
				}
			}
			for _, name := range []string{"db-init", "db-grants"} {
				s := p.Services[name]
				client(name, envOf(s, "PGUSER"), "drover", envOf(s, "PGSSLMODE"), envOf(s, "PGSSLROOTCERT"))
			}
			g := p.Services["grafana"]
			client("grafana", "drover_grafana", "drover_grafana", envOf(g, "GRAFANA_DB_SSLMODE"), envOf(g, "GRAFANA_DB_CA"))
			if mountedAt(g, "/run/secrets/postgres_password") != "" {
				t.Error("grafana mounts the superuser's password")
			}
		})
	}
}

// TestIntegrationConsoleRole creates the roles as the overlays do, then logs
// in as the console does (drover_console, the password from console_pgpass)
// through console.OpenDB, which refuses a superuser: the login is accepted,
// reads what the console's pages read, and may not write, raise its rights
// or read the dead letters' bytes.
func TestIntegrationConsoleRole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and builds drover")
	}
	p := mustLoad(t, overlays(t)[0])
	admin, _ := testServer(t)
	db := freshDatabase(t, admin)
	runDBInit(t, p, "db-init", db)
	migrateAsSink(t, p, db)
	runDBInit(t, p, "db-grants", db)

	s := p.Services["console"]
	want, err := url.Parse(envOf(s, "DROVER_CONSOLE_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	password := pgpassPassword(t, secretFile(t, p, s, envOf(s, "PGPASSFILE")), want.Hostname(), want.Port(), want.User.Username())
	if password != exampleSecret(t, "console_db_password") {
		t.Fatal("console_pgpass and console_db_password (what db-init sets) disagree")
	}
	u, _ := url.Parse(db)
	u.User = url.UserPassword(want.User.Username(), password)
	ctx := context.Background()
	pool, err := console.OpenDB(ctx, u.String())
	if err != nil {
		t.Fatalf("console.OpenDB as %s: %v", want.User.Username(), err)
	}
	defer pool.Close()
	if _, err := console.OpenDB(ctx, db); !errors.Is(err, console.ErrSuperuser) {
		t.Errorf("console.OpenDB as the superuser: err = %v, want ErrSuperuser", err)
	}
	for _, q := range []string{
		"SELECT count(*) FROM sensor_readings", "SELECT count(*) FROM gps_fixes", "SELECT count(*) FROM features",
		"SELECT count(*) FROM media_objects", "SELECT count(*) FROM alerts", "SELECT count(*) FROM device_state",
		"SELECT count(*) FROM dead_letters", "SELECT ts, stage, reason FROM dead_letters LIMIT 1",
		"SELECT tenant, device_id, online, last_seen, lat, lon, battery, firmware, active_alerts, metrics FROM device_state LIMIT 1",
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Errorf("drover_console: %s: %v", q, err)
		}
	}
	var connLimit int
	if err := pool.QueryRow(ctx, `SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user`).Scan(&connLimit); err != nil || connLimit < 1 {
		t.Errorf("drover_console connection limit %d (%v), want a limit", connLimit, err)
	}
	for _, c := range []struct{ name, sql string }{
		{"dead letters' payload bytes", "SELECT payload_excerpt FROM dead_letters"},
		{"writing", "DELETE FROM alerts"},
		{"creating", "CREATE TABLE console_was_here (i int)"},
		{"raising its rights", "SET default_transaction_read_only = off; UPDATE device_state SET online = false"},
	} {
		if _, err := pool.Exec(ctx, c.sql); !isDenied(err) {
			t.Errorf("drover_console %s (%s): err = %v, want permission denied or read-only", c.name, c.sql, err)
		}
	}
}

// pgpassPassword returns the password of the first line of a pgpass file
// that matches host, port and user as libpq matches them ("*" matches any
// value; a "*" argument matches any line), failing the test if none does.
func pgpassPassword(t *testing.T, content, host, port, user string) string {
	t.Helper()
	match := func(field, want string) bool { return field == "*" || want == "*" || field == want }
	for _, line := range strings.Split(content, "\n") {
		f := strings.SplitN(strings.TrimSpace(line), ":", 5)
		if len(f) == 5 && match(f[0], host) && match(f[1], port) && match(f[3], user) {
			return f[4]
		}
	}
	t.Fatalf("pgpass: no line for %s:%s user %s", host, port, user)
	return ""
}
