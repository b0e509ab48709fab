package timescale

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
)

// TimescaleDB's background jobs (retention, compression, continuous
// aggregate refresh) follow the sink's flags. Migrate reconciles them after
// the migrations: it reads timescaledb_information.jobs and changes a
// policy only when it differs from what the flags ask for, so a job keeps
// its id (and a running job is not deleted under it) across restarts.
//
// The refresh windows of the continuous aggregates and the retention of
// the raw tables never overlap: a refresh over a range whose raw chunks
// were dropped deletes the aggregate's rows there (TimescaleDB,
// "Data retention with continuous aggregates"). The windows reach back to
// one day short of the retention horizon (rollupWindowDays), so late
// readings of any age the raw tables still keep reach the rollups at the
// next refresh, and the buckets of dropped chunks stay.

// policyKind names a TimescaleDB policy procedure (the proc_name of its job).
type policyKind string

const (
	policyRetention   policyKind = "policy_retention"
	policyCompression policyKind = "policy_compression"
	policyRefresh     policyKind = "policy_refresh_continuous_aggregate"
)

// policy is one TimescaleDB policy the flags ask for. A zero after (or
// absent policy) means none.
type policy struct {
	kind     policyKind
	relation string // hypertable, or continuous aggregate for policyRefresh
	// after is drop_after or compress_after.
	after time.Duration
	// For policyRefresh: the window [now - start, now - end) (start 0 =
	// from the beginning) and the schedule.
	start, end, every time.Duration
}

// rollupWindowDays is how far back the refresh policies reach: one day
// short of the retention horizon (the retention job drops whole 1-day
// chunks older than it; a day of margin keeps a refresh that runs just
// before the retention job's next run clear of the chunk it will drop),
// or everything (0) without retention.
func (l Layout) rollupWindowDays() int {
	if l.RetentionDays <= 0 {
		return 0
	}
	return l.RetentionDays - 1
}

// minTimescaleRetentionDays is the shortest retention the TimescaleDB path
// accepts: the daily rollup's refresh window (retention - 1 days, ending a
// day ago) must hold two whole daily buckets.
const minTimescaleRetentionDays = 4

// desiredPolicies returns the policies layout asks for, on the TimescaleDB
// path (nil on plain PostgreSQL, where the sink's maintenance drops
// partitions and refreshes the rollup tables itself).
func desiredPolicies(l Layout) []policy {
	if !l.Timescale {
		return nil
	}
	var out []policy
	for _, t := range timeTables {
		out = append(out, policy{kind: policyRetention, relation: t, after: time.Duration(l.RetentionDays) * 24 * time.Hour})
		out = append(out, policy{kind: policyCompression, relation: t, after: time.Duration(l.CompressAfterDays) * 24 * time.Hour})
	}
	start := time.Duration(l.rollupWindowDays()) * 24 * time.Hour
	out = append(out,
		policy{kind: policyRefresh, relation: ViewReadingsHourly, start: start, end: time.Hour, every: l.RefreshInterval},
		policy{kind: policyRefresh, relation: ViewReadingsDaily, start: start, end: 24 * time.Hour, every: l.RefreshInterval})
	return out
}

// wanted reports whether the policy should exist at all.
func (p policy) wanted() bool { return p.kind == policyRefresh || p.after > 0 }

// addSQL returns the statement that adds p.
func (p policy) addSQL(l Layout) string {
	switch p.kind {
	case policyRetention:
		return fmt.Sprintf("SELECT %s.add_retention_policy('%s', drop_after => INTERVAL '%s')", l.ext(), p.relation, policyInterval(p.after))
	case policyCompression:
		return fmt.Sprintf("SELECT %s.add_compression_policy('%s', compress_after => INTERVAL '%s')", l.ext(), p.relation, policyInterval(p.after))
	default:
		start := "NULL::interval"
		if p.start > 0 {
			start = fmt.Sprintf("INTERVAL '%s'", policyInterval(p.start))
		}
		return fmt.Sprintf("SELECT %s.add_continuous_aggregate_policy('%s', start_offset => %s, end_offset => INTERVAL '%s', schedule_interval => INTERVAL '%s')",
			l.ext(), p.relation, start, policyInterval(p.end), policyInterval(p.every))
	}
}

