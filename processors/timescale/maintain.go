package timescale

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// MaintainResult says what Maintain changed.
type MaintainResult struct {
	Created []string // partitions created
	Dropped []string // partitions dropped by retention
	// DeadLettersDeleted counts dead letters deleted by retention.
	DeadLettersDeleted int64
	// AppRecordsDeleted counts app_records rows deleted by retention.
	AppRecordsDeleted int64
}

// Maintain keeps the plain PostgreSQL path's partitions in shape at time
// now: it creates the daily partitions of today and the next
// layout.PartitionsAheadDays days, and drops partitions that end before
// now minus layout.RetentionDays (0 keeps everything). On the TimescaleDB
// path chunks and their retention are TimescaleDB's. On both paths it
// deletes dead letters received before the retention cutoff, and
// app_records rows older than theirs (layout.AppRecordsRetentionDays).
func Maintain(ctx context.Context, conn *pgx.Conn, layout Layout, now time.Time) (MaintainResult, error) {
	var res MaintainResult
	today := now.UTC().Truncate(24 * time.Hour)
	if layout.RetentionDays > 0 {
		// dead_letters is a plain table on both paths: delete by age.
		tag, err := conn.Exec(ctx, "DELETE FROM dead_letters WHERE received_at < $1", today.AddDate(0, 0, -layout.RetentionDays))
		if err != nil {
			return res, fmt.Errorf("deleting expired dead letters: %w", err)
		}
		res.DeadLettersDeleted = tag.RowsAffected()
	}
	if days := layout.appRecordsDays(); days > 0 {
		// app_records is a plain table on both paths (small, filtered
		// streams): delete by event time. A replay of older records
		// writes them again until the next maintenance.
		tag, err := conn.Exec(ctx, "DELETE FROM app_records WHERE ts < $1", today.AddDate(0, 0, -days))
		if err != nil {
			return res, fmt.Errorf("deleting expired app_records: %w", err)
		}
		res.AppRecordsDeleted = tag.RowsAffected()
	}
	if layout.Timescale {
		return res, nil
	}
	for _, t := range timeTables {
		for i := 0; i <= layout.PartitionsAheadDays; i++ {
			day := today.AddDate(0, 0, i)
			st, err := partitionStatus(ctx, conn, partitionName(t, day))
			if err != nil {
				return res, err
			}
			if st == partAttached {
				continue
			}
			if err := createPartition(ctx, conn, t, day); err != nil {
				return res, err
			}
			res.Created = append(res.Created, partitionName(t, day))
		}
	}
	if layout.RetentionDays <= 0 {
		return res, nil
	}
	cutoff := today.AddDate(0, 0, -layout.RetentionDays)
	for _, t := range timeTables {
		// Attached partitions, and leftovers of an earlier drop that gave
		// way to a reader (detached, or with the detach pending).
		// A pending detach comes first: a table has at most one, and none
		// of its other partitions can be detached until it is finalized.
		rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_class c
			LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = to_regclass($2)
			WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
			  AND starts_with(c.relname, $1) AND (NOT c.relispartition OR i.inhrelid IS NOT NULL)
			ORDER BY coalesce(i.inhdetachpending, false) DESC, c.relname`, t+"_p", t)
		if err != nil {
			return res, fmt.Errorf("listing partitions of %s: %w", t, err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return res, fmt.Errorf("listing partitions of %s: %w", t, err)
		}
		for _, name := range names {
			day, ok := parsePartitionDay(t, name)
			// A partition holds [day, day+1); drop it once all of it is older
			// than the cutoff (or finish dropping it: only retention detaches).
			if st, err := partitionStatus(ctx, conn, name); err != nil {
				return res, err
			} else if !ok || st == partAttached && day.AddDate(0, 0, 1).After(cutoff) {
				continue
			}
			if err := dropPartition(ctx, conn, t, name); err != nil {
				return res, err
			}
			res.Dropped = append(res.Dropped, name)
		}
	}
	return res, nil
}

// RefreshRollups brings the rollups up to date now: the incrementally
// maintained ones (see refreshRollups) and, on the TimescaleDB path, the
// continuous aggregates over the window their policies cover (meant for
// tests and operators; the running sink leaves continuous aggregates to
// their policies). The window stays clear of chunks retention dropped, so
// their buckets stay; a refresh policy running at the same moment is
// waited for. Analysts keep reading the rollups during a refresh.
func RefreshRollups(ctx context.Context, conn *pgx.Conn, layout Layout) (RefreshResult, error) {
	res, err := refreshRollups(ctx, conn, layout, nil)
	if err != nil || !layout.Timescale {
		return res, err
	}
	return res, refreshAggregates(ctx, conn, layout)
}

// RebuildRollups recomputes the incrementally maintained rollups from the
// raw rows retention keeps: it replaces their buckets from the retention
// cutoff on (all of them without retention) with a merge of every raw row
// there, in one transaction, and keeps the older buckets, whose raw rows
// retention has dropped or is about to drop. It is for operators after raw
// rows were changed or inserted by hand outside the sink's protocol (see
// refreshRollups); analysts see the old rollups until it commits. On
// TimescaleDB the continuous aggregates are refreshed as RefreshRollups
// does.
func RebuildRollups(ctx context.Context, conn *pgx.Conn, layout Layout) (RefreshResult, error) {
	floor := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if layout.RetentionDays > 0 {
		floor = pgtype.Timestamptz{Time: retentionCutoff(time.Now(), layout.RetentionDays), Valid: true}
	}
	res, err := refreshRollups(ctx, conn, layout, &floor)
	if err != nil {
		return res, fmt.Errorf("rollups: rebuilding: %w", err)
	}
	if layout.Timescale {
		return res, refreshAggregates(ctx, conn, layout)
	}
	return res, nil
}

// retentionCutoff is the start of the oldest day retention keeps at now:
// raw rows from it on are never dropped before the next UTC midnight
// (both paths drop whole days that end before it).
func retentionCutoff(now time.Time, days int) time.Time {
	return now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
}

// rollupResetLock keeps other refreshes out while RebuildRollups replaces
// the rollups: a refresh locks the watermark rows (ROW SHARE on the
// table), which EXCLUSIVE conflicts with; readers' ACCESS SHARE does not.
const rollupResetLock = "LOCK TABLE rollup_watermarks IN EXCLUSIVE MODE"

// RefreshResult says what one refresh did.
type RefreshResult struct {
	// Rows counts, per source table, the new rows merged into its rollups.
	Rows map[string]int64
	// Skipped is set when another sink was refreshing at the time.
	Skipped bool
}

// refreshRollups merges the rows written since the last refresh into the
// incrementally maintained rollups: gps_distance_daily on both paths, and
// sensor_readings_hourly and _daily on plain PostgreSQL. The cost follows
// the new rows, not the tables (the materialized views of migration 0003
// were rebuilt from every row at each refresh).
//
// Every source row carries written_at, the start of the statement that
// wrote it, and the writers hold the rollup lock (rollup_gate, ROW SHARE)
// from before that statement until commit. So once the refresh has held the lock exclusively
// and read the clock (cut), every row stamped before cut is committed, and
// every row committed later is stamped at cut or after. The refresh then
// merges, in one repeatable-read transaction, the rows stamped in
// [watermark, cut) and moves the watermark to cut: each row is merged
// exactly once, whatever crashes or replays (a replayed row is a duplicate
// the writer skips, so it is never written twice).
//
// With rebuild set, it first deletes the rollups' buckets from *rebuild
// on and merges every row with ts from *rebuild on (whenever written),
// waiting for a refresh in progress instead of skipping.
func refreshRollups(ctx context.Context, conn *pgx.Conn, layout Layout, rebuild *pgtype.Timestamptz) (RefreshResult, error) {
	res := RefreshResult{Rows: map[string]int64{}}
	var cut time.Time
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// A writer stuck in its transaction must not stall the others,
		// which queue behind this lock request: give up after a while and
		// try again at the next refresh.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, rollupRefreshLock); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&cut)
	})
	if err != nil {
		return res, fmt.Errorf("rollups: waiting for the writers: %w", err)
	}
	summarizeNewRanges(ctx, conn, layout)
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		floor := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
		if rebuild != nil {
			// Before the snapshot: the watermarks are then those the last
			// refresh committed.
			if _, err := tx.Exec(ctx, rollupResetLock); err != nil {
				return err
			}
			floor = *rebuild
			tables := []string{ViewGPSDistanceDaily + " WHERE day >= $1"}
			if !layout.Timescale {
				tables = append(tables, ViewReadingsHourly+" WHERE bucket >= $1", ViewReadingsDaily+" WHERE bucket >= $1")
			}
			for _, t := range tables {
				if _, err := tx.Exec(ctx, "DELETE FROM "+t, floor); err != nil {
					return fmt.Errorf("emptying %s: %w", t, err)
				}
			}
		}
		// One refresher at a time: the others find the watermark rows
		// locked (or, having read them before a concurrent refresh
		// committed, fail to serialise) and skip.
		if _, err := tx.Exec(ctx, "SELECT FROM rollup_watermarks FOR UPDATE NOWAIT"); err != nil {
			if isCode(err, "55P03", "40001") {
				res.Skipped = true
				return errSkipped
			}
			return err
		}
		// One core: the refresh must not starve the pipeline it serves. The
		// new rows are found through the written_at BRIN indexes and grouped
		// by hashing: the planner, misled by statistics that lag behind the
		// inserts, otherwise scans whole partitions and sorts by collated
		// text (5 times slower at 200k new rows). The penalty that steers it
		// would also trip JIT compilation, which costs seconds here.
		for _, set := range []string{"max_parallel_workers_per_gather = 0", "enable_seqscan = off", "enable_sort = off", "work_mem = '64MB'", "jit = off"} {
			if _, err := tx.Exec(ctx, "SET LOCAL "+set); err != nil {
				return err
			}
		}
		type source struct{ table, deltaSQL string }
		sources := []source{{TableGPSFixes, gpsDeltaSQL}}
		if !layout.Timescale {
			sources = append(sources, source{TableSensorReadings, readingsDeltaSQL})
		}
		for _, src := range sources {
			var from pgtype.Timestamptz
			if err := tx.QueryRow(ctx, "SELECT upto FROM rollup_watermarks WHERE source = $1 FOR UPDATE", src.table).Scan(&from); err != nil {
				return fmt.Errorf("reading the %s watermark: %w", src.table, err)
			}
			if rebuild != nil {
				from = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
			} else if from.InfinityModifier == pgtype.Finite && !from.Time.Before(cut) {
				continue // another sink got further
			}
			var n int64
			if err := tx.QueryRow(ctx, src.deltaSQL, from, cut, floor).Scan(&n); err != nil {
				return fmt.Errorf("merging new %s into the rollups: %w", src.table, err)
			}
			if _, err := tx.Exec(ctx, "UPDATE rollup_watermarks SET upto = $2 WHERE source = $1", src.table, cut); err != nil {
				return fmt.Errorf("moving the %s watermark: %w", src.table, err)
			}
			res.Rows[src.table] = n
		}
		return nil
	})
	if errors.Is(err, errSkipped) {
		return RefreshResult{Rows: map[string]int64{}, Skipped: true}, nil
	}
	if err != nil {
		return RefreshResult{Rows: map[string]int64{}}, err
	}
	return res, nil
}

// errSkipped ends a refresh transaction that found another refresher.
var errSkipped = errors.New("another refresh is running")

// summarizeNewRanges summarizes the block ranges filled since the last
// refresh in the written_at BRIN indexes of the plain PostgreSQL path's
// partitions, so the refresh reads only the pages written since. (With
// autosummarize on, autovacuum does it too, but up to a minute late and
// dropping requests when its queue is full; an unsummarized range is always
// read.) It needs to own the indexes; a sink that does not (migrated by
// another role) leaves it to autovacuum, at the price of reading more. On
// TimescaleDB (gps_fixes chunks only) it is left to autovacuum.
func summarizeNewRanges(ctx context.Context, conn *pgx.Conn, layout Layout) {
	if layout.Timescale {
		return
	}
	_, _ = conn.Exec(ctx, `SELECT brin_summarize_new_values(i.inhrelid) FROM pg_inherits i
		WHERE i.inhparent IN ('sensor_readings_written_brin'::regclass, 'gps_fixes_written_brin'::regclass)`)
}

// bucketOrigin aligns date_bin buckets to UTC midnight (as time_bucket).
const bucketOrigin = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

// readingsDeltaSQL merges the readings stamped in [$1, $2) with ts from $3
// on into the hourly and daily rollups ($1 may be -infinity: the first
// refresh builds them; $3 is -infinity but in a rebuild) and returns how
// many it merged. mean is a generated column (sum / n).
const readingsDeltaSQL = `
WITH d AS MATERIALIZED (
    SELECT date_bin(INTERVAL '1 hour', ts, ` + bucketOrigin + `) AS bucket, tenant, device_id, metric,
           count(*) AS n, sum(value) AS sum, min(value) AS min, max(value) AS max
    FROM sensor_readings
    WHERE written_at >= $1 AND written_at < $2 AND ts >= $3
    GROUP BY 1, 2, 3, 4
), hourly AS (
    INSERT INTO sensor_readings_hourly AS r (bucket, tenant, device_id, metric, n, sum, min, max)
    SELECT bucket, tenant, device_id, metric, n, sum, min, max FROM d
    ON CONFLICT (bucket, tenant, device_id, metric) DO UPDATE SET
        n = r.n + excluded.n, sum = r.sum + excluded.sum,
        min = least(r.min, excluded.min), max = greatest(r.max, excluded.max)
), daily AS (
    INSERT INTO sensor_readings_daily AS r (bucket, tenant, device_id, metric, n, sum, min, max)
    SELECT date_bin(INTERVAL '1 day', bucket, ` + bucketOrigin + `), tenant, device_id, metric,
           sum(n), sum(sum), min(min), max(max)
    FROM d GROUP BY 1, 2, 3, 4
    ON CONFLICT (bucket, tenant, device_id, metric) DO UPDATE SET
        n = r.n + excluded.n, sum = r.sum + excluded.sum,
        min = least(r.min, excluded.min), max = greatest(r.max, excluded.max)
)
SELECT coalesce(sum(n), 0)::bigint FROM d`

// gpsDeltaSQL merges the fixes stamped in [$1, $2) into gps_distance_daily
// and returns how many it merged. A day's distance is the sum of the
// great-circle segments between consecutive fixes of a device, counted on
// the day of the later fix. New fixes usually follow the old ones, but a
// late fix splits an old segment in two, so per device the delta is
// computed over the range between the last old fix before its first new
// fix and the first old fix after its last new one: the segments between
// consecutive fixes of that range (old and new) minus the segments between
// its consecutive old fixes, which the rollup holds. Fixes stamped at $2 or
// later are left out everywhere; they are new to the next refresh. In a
// rebuild ($3 finite) fixes before $3 count as old: their segments are in
// the buckets the rebuild keeps.
const gpsDeltaSQL = `
WITH n AS MATERIALIZED (
    SELECT tenant, device_id, min(ts) AS first_ts, max(ts) AS last_ts
    FROM gps_fixes
    WHERE written_at >= $1 AND written_at < $2 AND ts >= $3
    GROUP BY 1, 2
), b AS MATERIALIZED (
    SELECT n.tenant, n.device_id,
           coalesce((SELECT max(p.ts) FROM gps_fixes p WHERE p.tenant = n.tenant AND p.device_id = n.device_id
                     AND p.ts < n.first_ts AND (p.written_at < $1 OR p.ts < $3)), n.first_ts) AS from_ts,
           coalesce((SELECT min(p.ts) FROM gps_fixes p WHERE p.tenant = n.tenant AND p.device_id = n.device_id
                     AND p.ts > n.last_ts AND (p.written_at < $1 OR p.ts < $3)), n.last_ts) AS to_ts
    FROM n
), r AS MATERIALIZED (
    SELECT f.tenant, f.device_id, f.ts, f.lat, f.lon, f.written_at >= $1 AND f.ts >= $3 AS is_new
    FROM b JOIN gps_fixes f ON f.tenant = b.tenant AND f.device_id = b.device_id
        AND f.ts >= b.from_ts AND f.ts <= b.to_ts
    WHERE f.written_at < $2
), pairs AS (
    SELECT tenant, device_id, ts, is_new AS counted, 1 AS sign,
           lag(lat) OVER w AS prev_lat, lag(lon) OVER w AS prev_lon, lat, lon
    FROM r WINDOW w AS (PARTITION BY tenant, device_id ORDER BY ts)
    UNION ALL
    SELECT tenant, device_id, ts, false, -1,
           lag(lat) OVER w, lag(lon) OVER w, lat, lon
    FROM r WHERE NOT is_new WINDOW w AS (PARTITION BY tenant, device_id ORDER BY ts)
)
, delta AS (
    SELECT date_bin(INTERVAL '1 day', ts, ` + bucketOrigin + `) AS day, tenant, device_id,
           count(*) FILTER (WHERE counted) AS fixes,
           coalesce(sum(sign * CASE WHEN prev_lat IS NULL THEN 0 ELSE
               2 * 6371008.8 * asin(least(1, sqrt(
                   power(sin(radians(lat - prev_lat) / 2), 2) +
                   cos(radians(prev_lat)) * cos(radians(lat)) * power(sin(radians(lon - prev_lon) / 2), 2))))
           END), 0) AS distance_m
    FROM pairs GROUP BY 1, 2, 3
), merged AS (
    INSERT INTO gps_distance_daily AS g (day, tenant, device_id, fixes, distance_m)
    SELECT day, tenant, device_id, fixes, distance_m FROM delta WHERE fixes <> 0 OR distance_m <> 0
    ON CONFLICT (day, tenant, device_id) DO UPDATE SET
        fixes = g.fixes + excluded.fixes, distance_m = g.distance_m + excluded.distance_m
)
SELECT count(*) FROM r WHERE is_new`
