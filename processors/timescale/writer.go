package timescale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// DeadLetter is one row of dead_letters: a dead letter read from dlq.events,
// or a record the sink itself could not write (then the Kafka fields name
// it).
type DeadLetter struct {
	schemas.DeadLetter
	KafkaTopic     string // "" when not from the sink
	KafkaPartition int32
	KafkaOffset    int64
}

// Batch is the rows of one transaction. The zero value is an empty batch.
type Batch struct {
	Readings    []schemas.SensorReading
	Fixes       []schemas.GPSFix
	Media       []schemas.MediaObject
	Features    []schemas.Feature
	Alerts      []schemas.Alert
	States      []schemas.DeviceState
	DeadLetters []DeadLetter
	Apps        []AppRecord
	// Commands are commands.status records, folded into the commands
	// table in order (see commandMerge).
	Commands []schemas.CommandStatus
	// StateDeletes lists devices whose state.latest record is a tombstone
	// (the device was removed): their device_state rows are deleted before
	// States, which hold only states that came after the tombstone.
	StateDeletes []string
	// Devices are devices.registry entries (the devices table).
	Devices []Device
	// DeviceDeletes lists the TENANT/DEVICE keys of devices.registry
	// tombstones: their devices rows are deleted before Devices, which
	// hold only entries that came after the tombstone.
	DeviceDeletes []string

	// src holds the Kafka record each row of Readings, Fixes, Media,
	// Features and Alerts was decoded from (shorter, or empty, for rows
	// given directly), for the dead letter of a conflicting row.
	src struct{ readings, fixes, media, features, alerts []*kgo.Record }
}

// deleteState records a state.latest tombstone for key: the states of
// the device met earlier in the batch are dropped, and its device_state row
// is deleted. key is TENANT/DEVICE (identity.Key); a bare device id (a
// record written before keys were tenant-qualified) removes the device in
// every tenant.
func (b *Batch) deleteState(key string) {
	b.States = slices.DeleteFunc(b.States, func(s schemas.DeviceState) bool {
		return s.DeviceID == key || identity.Key(s.Tenant, s.DeviceID) == key
	})
	b.StateDeletes = append(b.StateDeletes, key)
}

// Len returns the number of rows in b.
func (b *Batch) Len() int {
	return len(b.Readings) + len(b.Fixes) + len(b.Media) + len(b.Features) + len(b.Alerts) + len(b.States) + len(b.DeadLetters) + len(b.Apps) + len(b.StateDeletes) +
		len(b.Devices) + len(b.DeviceDeletes) + len(b.Commands)
}

// Reset empties b, keeping its capacity.
func (b *Batch) Reset() {
	clear(b.Readings)
	clear(b.Fixes)
	clear(b.Media)
	clear(b.Features)
	clear(b.Alerts)
	clear(b.States)
	clear(b.DeadLetters)
	clear(b.Apps)
	clear(b.Devices)
	clear(b.Commands)
	src := b.src
	*b = Batch{
		Readings: b.Readings[:0], Fixes: b.Fixes[:0], Media: b.Media[:0], Features: b.Features[:0],
		Alerts: b.Alerts[:0], States: b.States[:0], DeadLetters: b.DeadLetters[:0], Apps: b.Apps[:0], StateDeletes: b.StateDeletes[:0],
		Devices: b.Devices[:0], DeviceDeletes: b.DeviceDeletes[:0], Commands: b.Commands[:0],
	}
	for _, s := range []*[]*kgo.Record{&src.readings, &src.fixes, &src.media, &src.features, &src.alerts} {
		clear(*s)
		*s = (*s)[:0]
	}
	b.src = src
}

// Counts are numbers of rows or records per table.
type Counts map[string]int64