// removeSQL returns the statement that removes p's policy if there is one.
func (p policy) removeSQL(l Layout) string {
	switch p.kind {
	case policyRetention:
		return fmt.Sprintf("SELECT %s.remove_retention_policy('%s', if_exists => true)", l.ext(), p.relation)
	case policyCompression:
		return fmt.Sprintf("SELECT %s.remove_compression_policy('%s', if_exists => true)", l.ext(), p.relation)
	default:
		return fmt.Sprintf("SELECT %s.remove_continuous_aggregate_policy('%s', if_exists => true)", l.ext(), p.relation)
	}
}

// PolicySQL returns the statements that add every policy layout asks for
// on a database that has none (for the golden DDL and for DBAs; Migrate
// reconciles instead, see reconcilePolicies).
func PolicySQL(l Layout) []string {
	var out []string
	for _, p := range desiredPolicies(l) {
		if p.wanted() {
			out = append(out, p.addSQL(l))
		}
	}
	return out
}

// jobQuery finds the job of a policy and says whether it matches: $1 the
// relation, $2 the proc_name, $3 after (retention, compression), $4 start
// (NULL: open), $5 end, $6 schedule; intervals as text. Hypertables are
// matched in the current schema; a continuous aggregate's job is on its
// materialization hypertable.
const jobQuery = `
SELECT j.job_id,
       CASE $2::text
           WHEN 'policy_retention' THEN (j.config->>'drop_after')::interval = $3::text::interval
           WHEN 'policy_compression' THEN (j.config->>'compress_after')::interval = $3::text::interval
           ELSE true END AS config_ok,
       CASE WHEN $2::text = 'policy_refresh_continuous_aggregate' THEN
           (j.config->>'start_offset')::interval IS NOT DISTINCT FROM $4::text::interval
           AND (j.config->>'end_offset')::interval = $5::text::interval
       ELSE true END AS window_ok,
       CASE WHEN $2::text = 'policy_refresh_continuous_aggregate' THEN j.schedule_interval = $6::text::interval
       ELSE true END AS schedule_ok
FROM timescaledb_information.jobs j
WHERE j.proc_name = $2::text AND (
    (j.hypertable_schema = current_schema() AND j.hypertable_name = $1::text)
    OR EXISTS (SELECT FROM timescaledb_information.continuous_aggregates c
               WHERE c.view_schema = current_schema() AND c.view_name = $1::text
                 AND c.materialization_hypertable_schema = j.hypertable_schema
                 AND c.materialization_hypertable_name = j.hypertable_name))
ORDER BY j.job_id`

// reconcilePolicies brings the TimescaleDB policies in line with layout,
// touching only those that differ: a missing one is added, an unwanted one
// removed, one with other settings replaced (a refresh policy whose
// schedule alone differs is altered in place, keeping its job id). It
// returns what it changed, as "verb relation (kind)".
func reconcilePolicies(ctx context.Context, conn *pgx.Conn, l Layout, log *slog.Logger) ([]string, error) {
	var changed []string
	for _, p := range desiredPolicies(l) {
		var start any
		if p.start > 0 {
			start = policyInterval(p.start)
		}
		rows, err := conn.Query(ctx, jobQuery, p.relation, string(p.kind), policyInterval(p.after), start, policyInterval(p.end), policyInterval(p.every))
		if err != nil {
			return changed, fmt.Errorf("reading the %s job of %s: %w", p.kind, p.relation, err)
		}
		type job struct {
			id                             int
			configOK, windowOK, scheduleOK bool
		}
		jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
			var j job
			err := r.Scan(&j.id, &j.configOK, &j.windowOK, &j.scheduleOK)
			return j, err
		})
		if err != nil {
			return changed, fmt.Errorf("reading the %s job of %s: %w", p.kind, p.relation, err)
		}
		var stmts []string
		verb := ""
		switch {
		case !p.wanted() && len(jobs) == 0:
		case !p.wanted():
			stmts, verb = []string{p.removeSQL(l)}, "removed"
		case len(jobs) == 0:
			stmts, verb = []string{p.addSQL(l)}, "added"
		case len(jobs) == 1 && jobs[0].configOK && jobs[0].windowOK && jobs[0].scheduleOK:
		case len(jobs) == 1 && jobs[0].configOK && jobs[0].windowOK:
			stmts, verb = []string{fmt.Sprintf("SELECT %s.alter_job(%d, schedule_interval => INTERVAL '%s')", l.ext(), jobs[0].id, policyInterval(p.every))}, "rescheduled"
		default:
			stmts, verb = []string{p.removeSQL(l), p.addSQL(l)}, "replaced"
		}
		if len(stmts) == 0 {
			continue
		}
		err = retryLocked(ctx, log, func() error {
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", ddlLockTimeout.Milliseconds())); err != nil {
					return err
				}
				for _, q := range stmts {
					if _, err := tx.Exec(ctx, q); err != nil {
						return fmt.Errorf("%s: %w", q, err)
					}
				}
				return nil
			})
		})
		if err != nil {
			return changed, fmt.Errorf("applying timescaledb policy: %w", err)
		}
		what := fmt.Sprintf("%s %s (%s)", verb, p.relation, p.kind)
		log.Info("timescaledb policy "+verb, "relation", p.relation, "policy", string(p.kind))
		changed = append(changed, what)
	}
	return changed, nil
}

