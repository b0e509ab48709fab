package timescale

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/schemas"
)

// TestDesiredPolicies: the refresh windows reach back to a day short of
// retention (everything without retention), the schedule is the flag, and
// a zero flag asks for no policy.
func TestDesiredPolicies(t *testing.T) {
	l := DefaultLayout(PathTimescale)
	l.RefreshInterval = 10 * time.Second
	l.RetentionDays = 30
	l.CompressAfterDays = 0
	got := map[string]policy{}
	for _, p := range desiredPolicies(l) {
		got[p.relation+" "+string(p.kind)] = p
	}
	day := 24 * time.Hour
	for key, want := range map[string]policy{
		"sensor_readings policy_retention":                           {kind: policyRetention, relation: "sensor_readings", after: 30 * day},
		"features policy_compression":                                {kind: policyCompression, relation: "features"},
		"sensor_readings_hourly policy_refresh_continuous_aggregate": {kind: policyRefresh, relation: ViewReadingsHourly, start: 29 * day, end: time.Hour, every: 10 * time.Second},
		"sensor_readings_daily policy_refresh_continuous_aggregate":  {kind: policyRefresh, relation: ViewReadingsDaily, start: 29 * day, end: day, every: 10 * time.Second},
	} {
		if got[key] != want {
			t.Errorf("%s: %+v, want %+v", key, got[key], want)
		}
	}
	if p := got["features policy_compression"]; p.wanted() {
		t.Error("--compress-after-days 0 asks for a compression policy")
	}
	l.RetentionDays = 0
	for _, p := range desiredPolicies(l) {
		if p.kind == policyRefresh && p.start != 0 {
			t.Errorf("without retention the %s window starts %v back, want the beginning", p.relation, p.start)
		}
		if p.kind == policyRefresh && !strings.Contains(p.addSQL(l), "start_offset => NULL::interval") {
			t.Errorf("open window renders as %s", p.addSQL(l))
		}
	}
	if desiredPolicies(DefaultLayout(PathPostgres)) != nil {
		t.Error("plain PostgreSQL has TimescaleDB policies")
	}
}

func TestTimescaleRetentionFloor(t *testing.T) {
	l := DefaultLayout(PathTimescale)
	l.CompressAfterDays = 0
	l.RetentionDays = 3
	if err := l.validate(); err == nil || !strings.Contains(err.Error(), "--retention-days") {
		t.Errorf("retention 3 on TimescaleDB: %v, want an error naming --retention-days", err)
	}
	l.RetentionDays = minTimescaleRetentionDays
	if err := l.validate(); err != nil {
		t.Errorf("retention %d: %v", l.RetentionDays, err)
	}
	l = DefaultLayout(PathPostgres)
	l.RetentionDays = 1
	if err := l.validate(); err != nil {
		t.Errorf("retention 1 on plain PostgreSQL: %v", err)
	}
}

