package timescale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
)

// writerBound is how long a write may take while an analyst holds
// something: the sink's DDL gives way after ddlLockTimeout, so a writer
// queued behind it waits at most that, plus slack for a loaded machine.
const writerBound = ddlLockTimeout + 4*time.Second

// within runs f and fails the test unless it returns, without error, within
// d. A blocked f ends the test at once, so the test's deferred releases
// (the analyst's rollback) unblock it.
func within(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %s", what, d)
	}
}

// TestIntegrationAnalystCannotBlockWriter: a read-only analyst (a real
// login) holds each lock a SELECT-only role can take, or runs a long query,
// or leaves a transaction idle; meanwhile the sink writes readings and
// fixes (taking the rollup lock), into days whose partition does not exist
// yet, refreshes the rollups, migrates and maintains partitions. None of it
// may wait on the analyst beyond writerBound.
func TestIntegrationAnalystCannotBlockWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, layout := migratedDB(t)
	ctx := context.Background()
	w := testWriter(t, dbURL, layout)
	sinkConn := connect(t, dbURL)
	day := 10 // each write lands on a day not written before: a new partition or chunk
	write := func() error {
		day++
		ts := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -day)
		_, err := w.Write(ctx, &Batch{
			Readings: []schemas.SensorReading{{EventID: fmt.Sprint("r", day), Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: ts, IngestedAt: ts, Value: 38}},
			Fixes:    []schemas.GPSFix{{EventID: fmt.Sprint("g", day), Tenant: "farm", DeviceID: "cow-1", TS: ts, IngestedAt: ts, Lat: 47, Lon: 8}},
		})
		return err
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	holds := []struct {
		name string
		sql  []string // run by the analyst in an open transaction
		slow string   // a query the analyst keeps running meanwhile
	}{
		{name: "advisory locks on the keys the sink once used", sql: []string{
			"SELECT pg_advisory_lock(7237970105436623440)", "SELECT pg_advisory_lock(7237970105436623441)", // rollup, refresh
			"SELECT pg_advisory_lock(7237970105436622129)", "SELECT pg_advisory_lock(7237970105436622130)", // migrate, partitions
		}},
		{name: "idle in transaction after reading every table", sql: []string{
			"SELECT count(*) FROM sensor_readings", "SELECT count(*) FROM gps_fixes", "SELECT count(*) FROM rollup_watermarks",
			"SELECT count(*) FROM gps_distance_daily", "SELECT count(*) FROM sensor_readings_hourly", "SELECT count(*) FROM dead_letters",
		}},
		{name: "LOCK TABLE in the one mode allowed", sql: []string{
			"LOCK TABLE sensor_readings, gps_fixes, features, rollup_watermarks, gps_distance_daily IN ACCESS SHARE MODE",
		}},
		{name: "a long query", slow: "SELECT count(*), pg_sleep(30) FROM sensor_readings"},
	}
	for _, h := range holds {
		t.Run(h.name, func(t *testing.T) {
			analyst := loginAs(t, dbURL, AnalystRole)
			tx, err := analyst.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.WithoutCancel(ctx))
			for _, q := range h.sql {
				if _, err := tx.Exec(ctx, q); err != nil {
					t.Fatalf("analyst: %s: %v", q, err)
				}
			}
			slowCtx, stopSlow := context.WithCancel(ctx)
			slowDone := make(chan struct{})
			if h.slow != "" {
				go func() { defer close(slowDone); _, _ = tx.Exec(slowCtx, h.slow) }()
				time.Sleep(300 * time.Millisecond) // running, holding its locks
			} else {
				close(slowDone)
			}
			defer func() { stopSlow(); <-slowDone }()

			within(t, writerBound, "write into a new day", write)
			within(t, writerBound, "another write", write)
			within(t, writerBound, "rollup refresh", func() error { _, err := RefreshRollups(ctx, sinkConn, layout); return err })
			within(t, writerBound, "migrate", func() error { _, err := Migrate(ctx, sinkConn, ModeAuto, layout, testLog()); return err })
			// Creating partitions ahead never waits; dropping expired ones
			// gives way to a reader of them (an error, retried by the next
			// run) without holding anyone up.
			maint := layout
			maint.RetentionDays = 5
			within(t, writerBound, "maintenance", func() error {
				_, err := Maintain(ctx, sinkConn, maint, time.Now())
				if err != nil && (isCode(err, "55P03") || errors.Is(err, errGaveWay)) {
					return nil
				}
				return err
			})
			within(t, writerBound, "write after maintenance", write)
		})
	}
	// Once the analysts are gone, retention finishes what gave way.
	maint := layout
	maint.RetentionDays = 5
	if _, err := Maintain(ctx, sinkConn, maint, time.Now()); err != nil {
		t.Fatalf("maintenance after the analysts left: %v", err)
	}
	if !layout.Timescale {
		for _, table := range timeTables {
			cutoff := partitionName(table, time.Now().UTC().AddDate(0, 0, -5))
			if n := count(t, sinkConn, `SELECT count(*) FROM pg_class WHERE starts_with(relname, $1) AND relname < $2`, table+"_p", cutoff); n != 0 {
				t.Errorf("%d expired partitions (or leftovers) of %s remain after retention", n, table)
			}
		}
		if st, err := partitionStatus(ctx, sinkConn, partitionName(TableSensorReadings, time.Now().AddDate(0, 0, 7))); err != nil || st != partAttached {
			t.Errorf("partition 7 days ahead: %v, %v; want it created and attached", st, err)
		}
	}
}

