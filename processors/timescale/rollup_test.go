package timescale

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
)

// fullReadingsSQL and fullGPSSQL compute the rollups from every row, as the
// materialized views of migration 0003 did: what the incremental refresh
// must agree with.
const fullReadingsSQL = `
SELECT date_bin(INTERVAL '%s', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, tenant, device_id, metric,
       count(*), avg(value), min(value), max(value), sum(value)
FROM sensor_readings GROUP BY 1, 2, 3, 4`

const fullGPSSQL = `
WITH steps AS (
    SELECT tenant, device_id, ts, lat, lon, lag(lat) OVER w AS prev_lat, lag(lon) OVER w AS prev_lon
    FROM gps_fixes WINDOW w AS (PARTITION BY tenant, device_id ORDER BY ts)
)
SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00'), tenant, device_id, count(*),
       coalesce(sum(CASE WHEN prev_lat IS NULL THEN 0 ELSE
           2 * 6371008.8 * asin(least(1, sqrt(
               power(sin(radians(lat - prev_lat) / 2), 2) +
               cos(radians(prev_lat)) * cos(radians(lat)) * power(sin(radians(lon - prev_lon) / 2), 2))))
       END), 0)
FROM steps GROUP BY 1, 2, 3`

// rollupRows reads q into key → numbers; the first keyCols columns are the
// key.
func rollupRows(t *testing.T, c *pgx.Conn, q string, keyCols int) map[string][]float64 {
	t.Helper()
	rows, err := c.Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	out := map[string][]float64{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		var key []string
		var nums []float64
		for i, v := range vals {
			if i < keyCols {
				if ts, ok := v.(time.Time); ok {
					v = ts.UTC().Format(time.RFC3339)
				}
				key = append(key, fmt.Sprint(v))
				continue
			}
			switch x := v.(type) {
			case int64:
				nums = append(nums, float64(x))
			case float64:
				nums = append(nums, x)
			default:
				t.Fatalf("column %d of %q: unexpected %T", i, q, v)
			}
		}
		out[strings.Join(key, " ")] = nums
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameRollup compares an incrementally maintained rollup with the full
// computation: counts, minima and maxima exactly, sums to 1e-9 relative
// (the incremental one adds in another order).
func sameRollup(t *testing.T, name string, got, want map[string][]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", name, len(got), len(want))
	}
	bad := 0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: row %s missing", name, k)
			bad++
		}
		for i := range w {
			if ok && math.Abs(g[i]-w[i]) > 1e-9*math.Max(1, math.Abs(w[i])) {
				t.Errorf("%s %s: column %d = %v, want %v", name, k, i, g[i], w[i])
				bad++
				break
			}
		}
		if bad > 10 {
			t.Fatal("too many differences")
		}
	}
}

func checkRollups(t *testing.T, c *pgx.Conn) {
	t.Helper()
	for _, r := range []struct{ table, interval string }{{ViewReadingsHourly, "1 hour"}, {ViewReadingsDaily, "1 day"}} {
		got := rollupRows(t, c, "SELECT bucket, tenant, device_id, metric, n, mean, min, max, sum FROM "+r.table, 4)
		sameRollup(t, r.table, got, rollupRows(t, c, fmt.Sprintf(fullReadingsSQL, r.interval), 4))
	}
	got := rollupRows(t, c, "SELECT day, tenant, device_id, fixes, distance_m FROM gps_distance_daily", 3)
	sameRollup(t, ViewGPSDistanceDaily, got, rollupRows(t, c, fullGPSSQL, 3))
}