// Total returns the sum over all tables.
func (c Counts) Total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// Result says what a Write did, per table.
type Result struct {
	// Written counts the rows inserted or updated.
	Written Counts
	// Skipped counts the records whose natural key was already stored, or
	// met earlier in the batch, by the same record (a redelivery or a
	// replay) or by a newer version: nothing to write.
	Skipped Counts
	// Conflicts counts the records whose natural key was already held by
	// different content: stored as dead letters instead (see conflict.go).
	Conflicts Counts
	// DeadLettered lists the Kafka records of those conflicts.
	DeadLettered []*kgo.Record
}

// payloadExcerptMax bounds the payload bytes kept in dead_letters.
const payloadExcerptMax = 4096

// Writer writes batches into the database over one connection, one
// transaction per batch. Nothing is kept on the server between batches: a
// batch that needs a staging table creates it inside its transaction (ON
// COMMIT DROP), and statements are not prepared on the server (see
// ParseURL), so the writer is correct behind PgBouncer in transaction
// pooling mode, where consecutive transactions may run on different server
// connections. A broken connection is replaced on the next call. A Writer
// is safe for concurrent use; writes are serialised.
type Writer struct {
	cfg    *pgx.ConnConfig
	layout Layout

	mu    sync.Mutex
	conn  *pgx.Conn
	parts map[string]bool // partitions known to exist (plain PostgreSQL path)
	// stagedFor counts, per table, the batches still to go through staging
	// after a direct COPY met a duplicate (see Write).
	stagedFor map[string]int
	// Paths counts the batches of insert-only tables by how they were
	// written: "direct" (COPY into the table) or "staged" (COPY into the
	// staging table, then INSERT ... ON CONFLICT DO NOTHING).
	Paths struct{ Direct, Staged atomic.Int64 }
	// now stamps the dead letters of conflicts; default time.Now.
	now func() time.Time
}

// stagedAfterConflict is how many batches of a table go straight to the
// staging path after a direct COPY met an existing key (typically a replay
// after a crash), before the direct COPY is tried again.
const stagedAfterConflict = 16

// NewWriter returns a Writer connecting with cfg (see ParseURL).
// layout.Timescale must match the migrated schema (Migrate reports it); the
// schema must be migrated before the first Write.
func NewWriter(cfg *pgx.ConnConfig, layout Layout) *Writer {
	return &Writer{cfg: cfg, layout: layout, parts: map[string]bool{}, stagedFor: map[string]int{}, now: time.Now}
}

// ParseURL parses a database URL, naming the flag in the error.
func ParseURL(url string) (*pgx.ConnConfig, error) {
	if strings.TrimSpace(url) == "" {
		return nil, errors.New("--database-url: empty (e.g. postgres://drover@127.0.0.1:5432/drover)")
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "drover-sink" // visible in pg_stat_activity
	}
	// No named prepared statements: pgx's default caches one per statement
	// on the server connection, which PgBouncer in transaction pooling mode
	// swaps between transactions ("prepared statement ... does not exist").
	// Caching only the statement's description (parameter and result
	// types) on the client keeps one round trip per statement, with the
	// unnamed statement, which lives within one protocol sync and so on one
	// server connection. A ?default_query_exec_mode= in the URL wins.
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	return cfg, nil
}

// connLocked returns the open connection, connecting when there is none.
// w.mu must be held.
func (w *Writer) connLocked(ctx context.Context) (*pgx.Conn, error) {
	if w.conn != nil && !w.conn.IsClosed() {
		return w.conn, nil
	}
	w.conn = nil
	c, err := pgx.ConnectConfig(ctx, w.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	w.conn = c
	return c, nil
}

// Ping checks that the database answers on the writer's connection.
func (w *Writer) Ping(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := w.connLocked(ctx)
	if err != nil {
		return err
	}
	if err := c.Ping(ctx); err != nil {
		w.dropLocked()
		return fmt.Errorf("database ping: %w", err)
	}
	return nil
}

// Close closes the connection.
func (w *Writer) Close(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		_ = w.conn.Close(ctx)
		w.conn = nil
	}
}

func (w *Writer) dropLocked() {
	if w.conn != nil {
		_ = w.conn.Close(context.Background())
		w.conn = nil
	}
}

