package timescale

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MaintainResult says what Maintain changed.
type MaintainResult struct {
	Created []string // partitions created
	Dropped []string // partitions dropped by retention
	// DeadLettersDeleted counts dead letters deleted by retention.
	DeadLettersDeleted int64
}

// Maintain keeps the plain PostgreSQL path's partitions in shape at time
// now: it creates the daily partitions of today and the next
// layout.PartitionsAheadDays days, and drops partitions that end before
// now minus layout.RetentionDays (0 keeps everything). On the TimescaleDB
// path chunks and their retention are TimescaleDB's. On both paths it
// deletes dead letters received before the retention cutoff.
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
	if layout.Timescale {
		return res, nil
	}
	for _, t := range timeTables {
		for i := 0; i <= layout.PartitionsAheadDays; i++ {
			day := today.AddDate(0, 0, i)
			var exists bool
			if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", partitionName(t, day)).Scan(&exists); err != nil {
				return res, fmt.Errorf("checking partition %s: %w", partitionName(t, day), err)
			}
			if exists {
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
		rows, err := conn.Query(ctx, `SELECT c.relname FROM pg_inherits i
			JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = to_regclass($1) ORDER BY c.relname`, t)
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
			// than the cutoff.
			if !ok || day.AddDate(0, 0, 1).After(cutoff) {
				continue
			}
			if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
				return res, fmt.Errorf("dropping expired partition %s: %w", name, err)
			}
			res.Dropped = append(res.Dropped, name)
		}
	}
	return res, nil
}

// RefreshViews refreshes the rollups now: every materialized view
// concurrently and, on the TimescaleDB path, the continuous aggregates over
// their whole range (meant for tests and operators; the running sink leaves
// continuous aggregates to their policies). Analysts keep reading the old
// contents during a refresh.
func RefreshViews(ctx context.Context, conn *pgx.Conn, layout Layout) error {
	return refreshViews(ctx, conn, layout, true)
}

func refreshViews(ctx context.Context, conn *pgx.Conn, layout Layout, caggs bool) error {
	for _, v := range Views {
		q := "REFRESH MATERIALIZED VIEW CONCURRENTLY " + v
		if layout.Timescale && v != ViewGPSDistanceDaily {
			if !caggs {
				continue
			}
			q = fmt.Sprintf("CALL %s.refresh_continuous_aggregate('%s', NULL, NULL)", layout.ext(), v)
		}
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("refreshing %s: %w", v, err)
		}
	}
	return nil
}