// refreshAggregates refreshes the continuous aggregates over the window
// their policies cover (never over dropped chunks, see rollupWindowDays).
// A refresh that meets another one (a policy job, another sink's command:
// SQLSTATE 55P03, "could not refresh ... due to a concurrent refresh")
// waits and tries again, until ctx ends.
func refreshAggregates(ctx context.Context, conn *pgx.Conn, l Layout) error {
	from := "NULL"
	if d := l.rollupWindowDays(); d > 0 {
		from = fmt.Sprintf("now() - INTERVAL '%d days'", d)
	}
	for _, v := range []string{ViewReadingsHourly, ViewReadingsDaily} {
		// CALL takes no expression but a constant or parameter for the
		// window, so the start is computed first.
		var start any
		if from != "NULL" {
			var t time.Time
			if err := conn.QueryRow(ctx, "SELECT "+from).Scan(&t); err != nil {
				return fmt.Errorf("refreshing %s: %w", v, err)
			}
			start = t
		}
		q := fmt.Sprintf("CALL %s.refresh_continuous_aggregate('%s', $1::timestamptz, NULL)", l.ext(), v)
		if err := retryConcurrentRefresh(ctx, func() error {
			_, err := conn.Exec(ctx, q, start)
			return err
		}); err != nil {
			return fmt.Errorf("refreshing %s: %w", v, err)
		}
	}
	return nil
}

// retryConcurrentRefresh runs f until it does not fail with 55P03 (a
// concurrent refresh of the same aggregate holds its lock), pausing 50 ms
// growing to 2 s between tries, until ctx ends.
func retryConcurrentRefresh(ctx context.Context, f func() error) error {
	pause := 50 * time.Millisecond
	for {
		err := f()
		if !isCode(err, "55P03") {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// supersededChecksum reports whether sum, recorded for migration m, is the
// checksum of m as an earlier release rendered it, where only the
// rendering changed, not what the migration did to the schema:
//
//   - 0003 rendered --refresh-interval into its refresh policies (now the
//     default, legacyRefreshInterval; the policies follow the flag): any
//     whole number of seconds up to a day is tried.
//   - 0005 ordered features' compressed batches by ts alone (now
//     'ts DESC, feature_id'; migration 0008 changes the setting).
func supersededChecksum(m Migration, l Layout, sum string) bool {
	if !l.Timescale {
		return false
	}
	switch m.Version {
	case 3:
		// Render once with a marker where the interval goes, then hash
		// every candidate around it.
		d := l.data()
		d.RefreshInterval = "\x00interval\x00"
		src, err := migrationFS.ReadFile("migrations/0003_rollups.sql")
		if err != nil {
			return false
		}
		t, err := template.New("0003").Option("missingkey=error").Parse(string(src))
		if err != nil {
			return false
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return false
		}
		parts := strings.Split(b.String(), d.RefreshInterval)
		h0 := sha256.New()
		h0.Write([]byte(parts[0]))
		state, err := h0.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return false
		}
		for secs := 1; secs <= 24*3600; secs++ {
			h := sha256.New()
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
				return false
			}
			iv := []byte(strconv.Itoa(secs) + " seconds")
			for _, p := range parts[1:] {
				h.Write(iv)
				h.Write([]byte(p))
			}
			if hex.EncodeToString(h.Sum(nil)) == sum {
				return true
			}
		}
	case 5:
		old := strings.Replace(m.SQL, "timescaledb.compress_orderby = 'ts DESC, feature_id'", "timescaledb.compress_orderby = 'ts DESC'", 1)
		s := sha256.Sum256([]byte(old))
		return hex.EncodeToString(s[:]) == sum
	}
	return false
}

// policyInterval renders d as an interval literal body in the largest
// whole unit (days, hours, minutes, seconds).
func policyInterval(d time.Duration) string {
	switch {
	case d != 0 && d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + " days"
	case d != 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + " hours"
	case d != 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + " minutes"
	}
	return pgInterval(d)
}