// table describes how one table is copied and merged.
type table struct {
	name  string
	cols  []string
	merge string // SQL tail after "INSERT INTO t (cols) SELECT cols FROM stage_t"
}

var (
	readingCols = []string{"ts", "tenant", "device_id", "metric", "value", "unit", "ingested_at", "source", "event_id", "replayed", "attrs"}
	fixCols     = []string{"ts", "tenant", "device_id", "lat", "lon", "alt", "hdop", "speed", "satellites", "ingested_at", "source", "event_id", "replayed", "attrs"}
	mediaCols   = []string{"bucket", "key", "ts", "tenant", "device_id", "kind", "size", "content_type", "sha256", "etag", "replayed", "event_id", "ingested_at", "attrs"}
	featureCols = []string{"ts", "feature_id", "tenant", "device_id", "metric", "window_start", "window_end", "window_size_ms", "count",
		"min", "max", "mean", "stddev", "first", "last", "distance_m", "mean_speed_mps", "max_speed_mps", "moving_s", "stationary_s", "late_updates", "ingested_at"}
	alertCols = []string{"alert_id", "rule", "kind", "tenant", "device_id", "state", "severity", "value", "threshold", "message", "fired_at", "resolved_at", "ts", "ingested_at"}
	stateCols = []string{"tenant", "device_id", "ts", "ingested_at", "online", "last_seen", "lat", "lon", "position_ts", "battery", "firmware", "metrics", "active_alerts", "updated_at"}
	appCols   = []string{"event_id", "ts", "tenant", "source_tenant", "app", "device_id", "source_topic", "source_event_ids", "agreement",
		"payload", "ingested_at", "kafka_topic"}
	dlCols = []string{"id", "stage", "reason", "message", "source", "tenant", "device_id", "payload_excerpt", "payload_size", "truncated",
		"content_type", "headers", "received_at", "ts", "ingested_at", "kafka_topic", "kafka_partition", "kafka_offset"}
)

const alertMerge = ` ON CONFLICT (alert_id) DO UPDATE SET
	state = excluded.state, severity = excluded.severity, value = excluded.value, threshold = excluded.threshold,
	message = excluded.message, fired_at = least(t.fired_at, excluded.fired_at),
	resolved_at = coalesce(excluded.resolved_at, t.resolved_at), ts = excluded.ts,
	ingested_at = excluded.ingested_at, written_at = now()
WHERE excluded.ts > t.ts OR (excluded.ts = t.ts AND excluded.state = 'resolved' AND t.state <> 'resolved')`

// featureMerge keeps the latest version of a window: the features group
// re-emits a window (same feature_id and ts, late_updates one higher) when a
// late record within the allowed lateness updates it, and a replay
// re-delivers versions already stored, which change nothing.
const featureMerge = ` ON CONFLICT (feature_id, ts) DO UPDATE SET
	count = excluded.count, min = excluded.min, max = excluded.max, mean = excluded.mean, stddev = excluded.stddev,
	first = excluded.first, last = excluded.last, distance_m = excluded.distance_m, mean_speed_mps = excluded.mean_speed_mps,
	max_speed_mps = excluded.max_speed_mps, moving_s = excluded.moving_s, stationary_s = excluded.stationary_s,
	late_updates = excluded.late_updates, ingested_at = excluded.ingested_at, written_at = now()
	WHERE excluded.late_updates > t.late_updates`

const stateMerge = ` ON CONFLICT (tenant, device_id) DO UPDATE SET
	ts = excluded.ts, ingested_at = excluded.ingested_at, online = excluded.online, last_seen = excluded.last_seen,
	lat = excluded.lat, lon = excluded.lon, position_ts = excluded.position_ts, battery = excluded.battery,
	firmware = excluded.firmware, metrics = excluded.metrics, active_alerts = excluded.active_alerts,
	updated_at = excluded.updated_at, written_at = now()
WHERE (excluded.ts, excluded.updated_at) > (t.ts, t.updated_at)
   OR (excluded.ts, excluded.updated_at) = (t.ts, t.updated_at)
  AND (excluded.online, excluded.last_seen, excluded.lat, excluded.lon, excluded.position_ts, excluded.battery,
       excluded.firmware, excluded.metrics, excluded.active_alerts)
      IS DISTINCT FROM (t.online, t.last_seen, t.lat, t.lon, t.position_ts, t.battery, t.firmware, t.metrics, t.active_alerts)`

