package devtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/devstack/postgres"
)

// EnvTestDatabaseURL names the variable that points Postgres at an existing
// server instead of a throwaway cluster.
const EnvTestDatabaseURL = "DROVER_TEST_DATABASE_URL"

// templateDB is the empty database every per-test database is copied from;
// it accepts no connections, so CREATE DATABASE ... TEMPLATE never finds it
// busy.
const templateDB = "drover_test_template"

// shared is the one PostgreSQL server of the test process.
var shared struct {
	once    sync.Once
	err     error
	cluster *postgres.Cluster // nil with DROVER_TEST_DATABASE_URL
	dataDir string
	admin   string // URL used to create and drop per-test databases
	// template is the database per-test databases are copied from.
	template string
	// schemas: CREATE DATABASE is not permitted on the external server, so
	// each test gets a schema in the given database (search_path) instead.
	schemas bool
}

var seq atomic.Int64

// Postgres returns the URL of a fresh, empty database for this test, and
// drops it when the test ends.
//
// The server is started once per test process (initdb + start, about 1 s)
// under os.TempDir(); each test then gets CREATE DATABASE test_<pid>_<n>
// TEMPLATE drover_test_template (about 0.05 s). Use Main in TestMain so the
// server stops when the tests end (a crash kills it anyway).
//
// With DROVER_TEST_DATABASE_URL set, that server is used instead: each test
// gets its own database created from template0; if the user may not create
// databases, each test gets its own schema in the given database instead
// (the URL carries search_path), dropped with CASCADE at the end.
func Postgres(t testing.TB) string {
	t.Helper()
	shared.once.Do(setupShared)
	if shared.err != nil {
		t.Fatalf("devtest: postgres: %v", shared.err)
	}
	ctx := context.Background()
	name := fmt.Sprintf("test_%d_%d", os.Getpid(), seq.Add(1))
	conn, err := pgx.Connect(ctx, shared.admin)
	if err != nil {
		t.Fatalf("devtest: postgres: %v", err)
	}
	defer conn.Close(ctx)
	id := pgx.Identifier{name}.Sanitize()
	var dbURL string
	if shared.schemas {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+id); err != nil {
			t.Fatalf("devtest: postgres: create schema %s: %v", name, err)
		}
		dbURL = withQuery(shared.admin, "search_path", name)
	} else {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+id+" TEMPLATE "+pgx.Identifier{shared.template}.Sanitize()); err != nil {
			t.Fatalf("devtest: postgres: create database %s: %v", name, err)
		}
		dbURL = withDatabase(shared.admin, name)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, shared.admin)
		if err != nil {
			t.Errorf("devtest: postgres: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		q := "DROP DATABASE IF EXISTS " + id + " WITH (FORCE)"
		if shared.schemas {
			q = "DROP SCHEMA IF EXISTS " + id + " CASCADE"
		}
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Errorf("devtest: postgres: drop %s: %v", name, err)
		}
	})
	return dbURL
}

func setupShared() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if u := os.Getenv(EnvTestDatabaseURL); u != "" {
		shared.admin, shared.template = u, "template0"
		shared.err = probeCreateDatabase(ctx, u)
		return
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("drover-devtest-pg-%d-", os.Getpid()))
	if err != nil {
		shared.err = err
		return
	}
	shared.dataDir = dir
	c, err := postgres.Start(ctx, postgres.Options{DataDir: dir, Logger: Logger()})
	if err != nil {
		shared.err = err
		return
	}
	shared.cluster = c
	shared.admin, shared.template = c.URL("postgres"), templateDB
	if err := c.CreateDatabase(ctx, templateDB, ""); err != nil {
		shared.err = err
		return
	}
	conn, err := pgx.Connect(ctx, shared.admin)
	if err != nil {
		shared.err = err
		return
	}
	defer conn.Close(ctx)
	_, shared.err = conn.Exec(ctx, "ALTER DATABASE "+templateDB+" WITH ALLOW_CONNECTIONS false IS_TEMPLATE true")
}

// probeCreateDatabase decides between databases and schemas per test on an
// external server.
func probeCreateDatabase(ctx context.Context, u string) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvTestDatabaseURL, err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("test_%d_probe", os.Getpid())
	id := pgx.Identifier{name}.Sanitize()
	_, err = conn.Exec(ctx, "CREATE DATABASE "+id+" TEMPLATE template0")
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		_, err = conn.Exec(ctx, "DROP DATABASE "+id)
		return err
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		shared.schemas = true
		return nil
	default:
		return fmt.Errorf("%s: create database: %w", EnvTestDatabaseURL, err)
	}
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

func withQuery(raw, k, v string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// Main runs the tests and then stops the shared PostgreSQL server (and
// removes its data), then exits with the tests' code. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "devtest:", err)
	}
	os.Exit(code)
}

func stopShared() error {
	var err error
	if shared.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err = shared.cluster.Stop(ctx)
	}
	if shared.dataDir != "" {
		err = errors.Join(err, os.RemoveAll(shared.dataDir))
	}
	return err
}