// TestIntegrationAnalystLocksDenied: every lock mode but ACCESS SHARE, row
// locks, and any lock on the sink's lock tables are refused to an analyst.
func TestIntegrationAnalystLocksDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, _ := migratedDB(t)
	analyst := loginAs(t, dbURL, AnalystRole)
	ctx := context.Background()
	for _, q := range []string{
		"LOCK TABLE sensor_readings IN ROW SHARE MODE",
		"LOCK TABLE sensor_readings IN SHARE MODE",
		"LOCK TABLE gps_fixes IN SHARE UPDATE EXCLUSIVE MODE",
		"LOCK TABLE rollup_watermarks IN EXCLUSIVE MODE",
		"LOCK TABLE sensor_readings IN ACCESS EXCLUSIVE MODE",
		"LOCK TABLE rollup_gate IN ACCESS SHARE MODE",
		"LOCK TABLE " + migrationLockTable + " IN ACCESS SHARE MODE",
		"SELECT * FROM rollup_watermarks FOR UPDATE",
		"SELECT * FROM device_state FOR KEY SHARE",
	} {
		tx, err := analyst.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, q); !permissionDenied(err) {
			t.Errorf("analyst: %s: err = %v, want permission denied", q, err)
		}
		_ = tx.Rollback(ctx)
	}
}

// TestIntegrationMigrationGivesWay: a migration that needs ACCESS EXCLUSIVE
// on a table an analyst is reading waits for the analyst, but gives way
// every ddlLockTimeout, so writers queued behind it are not held up longer;
// it completes once the analyst is done.
func TestIntegrationMigrationGivesWay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, layout := migratedDB(t)
	ctx := context.Background()
	w := testWriter(t, dbURL, layout)
	analyst := loginAs(t, dbURL, AnalystRole)
	tx, err := analyst.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM sensor_readings"); err != nil {
		t.Fatal(err)
	}
	migrator := connect(t, dbURL)
	applied := make(chan error, 1)
	go func() {
		applied <- applyMigration(ctx, migrator, Migration{Version: 9999, Name: "probe", SQL: "ALTER TABLE sensor_readings ADD COLUMN probe integer"},
			layout.Path(), testLog())
	}()
	deadline := time.Now().Add(3 * ddlLockTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		ts := at(1, i)
		within(t, writerBound, "write while a migration waits", func() error {
			_, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{{EventID: fmt.Sprint("m", i), Tenant: "farm", DeviceID: "cow-1",
				Metric: "temperature", TS: ts, IngestedAt: ts, Value: 38}}})
			return err
		})
		select {
		case err := <-applied:
			t.Fatalf("migration finished (%v) while the analyst held the table", err)
		default:
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("migration did not finish after the analyst left")
	}
	var n int64
	if err := migrator.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE version = 9999").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration recorded %d times (%v), want once", n, err)
	}
}

// TestIntegrationSinkReadyReportsStall: a write that waits (here behind an
// owner's ACCESS EXCLUSIVE lock, as a manual DDL would take) flips /readyz
// to 503 with the reason, and drover_sink_write_stalled to 1, once it has
// waited longer than the stall timeout; both recover when it goes through.
func TestIntegrationSinkReadyReportsStall(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 1)
	dbURL := devtest.Postgres(t)
	rs := startSink(t, env, dbURL, func(c *Config) { c.StallTimeout = time.Second })
	srv := admin.New("127.0.0.1:0", testLog())
	srv.AddCheck("sink", rs.sink.Ready)
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = srv.Run(sctx) }()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + srv.Addr() + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady(t, rs)
	readings(t, env, 0, 10)
	waitFor(t, 60*time.Second, "first readings", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })

	ctx := context.Background()
	owner := connect(t, dbURL)
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE sensor_readings IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	readings(t, env, 10, 10)
	stalled := rs.reg
	waitFor(t, 30*time.Second, "/readyz 503 while the write waits", func() (bool, string) {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "pending for"), fmt.Sprint(code, " ", body)
	})
	if v := gauge(t, stalled, "drover_sink_write_stalled"); v != 1 {
		t.Errorf("drover_sink_write_stalled = %v while stalled, want 1", v)
	}
	if v := gauge(t, stalled, "drover_sink_write_pending_seconds"); v < 1 {
		t.Errorf("drover_sink_write_pending_seconds = %v while stalled, want at least the stall timeout", v)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "ready again after the write went through", func() (bool, string) {
		code, body := readyz()
		return code == http.StatusOK, fmt.Sprint(code, " ", body)
	})
	waitFor(t, 30*time.Second, "every reading written", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	if v := gauge(t, stalled, "drover_sink_write_stalled"); v != 0 {
		t.Errorf("drover_sink_write_stalled = %v after recovery, want 0", v)
	}
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dbURL, 20)
}

// gauge reads the value of an unlabelled gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("gauge %s not found", name)
	return 0
}