func mergeSQL(name string, cols []string, tail string) string {
	c := strings.Join(cols, ", ")
	return fmt.Sprintf("INSERT INTO %s AS t (%s) SELECT %s FROM stage_%s%s", name, c, c, name, tail)
}

// Write writes b in one transaction and returns what it did per table. On
// error nothing of b is written. Errors from the database are returned as
// they are (wrapped): see IsDataError for the ones retrying cannot fix.
// Records that meet their natural key are skipped or become dead letters
// (see conflict.go), in the same transaction.
func (w *Writer) Write(ctx context.Context, b *Batch) (Result, error) {
	res := Result{Written: Counts{}, Skipped: Counts{}, Conflicts: Counts{}}
	if b.Len() == 0 {
		return res, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	conn, err := w.connLocked(ctx)
	if err != nil {
		return res, err
	}
	if !w.layout.Timescale {
		if err := w.ensurePartitions(ctx, conn, b); err != nil {
			w.dropIfBroken()
			return res, err
		}
	}
	parts := []writable{
		&part[schemas.SensorReading, readingKey]{def: &readingTable, rows: b.Readings, src: b.src.readings},
		&part[schemas.GPSFix, fixKey]{def: &fixTable, rows: b.Fixes, src: b.src.fixes},
		&part[schemas.MediaObject, mediaKey]{def: &mediaTable, rows: b.Media, src: b.src.media},
		&part[schemas.Feature, featureKey]{def: &featureTable, rows: b.Features, src: b.src.features},
		&part[schemas.Alert, string]{def: &alertTable, rows: b.Alerts, src: b.src.alerts},
		&part[schemas.DeviceState, stateKey]{def: &stateTable, rows: b.States},
		&part[AppRecord, string]{def: &appTable, rows: b.Apps},
		&part[Device, deviceKey]{def: &deviceTable, rows: b.Devices},
	}
	for _, p := range parts {
		p.dedupe()
	}
	// Rows of the incrementally maintained rollups are stamped by the
	// statement that writes them (written_at); holding the rollup lock
	// until commit lets a refresh find a clock reading before which every
	// stamped row is committed (see refreshRollups). The lock rides on the
	// BEGIN: no extra round trip.
	var txOpts pgx.TxOptions
	if w.rollupSources(b) {
		txOpts.BeginQuery = "BEGIN; " + rollupWriterLock
	}
	// Tables that skip the direct COPY in this batch (see writePart).
	staged := map[string]bool{}
	for {
		var paths [2]int64 // batches written direct, staged
		res, err = w.writeTx(ctx, conn, txOpts, b, parts, staged, &paths)
		var dc *directConflict
		if errors.As(err, &dc) && !staged[dc.table] {
			// A direct COPY met a stored key: the transaction is rolled
			// back and written again with that table staged.
			staged[dc.table] = true
			w.stagedFor[dc.table] = stagedAfterConflict
			continue
		}
		if err != nil {
			if isNoPartition(err) {
				clear(w.parts)
			}
			w.dropIfBroken()
			return Result{}, err
		}
		w.Paths.Direct.Add(paths[0])
		w.Paths.Staged.Add(paths[1])
		return res, nil
	}
}

// writeTx is one attempt of Write: b's parts in one transaction.
func (w *Writer) writeTx(ctx context.Context, conn *pgx.Conn, txOpts pgx.TxOptions, b *Batch, parts []writable, staged map[string]bool, paths *[2]int64) (Result, error) {
	res := Result{Written: Counts{}, Skipped: Counts{}, Conflicts: Counts{}}
	err := pgx.BeginTxFunc(ctx, conn, txOpts, func(tx pgx.Tx) error {
		if len(b.StateDeletes) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM device_state WHERE device_id = ANY($1) OR tenant || '/' || device_id = ANY($1)", b.StateDeletes); err != nil {
				return fmt.Errorf("deleting the state of %d removed device(s): %w", len(b.StateDeletes), err)
			}
		}
		if len(b.DeviceDeletes) > 0 {
			tag, err := tx.Exec(ctx, deleteDevicesSQL, b.DeviceDeletes)
			if err != nil {
				return fmt.Errorf("deleting %d device(s) the registry forgot: %w", len(b.DeviceDeletes), err)
			}
			res.Written[TableDevices] += tag.RowsAffected()
		}
		letters := b.DeadLetters[:len(b.DeadLetters):len(b.DeadLetters)] // appending copies: b stays as it is
		for _, p := range parts {
			if err := w.writePart(ctx, tx, p, staged, paths, &res); err != nil {
				return err
			}
			skipped, conflicts := p.result()
			name := p.spec().name
			res.Skipped[name] += int64(skipped)
			res.Conflicts[name] = int64(len(conflicts))
			dls, recs := p.letters(w.now())
			letters = append(letters, dls...)
			res.DeadLettered = append(res.DeadLettered, recs...)
		}
		if err := writeCommands(ctx, tx, b.Commands, &res); err != nil {
			return err
		}
		return w.writePart(ctx, tx, &part[DeadLetter, struct{}]{def: &deadLetterTable, rows: letters}, staged, paths, &res)
	})
	return res, err
}