// TestIntegrationRollupsIncremental writes random batches (late readings
// and fixes, replayed duplicates, several devices and days) and refreshes
// at random moments: the rollups must always equal the full computation
// over every row, which is what the materialized views held.
func TestIntegrationRollupsIncremental(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	var written []schemas.SensorReading
	var fixes []schemas.GPSFix
	devices := []string{"cow-1", "cow-2", "cow-3"}
	for round := range 40 {
		var b Batch
		for range 1 + rng.IntN(30) {
			dev := devices[rng.IntN(len(devices))]
			// Minutes over two days: later rounds mostly go forward, but any
			// reading may land in an old bucket (late).
			minute := rng.IntN(60 * 48)
			if rng.IntN(4) > 0 {
				minute = min(60*48-1, round*70+rng.IntN(90))
			}
			ts := day0.Add(time.Duration(minute) * time.Minute).Add(time.Duration(rng.IntN(60)) * time.Second)
			switch {
			case rng.IntN(5) == 0 && len(written) > 0: // a replay of an earlier reading
				b.Readings = append(b.Readings, written[rng.IntN(len(written))])
			case rng.IntN(3) == 0:
				f := schemas.GPSFix{EventID: fmt.Sprint("g", round, len(fixes)), Tenant: "farm", DeviceID: dev, TS: ts, IngestedAt: ts,
					Lat: 47 + rng.Float64()/100, Lon: 8 + rng.Float64()/100}
				b.Fixes = append(b.Fixes, f)
				fixes = append(fixes, f)
				if rng.IntN(5) == 0 {
					b.Fixes = append(b.Fixes, fixes[rng.IntN(len(fixes))]) // replayed fix
				}
			default:
				r := schemas.SensorReading{EventID: fmt.Sprint("r", round, len(written)), Tenant: "farm", DeviceID: dev, TS: ts, IngestedAt: ts,
					Metric: []string{"temperature", "battery"}[rng.IntN(2)], Value: math.Round(rng.Float64()*1000) / 10}
				b.Readings = append(b.Readings, r)
				written = append(written, r)
			}
		}
		if _, err := w.Write(ctx, &b); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if rng.IntN(3) == 0 {
			if _, err := RefreshRollups(ctx, c, layout); err != nil {
				t.Fatalf("round %d: refresh: %v", round, err)
			}
		}
	}
	res, err := RefreshRollups(ctx, c, layout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped {
		t.Fatal("refresh skipped with no other refresh running")
	}
	checkRollups(t, c)
	if n := count(t, c, "SELECT count(*) FROM sensor_readings_hourly"); n == 0 {
		t.Fatal("no hourly rows: the data set is empty")
	}
	// A refresh with nothing new changes nothing.
	res, err = RefreshRollups(ctx, c, layout)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows[TableSensorReadings] != 0 || res.Rows[TableGPSFixes] != 0 {
		t.Errorf("second refresh merged %v, want nothing", res.Rows)
	}
	checkRollups(t, c)
}

// TestIntegrationRollupsWaitForWriters holds a write transaction open (as
// a slow sink writer would) across a refresh: the refresh must wait for it
// rather than move its watermark past rows it cannot see yet, which would
// leave them out of the rollups for good.
func TestIntegrationRollupsWaitForWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	ctx := context.Background()
	w := testWriter(t, url, layout)
	if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{
		{EventID: "a", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Metric: "temperature", Value: 38}}}); err != nil {
		t.Fatal(err)
	}
	// A writer in the middle of its transaction, following the writers'
	// protocol: lock shared, then insert.
	slow := connect(t, url)
	tx, err := slow.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		rollupWriterLock,
		fmt.Sprintf(`INSERT INTO sensor_readings (ts, tenant, device_id, metric, value, ingested_at, event_id)
			VALUES ('%s', 'farm', 'cow-1', 'temperature', 40, now(), 'b')`, at(1, 30).Format(time.RFC3339)),
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, url)
	done := make(chan error, 1)
	go func() { _, err := RefreshRollups(ctx, c, layout); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("refresh returned (%v) while a writer held its transaction open", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check := connect(t, url)
	var n int64
	var mean float64
	if err := check.QueryRow(ctx, "SELECT n, mean FROM sensor_readings_hourly WHERE device_id = 'cow-1' AND bucket = $1", at(1, 0)).Scan(&n, &mean); err != nil {
		t.Fatal(err)
	}
	if n != 2 || mean != 39 {
		t.Errorf("hourly rollup n=%d mean=%v, want both readings (n=2 mean=39)", n, mean)
	}

	// A writer stuck longer than the lock timeout: the refresh gives up
	// with an error naming the wait, and the next one catches up.
	tx, err = slow.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, rollupWriterLock); err != nil {
		t.Fatal(err)
	}
	if _, err := RefreshRollups(ctx, c, layout); err == nil || !strings.Contains(err.Error(), "waiting for the writers") {
		t.Errorf("refresh with a stuck writer: err = %v, want a lock timeout", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Errorf("refresh after the writer left: %v", err)
	}

	// The sink's own writer follows the protocol: while a refresh holds the
	// lock exclusively, a batch with readings or fixes waits.
	refreshing, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refreshing.Exec(ctx, rollupRefreshLock); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(ctx, &Batch{Fixes: []schemas.GPSFix{{EventID: "g", Tenant: "farm", DeviceID: "cow-1", TS: at(2, 0), IngestedAt: at(2, 0), Lat: 47, Lon: 8}}})
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("the writer wrote (%v) while a refresh held the rollup lock", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := refreshing.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationRollupsOneRefresherAtATime runs a refresh while another
// refresh holds the watermark rows: it must skip, not merge a second time.
func TestIntegrationRollupsOneRefresherAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	ctx := context.Background()
	other := connect(t, url)
	refreshing, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refreshing.Exec(ctx, "SELECT FROM rollup_watermarks FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	c := connect(t, url)
	res, err := RefreshRollups(ctx, c, layout)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Skipped {
		t.Error("refresh ran while another held the refresh lock")
	}
	if err := refreshing.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := RefreshRollups(ctx, c, layout); err != nil || res.Skipped {
		t.Errorf("refresh after the lock was released: %+v, %v", res, err)
	}
}

// TestIntegrationRollupsCommand runs `drover sink rollups`: a refresh
// merges what the writer wrote; a raw row changed by hand is not merged
// again (the refresh only reads new rows) until --rebuild recomputes the
// rollups from every row.
func TestIntegrationRollupsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	ctx := context.Background()
	w := testWriter(t, url, layout)
	if _, err := w.Write(ctx, &Batch{
		Readings: []schemas.SensorReading{
			{EventID: "a", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Metric: "temperature", Value: 38},
			{EventID: "b", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 10), IngestedAt: at(1, 10), Metric: "temperature", Value: 39},
			{EventID: "c", Tenant: "farm", DeviceID: "cow-2", TS: at(2, 0), IngestedAt: at(2, 0), Metric: "temperature", Value: 40},
		},
		Fixes: []schemas.GPSFix{
			{EventID: "g1", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Lat: 47, Lon: 8},
			{EventID: "g2", Tenant: "farm", DeviceID: "cow-1", TS: at(2, 0), IngestedAt: at(2, 0), Lat: 47.001, Lon: 8},
		}}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := Command(&cli.Conn{Log: testLog()})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"rollups", "--database-url", url}, args...))
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("rollups %v: %v", args, err)
		}
		return out.String()
	}
	if got, want := run(), "rollups refreshed: 2 new gps fixes, 3 new readings merged\n"; got != want {
		t.Errorf("first run printed %q, want %q", got, want)
	}
	c := connect(t, url)
	checkRollups(t, c)
	if _, err := c.Exec(ctx, "UPDATE sensor_readings SET value = 41 WHERE event_id = 'c'"); err != nil {
		t.Fatal(err)
	}
	if got, want := run(), "rollups refreshed: 0 new gps fixes, 0 new readings merged\n"; got != want {
		t.Errorf("second run printed %q, want %q", got, want)
	}
	if layout.Timescale {
		// Continuous aggregates follow raw rows (the edit invalidated the
		// bucket); the refresh picked it up.
		if n := count(t, c, "SELECT count(*) FROM sensor_readings_hourly WHERE device_id = 'cow-2' AND max = 41"); n != 1 {
			t.Fatalf("the continuous aggregate does not follow the edited row (%d rows with max 41, want 1)", n)
		}
	} else if n := count(t, c, "SELECT count(*) FROM sensor_readings_hourly WHERE device_id = 'cow-2' AND max = 40"); n != 1 {
		t.Fatalf("a refresh merged the hand-edited row again (%d stale rows, want 1)", n)
	}
	if got, want := run("--rebuild"), "rollups rebuilt: 2 new gps fixes, 3 new readings merged\n"; got != want {
		t.Errorf("rebuild printed %q, want %q", got, want)
	}
	if n := count(t, c, "SELECT count(*) FROM sensor_readings_hourly WHERE device_id = 'cow-2' AND max = 41 AND n = 1"); n != 1 {
		t.Errorf("after --rebuild the rollup does not hold the edited value (%d rows with max 41, want 1)", n)
	}
	checkRollups(t, c)
}