// TestSupersededChecksums: a database migrated by an earlier release with
// another --refresh-interval (0003) or the earlier features compression
// order (0005) is recognised, not reported as an edited migration; other
// texts are not.
func TestSupersededChecksums(t *testing.T) {
	l := DefaultLayout(PathTimescale)
	l.ExtSchema = "ts"
	migs, err := Migrations(l)
	if err != nil {
		t.Fatal(err)
	}
	byVersion := map[int]Migration{}
	for _, m := range migs {
		byVersion[m.Version] = m
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	m3 := byVersion[3]
	if !strings.Contains(m3.SQL, "schedule_interval => INTERVAL '300 seconds'") {
		t.Fatalf("0003 no longer renders the default schedule:\n%s", m3.SQL)
	}
	for _, iv := range []string{"10 seconds", "2 seconds", "3600 seconds", "86400 seconds"} {
		old := strings.ReplaceAll(m3.SQL, "INTERVAL '300 seconds'", "INTERVAL '"+iv+"'")
		if !supersededChecksum(m3, l, sum(old)) {
			t.Errorf("0003 rendered with %s is not recognised", iv)
		}
	}
	if supersededChecksum(m3, l, sum(m3.SQL+"-- edited")) {
		t.Error("an edited 0003 is taken for an earlier rendering")
	}
	m5 := byVersion[5]
	old5 := strings.Replace(m5.SQL, "compress_orderby = 'ts DESC, feature_id'", "compress_orderby = 'ts DESC'", 1)
	if old5 == m5.SQL || !supersededChecksum(m5, l, sum(old5)) {
		t.Error("0005 with the earlier features order is not recognised")
	}
	if supersededChecksum(byVersion[2], l, sum("x")) {
		t.Error("0002 has no earlier rendering")
	}
}

// TestRetryConcurrentRefresh: a refresh that meets a concurrent one
// (55P03) is tried again until it gets through; other errors end it.
func TestRetryConcurrentRefresh(t *testing.T) {
	busy := &pgconn.PgError{Code: "55P03", Message: "could not refresh continuous aggregate due to a concurrent refresh"}
	tries := 0
	err := retryConcurrentRefresh(context.Background(), func() error {
		if tries++; tries < 4 {
			return busy
		}
		return nil
	})
	if err != nil || tries != 4 {
		t.Errorf("err %v after %d tries, want success on the 4th", err, tries)
	}
	other := errors.New("boom")
	if err := retryConcurrentRefresh(context.Background(), func() error { return other }); err != other {
		t.Errorf("other error: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := retryConcurrentRefresh(ctx, func() error { return busy }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("endless concurrent refresh: %v, want the context's end", err)
	}
}

// tsJobs returns the TimescaleDB jobs of the test schema by "relation
// proc_name" (an empty map on plain PostgreSQL).
func tsJobs(t *testing.T, c *pgx.Conn, l Layout) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if !l.Timescale {
		return out
	}
	rows, err := c.Query(context.Background(), `
		SELECT coalesce(ca.view_name, j.hypertable_name) || ' ' || j.proc_name, j.job_id
		FROM timescaledb_information.jobs j
		LEFT JOIN timescaledb_information.continuous_aggregates ca
		  ON ca.materialization_hypertable_schema = j.hypertable_schema AND ca.materialization_hypertable_name = j.hypertable_name
		WHERE coalesce(ca.view_schema, j.hypertable_schema) = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var id int64
		if err := rows.Scan(&k, &id); err != nil {
			t.Fatal(err)
		}
		out[k] = id
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIntegrationPoliciesFollowFlags migrates again and again: with the
// same flags nothing changes (job ids stay); another --refresh-interval
// reschedules the refresh jobs in place; another retention replaces the
// retention jobs and moves the refresh windows; and no migration is
// reported as edited. On plain PostgreSQL there are no jobs and nothing to
// reconcile (run it with DROVER_TEST_DATABASE_URL on TimescaleDB for the
// rest).
func TestIntegrationPoliciesFollowFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	c := connect(t, url)
	ctx := context.Background()
	var logs strings.Builder
	log := logTo(&logs)
	migrate := func(l Layout) MigrateResult {
		t.Helper()
		res, err := Migrate(ctx, c, ModeAuto, l, log)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	layout.CompressAfterDays = 7
	before := tsJobs(t, c, layout)
	if res := migrate(layout); len(res.Policies) != 0 {
		t.Errorf("the same flags changed policies: %v", res.Policies)
	}
	if after := tsJobs(t, c, layout); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("job ids changed with the same flags: %v, then %v", before, after)
	}
	faster := layout
	faster.RefreshInterval = 10 * time.Second
	res := migrate(faster)
	after := tsJobs(t, c, layout)
	if layout.Timescale {
		if len(before) != 8 {
			t.Errorf("jobs %v, want retention and compression of 3 tables and 2 refresh policies", before)
		}
		if len(res.Policies) != 2 || !strings.HasPrefix(res.Policies[0], "rescheduled") {
			t.Errorf("another --refresh-interval: %v, want the 2 refresh jobs rescheduled", res.Policies)
		}
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("job ids changed by a reschedule: %v, then %v", before, after)
		}
		var every time.Duration
		if err := c.QueryRow(ctx, `SELECT extract(epoch FROM j.schedule_interval)::bigint * 1000000000 FROM timescaledb_information.jobs j
			JOIN timescaledb_information.continuous_aggregates ca ON ca.materialization_hypertable_name = j.hypertable_name
			WHERE ca.view_schema = current_schema() AND ca.view_name = 'sensor_readings_hourly'`).Scan(&every); err != nil {
			t.Fatal(err)
		}
		if every != 10*time.Second {
			t.Errorf("hourly refresh every %v, want 10s", every)
		}
		shorter := faster
		shorter.RetentionDays = 30
		res = migrate(shorter)
		if len(res.Policies) != 5 {
			t.Errorf("another retention: %v, want 3 retention jobs and 2 refresh windows replaced", res.Policies)
		}
		if res = migrate(shorter); len(res.Policies) != 0 {
			t.Errorf("again: %v", res.Policies)
		}
	} else if len(res.Policies) != 0 || len(after) != 0 {
		t.Errorf("plain PostgreSQL: policies %v, jobs %v", res.Policies, after)
	}
	if strings.Contains(logs.String(), "differs from the embedded one") {
		t.Errorf("a migration was reported as edited:\n%s", logs.String())
	}
}

// TestIntegrationLateDataReachesRollups writes readings older than the
// refresh windows of old (3 days hourly, 7 days daily) after the rollups
// were brought up to date: the periodic refresh alone (the sink's on plain
// PostgreSQL, the refresh policies' jobs on TimescaleDB) merges them, no
// `drover sink rollups` needed.
func TestIntegrationLateDataReachesRollups(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Hour)
	reading := func(id string, ts time.Time, v float64) schemas.SensorReading {
		return schemas.SensorReading{EventID: id, Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: ts, IngestedAt: ts, Value: v}
	}
	if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{
		reading("a", now.Add(-10*24*time.Hour), 38), reading("b", now.Add(-2*time.Hour), 39)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, c)
	// Late: 10 days and 5 days old, the first into a materialized bucket.
	if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{
		reading("late-1", now.Add(-10*24*time.Hour+time.Minute), 40), reading("late-2", now.Add(-5*24*time.Hour), 41)}}); err != nil {
		t.Fatal(err)
	}
	periodicRefresh(t, c, layout)
	checkRollups(t, c)
	if n := count(t, c, "SELECT n FROM sensor_readings_daily WHERE bucket = $1", now.Add(-10*24*time.Hour).Truncate(24*time.Hour)); n != 2 {
		t.Errorf("the daily bucket of 10 days ago counts %d readings, want 2", n)
	}
}

// periodicRefresh runs what brings the rollups up to date every
// --refresh-interval without an operator: the sink's refresh, and on
// TimescaleDB the refresh policies' jobs.
func periodicRefresh(t *testing.T, c *pgx.Conn, l Layout) {
	t.Helper()
	ctx := context.Background()
	if _, err := refreshRollups(ctx, c, l, nil); err != nil {
		t.Fatal(err)
	}
	for key, id := range tsJobs(t, c, l) {
		if strings.HasSuffix(key, string(policyRefresh)) {
			if _, err := c.Exec(ctx, fmt.Sprintf("CALL %s.run_job(%d)", l.ext(), id)); err != nil {
				t.Fatalf("running the %s job: %v", key, err)
			}
		}
	}
}

// runRetention drops what retention drops now: the partitions (plain
// PostgreSQL) or the retention jobs (TimescaleDB).
func runRetention(t *testing.T, c *pgx.Conn, l Layout) {
	t.Helper()
	ctx := context.Background()
	if !l.Timescale {
		if _, err := Maintain(ctx, c, l, time.Now()); err != nil {
			t.Fatal(err)
		}
		return
	}
	for key, id := range tsJobs(t, c, l) {
		if strings.HasSuffix(key, string(policyRetention)) {
			if _, err := c.Exec(ctx, fmt.Sprintf("CALL %s.run_job(%d)", l.ext(), id)); err != nil {
				t.Fatalf("running the %s job: %v", key, err)
			}
		}
	}
}

// TestIntegrationRollupsOutliveRetention: once retention dropped a day's
// raw rows, its rollup rows stay through the periodic refresh,
// `drover sink rollups` and `--rebuild`, on both paths.
func TestIntegrationRollupsOutliveRetention(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	c := connect(t, url)
	ctx := context.Background()
	layout.RetentionDays, layout.CompressAfterDays = 10, 0
	if _, err := Migrate(ctx, c, ModeAuto, layout, testLog()); err != nil {
		t.Fatal(err)
	}
	w := testWriter(t, url, layout)
	old := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -8).Add(6 * time.Hour)
	recent := time.Now().UTC().Add(-3 * time.Hour)
	var b Batch
	for i, ts := range []time.Time{old, old.Add(time.Minute), old.Add(time.Hour), recent} {
		b.Readings = append(b.Readings, schemas.SensorReading{EventID: fmt.Sprint("r", i), Tenant: "farm", DeviceID: "cow-1",
			Metric: "temperature", TS: ts, IngestedAt: ts, Value: 38 + float64(i)})
		b.Fixes = append(b.Fixes, schemas.GPSFix{EventID: fmt.Sprint("g", i), Tenant: "farm", DeviceID: "cow-1",
			TS: ts, IngestedAt: ts, Lat: 47 + float64(i)/1000, Lon: 8})
	}
	if _, err := w.Write(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, c)
	snapshot := func() string {
		var s strings.Builder
		for _, q := range []string{
			"SELECT bucket, n, sum FROM sensor_readings_hourly WHERE bucket < $1 ORDER BY bucket",
			"SELECT bucket, n, sum FROM sensor_readings_daily WHERE bucket < $1 ORDER BY bucket",
			"SELECT day, fixes, round(distance_m) FROM gps_distance_daily WHERE day < $1 ORDER BY day",
		} {
			rows, err := c.Query(ctx, q, old.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) { v, err := r.Values(); return fmt.Sprint(v), err })
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(&s, vals)
		}
		return s.String()
	}
	want := snapshot()
	if !strings.Contains(want, " 3 ") && !strings.Contains(want, " 2 ") {
		t.Fatalf("the old day is not in the rollups:\n%s", want)
	}
	// Retention shrinks to 5 days: the old day's raw rows go.
	layout.RetentionDays = 5
	if _, err := Migrate(ctx, c, ModeAuto, layout, testLog()); err != nil {
		t.Fatal(err)
	}
	runRetention(t, c, layout)
	if n := count(t, c, "SELECT count(*) FROM sensor_readings WHERE ts < $1", old.Add(24*time.Hour)); n != 0 {
		t.Fatalf("retention left %d raw readings of the old day", n)
	}
	periodicRefresh(t, c, layout)
	if got := snapshot(); got != want {
		t.Errorf("after retention and the periodic refresh the old day's rollups are\n%s\nwant\n%s", got, want)
	}
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(); got != want {
		t.Errorf("after `drover sink rollups` the old day's rollups are\n%s\nwant\n%s", got, want)
	}
	if _, err := RebuildRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(); got != want {
		t.Errorf("after --rebuild the old day's rollups are\n%s\nwant\n%s", got, want)
	}
	// The recent reading is still rolled up exactly once.
	if n := count(t, c, "SELECT coalesce(sum(n), 0) FROM sensor_readings_hourly WHERE bucket >= $1", old.Add(24*time.Hour)); n != 1 {
		t.Errorf("after --rebuild the retained days count %d readings, want 1", n)
	}
}

// TestIntegrationConcurrentRefreshes runs `drover sink rollups`-style
// refreshes from several connections at once while a writer writes: none
// fails (on TimescaleDB they meet each other's refresh of the continuous
// aggregates and wait), and the rollups end exact.
func TestIntegrationConcurrentRefreshes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ts := at(i%48, i%60)
			if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{{EventID: fmt.Sprint("w", i), Tenant: "farm", DeviceID: "cow-1",
				Metric: "temperature", TS: ts, IngestedAt: ts, Value: float64(i)}}}); err != nil {
				errs <- err
				return
			}
		}
	}()
	var refreshers sync.WaitGroup
	for r := range 4 {
		refreshers.Add(1)
		go func() {
			defer refreshers.Done()
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			for i := range 5 {
				if _, err := RefreshRollups(ctx, c, layout); err != nil {
					errs <- fmt.Errorf("refresher %d, refresh %d: %w", r, i, err)
				}
			}
		}()
	}
	refreshers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c := connect(t, url)
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, c)
}

// logTo returns a logger writing text to b (safe for one goroutine).
func logTo(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