// directConflict is the error of a direct COPY that met a stored key.
type directConflict struct {
	table string
	err   error
}

func (e *directConflict) Error() string {
	return fmt.Sprintf("copying into %s: a key is stored already: %v", e.table, e.err)
}

func (e *directConflict) Unwrap() error { return e.err }

// writePart writes one table's rows and counts the rows written (the part
// counts what it skipped and its conflicts). The fast path COPYs the rows
// dedupe kept straight into the table: when no key is stored, that is all
// there is to do. When one is, the COPY fails as a whole with
// unique_violation, which aborts the transaction: writePart returns a
// directConflict, and Write writes the batch again with the table staged
// (for this batch and stagedAfterConflict more). Rolling the whole
// transaction back costs a replay a little; a savepoint around every
// direct COPY cost every batch two round trips and a subtransaction.
//
// Staged, the rows go through the staging table: for a table with
// conflicts, every row is staged, the table judges the ones whose key it
// holds, resolve decides per key in batch order, and the rows that end up
// holding their key are merged; other tables merge the rows dedupe kept
// through their guarded upsert.
func (w *Writer) writePart(ctx context.Context, tx pgx.Tx, p writable, staged map[string]bool, paths *[2]int64, res *Result) error {
	s := p.spec()
	n := p.count()
	if n == 0 {
		return nil
	}
	if _, decided := staged[s.name]; !decided {
		// The first attempt of this batch with rows for the table: counts
		// down the batches it still goes staged after a conflict.
		staged[s.name] = w.stagedFor[s.name] > 0
		if staged[s.name] {
			w.stagedFor[s.name]--
		}
	}
	if s.direct {
		if !staged[s.name] {
			if err := p.copyKept(ctx, tx, s.name, s.cols); err != nil {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "23505" {
					return &directConflict{table: s.name, err: err}
				}
				return fmt.Errorf("copying %d rows into %s: %w", n, s.name, err)
			}
			res.Written[s.name] += int64(n)
			paths[0]++
			return nil
		}
		paths[1]++
	}
	all := s.verdicts != ""
	// The staging table lives for this transaction only (each table is
	// staged at most once per batch): behind a transaction-pooling PgBouncer
	// the next transaction may run on another server connection, where a
	// per-connection table would not exist. ord is the row's index in the
	// batch, to name the records a conflict query finds.
	if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE stage_%s (LIKE %s INCLUDING DEFAULTS, ord integer) ON COMMIT DROP", s.name, s.name)); err != nil {
		return fmt.Errorf("creating stage_%s: %w", s.name, err)
	}
	n, err := p.copyStaged(ctx, tx, "stage_"+s.name, s.cols, all)
	if err != nil {
		return fmt.Errorf("copying %d rows into stage_%s: %w", n, s.name, err)
	}
	q := mergeSQL(s.name, s.cols, s.tail)
	var args []any
	if all {
		stored, err := storedRows(ctx, tx, p)
		if err != nil {
			return err
		}
		write := p.resolve(stored)
		if n = len(write); n == 0 {
			return nil
		}
		q = mergeSQL(s.name, s.cols, " WHERE ord = ANY($1)"+s.tail)
		args = []any{write}
	}
	tag, err := tx.Exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("merging stage_%s into %s: %w", s.name, s.name, err)
	}
	res.Written[s.name] += tag.RowsAffected()
	// A row the merge did not write met a newer or equal row (another sink
	// wrote it meanwhile, or it was in the table: its guard said no).
	res.Skipped[s.name] += int64(n) - tag.RowsAffected()
	return nil
}

