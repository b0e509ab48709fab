package timescale

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/devstack/devtest"
)

// backendPIDs runs `SELECT pg_backend_pid()` on b while a holds a server
// connection in an open transaction, a few times, and returns the distinct
// server processes b ran on. Behind a transaction-pooling PgBouncer with
// two server connections, b lands on the one a does not hold: it moves.
func backendPIDs(t *testing.T, a, b *pgx.Conn) map[int32]bool {
	t.Helper()
	ctx := context.Background()
	pids := map[int32]bool{}
	for range 6 {
		var pid int32
		if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
		tx, err := a.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_backend_pid()"); err != nil {
			t.Fatal(err)
		}
		if err := b.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return pids
}

// TestIntegrationSinkThroughPgBouncer runs the sink (migrations, writes,
// the staging path of a full replay, rollup refreshes, maintenance)
// through a real PgBouncer in transaction and in session pooling mode,
// with two server connections and another client's transactions in
// between, so the sink's consecutive transactions run on different server
// connections: every row arrives exactly once, the replay writes nothing,
// the rollups are exact.
func TestIntegrationSinkThroughPgBouncer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			env := newKafkaEnv(t, 3)
			direct := devtest.Postgres(t)
			// Two server connections in transaction mode; in session mode a
			// client keeps one for its whole session, and a sink holds up to
			// four at a time (writer, maintenance, and while migrating the
			// migration and its lock holder), plus this test's.
			pool := 2
			if mode == "session" {
				pool = 8
			}
			bouncer := devtest.PgBouncer(t, direct, mode, pool)
			a, b := connectSink(t, bouncer), connectSink(t, bouncer)
			pids := backendPIDs(t, a, b)
			switch {
			case mode == "transaction" && len(pids) < 2:
				t.Fatalf("one client stayed on one server connection (%v): the test would prove nothing", pids)
			case mode == "session" && len(pids) != 1:
				t.Fatalf("a session-pooled client moved between server connections: %v", pids)
			}
			a.Close(context.Background())
			b.Close(context.Background())

			// Another client's transactions keep the server connections
			// changing hands while the sink runs.
			noiseCtx, stopNoise := context.WithCancel(context.Background())
			var noise sync.WaitGroup
			noise.Add(1)
			go func() {
				defer noise.Done()
				cfg, err := ParseURL(bouncer)
				if err != nil {
					return
				}
				c, err := pgx.ConnectConfig(noiseCtx, cfg)
				if err != nil {
					return
				}
				defer c.Close(context.Background())
				for noiseCtx.Err() == nil {
					_, _ = c.Exec(noiseCtx, "SELECT pg_sleep(0.005)")
				}
			}()
			defer func() { stopNoise(); noise.Wait() }()

			want := dataset(t, env)
			rs := startSink(t, env, bouncer, func(c *Config) {
				l := DefaultLayout(PathPostgres)
				l.RefreshInterval = time.Second
				c.Layout, c.MaintenanceInterval = &l, time.Second
			})
			waitReady(t, rs)
			waitFor(t, 90*time.Second, "all rows and committed offsets", func() (bool, string) {
				got := tableCounts(t, direct)
				if !sameCounts(want, got) {
					return false, fmt.Sprint(got)
				}
				return groupCaughtUp(t, env, DefaultGroup)
			})
			if err := rs.stop(); err != nil {
				t.Fatalf("sink: %v", err)
			}
			replay := replayChangesNothing(t, env, bouncer)
			replay.sink.mu.Lock()
			w := replay.sink.writer
			replay.sink.mu.Unlock()
			if w == nil || w.Paths.Staged.Load() == 0 {
				t.Error("the replay took no staging path: the test did not exercise it")
			}
			c := connectSink(t, bouncer)
			layout := DefaultLayout(PathPostgres)
			res, err := Migrate(context.Background(), c, ModeAuto, layout, testLog())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := RefreshRollups(context.Background(), c, res.Layout); err != nil {
				t.Fatal(err)
			}
			checkRollups(t, connect(t, direct))
		})
	}
}

// connectDefaults connects to url with pgx's defaults.
func connectDefaults(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// connectSink connects to url as the sink does (ParseURL's settings),
// closed at the end of the test.
func connectSink(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestIntegrationPgxDefaultsBreakOnTransactionPooling shows why ParseURL
// turns off pgx's prepared statement cache: with pgx's defaults a client
// behind a transaction-pooling PgBouncer meets its own prepared statement
// missing on the next server connection.
func TestIntegrationPgxDefaultsBreakOnTransactionPooling(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bouncer := devtest.PgBouncer(t, devtest.Postgres(t), "transaction", 2)
	a, b := connectDefaults(t, bouncer), connectDefaults(t, bouncer)
	ctx := context.Background()
	var failed error
	for i := 0; i < 6 && failed == nil; i++ {
		var n int
		failed = b.QueryRow(ctx, "SELECT $1::int", i).Scan(&n)
		tx, err := a.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		if failed == nil {
			failed = b.QueryRow(ctx, "SELECT $1::int", i).Scan(&n)
		}
		_ = tx.Rollback(ctx)
	}
	if failed == nil {
		t.Fatal("pgx's statement cache worked across server connections: the pooling is not transaction pooling")
	}
	t.Logf("with pgx's defaults: %v", failed)
}