// rollupSources reports whether b writes rows an incrementally maintained
// rollup is computed from: fixes on both paths, readings on plain
// PostgreSQL (TimescaleDB keeps their rollups as continuous aggregates).
func (w *Writer) rollupSources(b *Batch) bool {
	return len(b.Fixes) > 0 || (len(b.Readings) > 0 && !w.layout.Timescale)
}

// doNothing is the merge tail of the insert-only tables.
const doNothing = " ON CONFLICT DO NOTHING"

// IsDataError reports whether err is the database rejecting the data itself
// (SQLSTATE classes 22 data exception and 23 integrity violation), which a
// retry of the same rows cannot fix. A missing partition is not one: the
// writer recreates it on the next attempt.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || isNoPartition(err) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")
}

func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "no partition")
}

// ensurePartitions creates the daily partitions the batch's rows fall in
// (plain PostgreSQL path), each in its own short transaction.
func (w *Writer) ensurePartitions(ctx context.Context, conn *pgx.Conn, b *Batch) error {
	type key struct {
		table string
		day   int64 // Unix day
	}
	days := map[key]bool{}
	add := func(table string, ts time.Time) {
		sec := ts.Unix()
		day := sec / 86400
		if sec < 0 && sec%86400 != 0 {
			day-- // floor, for times before 1970
		}
		days[key{table, day}] = true
	}
	for i := range b.Readings {
		add(TableSensorReadings, b.Readings[i].TS)
	}
	for i := range b.Fixes {
		add(TableGPSFixes, b.Fixes[i].TS)
	}
	for i := range b.Features {
		add(TableFeatures, b.Features[i].TS)
	}
	need := make(map[string]time.Time, len(days))
	for k := range days {
		day := time.Unix(k.day*86400, 0).UTC()
		need[partitionName(k.table, day)] = day
	}
	for name := range need {
		if w.parts[name] {
			delete(need, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(need)) {
		table := name[:strings.LastIndex(name, "_p")]
		// A lock wait that timed out (a migration queued for ACCESS
		// EXCLUSIVE behind an analyst's query holds every later lock
		// request until it gives way, as it does every ddlLockTimeout) is
		// tried again at once: the migration waits before its next try,
		// so the second attempt finds the queue clear. Twice more at most,
		// then the batch fails and the sink retries it.
		for attempt := 1; ; attempt++ {
			err := createPartition(ctx, conn, table, need[name])
			if err == nil {
				break
			}
			if !isCode(err, "55P03") || attempt == 3 {
				return err
			}
		}
		w.parts[name] = true
	}
	return nil
}

// forgetPartitions empties the cache of known partitions (after retention
// dropped some).
func (w *Writer) forgetPartitions() {
	w.mu.Lock()
	clear(w.parts)
	w.mu.Unlock()
}

// dropIfBroken closes the connection unless it is healthy and idle, so the
// next Write reconnects. w.mu must be held.
func (w *Writer) dropIfBroken() {
	if w.conn == nil {
		return
	}
	if w.conn.IsClosed() || w.conn.PgConn().TxStatus() != 'I' {
		w.dropLocked()
	}
}

func attrsValue(m map[string]string) any {
	if len(m) == 0 {
		return nil
	}
	return m
}

func readingRow(r *schemas.SensorReading) []any {
	return []any{r.TS, r.Tenant, r.DeviceID, r.Metric, r.Value, r.Unit, r.IngestedAt, r.Source, r.EventID, r.Replayed, attrsValue(r.Attrs)}
}

func fixRow(r *schemas.GPSFix) []any {
	return []any{r.TS, r.Tenant, r.DeviceID, r.Lat, r.Lon, r.Alt, r.HDOP, r.Speed, r.Satellites, r.IngestedAt, r.Source, r.EventID, r.Replayed, attrsValue(r.Attrs)}
}

func mediaRow(r *schemas.MediaObject) []any {
	return []any{r.Bucket, r.Key, r.TS, r.Tenant, r.DeviceID, r.Kind, r.Size, r.ContentType, r.SHA256, r.ETag, r.Replayed, r.EventID, r.IngestedAt, attrsValue(r.Attrs)}
}

func featureRow(r *schemas.Feature) []any {
	return []any{r.TS, r.FeatureID, r.Tenant, r.DeviceID, r.Metric, r.WindowStart, r.WindowEnd, r.WindowSizeMS, r.Count,
		r.Min, r.Max, r.Mean, r.Stddev, r.First, r.Last, r.DistanceM, r.MeanSpeedMPS, r.MaxSpeedMPS, r.MovingS, r.StationaryS, r.LateUpdates, r.IngestedAt}
}

func alertRow(r *schemas.Alert) []any {
	return []any{r.AlertID, r.Rule, r.Kind, r.Tenant, r.DeviceID, r.State, r.Severity, r.Value, r.Threshold, r.Message, r.FiredAt, r.ResolvedAt, r.TS, r.IngestedAt}
}

func stateRow(r *schemas.DeviceState) []any {
	metrics := r.Metrics
	if metrics == nil {
		metrics = map[string]float64{}
	}
	return []any{r.Tenant, r.DeviceID, r.TS, r.IngestedAt, r.Online, r.LastSeen, r.Lat, r.Lon, r.PositionTS, r.Battery, r.Firmware, metrics, r.ActiveAlerts, r.UpdatedAt}
}

func deadLetterRow(r *DeadLetter) []any {
	payload := r.Payload
	truncated := r.Truncated
	if len(payload) > payloadExcerptMax {
		payload, truncated = payload[:payloadExcerptMax], true
	}
	if payload == nil {
		payload = []byte{}
	}
	headers := r.Headers
	if headers == nil {
		headers = map[string]string{}
	}
	var topic any
	var part, off any
	if r.KafkaTopic != "" {
		topic, part, off = r.KafkaTopic, r.KafkaPartition, r.KafkaOffset
	}
	return []any{r.ID, r.Stage, r.Reason, r.Message, r.Source, r.Tenant, r.DeviceID, payload, r.PayloadSize, truncated,
		r.ContentType, headers, r.ReceivedAt, r.TS, r.IngestedAt, topic, part, off}
}

// AppRecord is one app_records row: a stream app's record and the topic
// it was read from.
type AppRecord struct {
	schemas.AppRecord
	KafkaTopic string
}

func appRow(r *AppRecord) []any {
	ids := r.SourceEventIDs
	if ids == nil {
		ids = []string{}
	}
	return []any{r.EventID, r.TS, r.Tenant, r.SourceTenant, r.App, r.DeviceID, r.SourceTopic, ids, r.Agreement,
		json.RawMessage(r.Payload), r.IngestedAt, r.KafkaTopic}
}
