package timescale

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
)

// What happens when two records meet on a table's natural key (in the
// table, or earlier in the same batch). Every table decides it here, in
// one place (README, "Same key, different content"):
//
//   - sensor_readings, gps_fixes: the same event_id is a redelivery and
//     writes nothing, and so does the same measurement under another
//     event_id (a device re-sending it in a new message, or in another
//     form); another measurement is a conflict: the first stored row stays,
//     the later record becomes a dead letter (duplicate_timestamp).
//   - media_objects: live, replayed and device-sent records of one object
//     carry different event ids; the same object (owner, size, and sha256
//     and ETag where both sides know them) writes nothing, another one is a
//     conflict (duplicate_key).
//   - features: a higher late_updates is the newer version of the window
//     and replaces the row; a lower one is older and writes nothing; the
//     same one with other values is a conflict (duplicate_key).
//   - alerts: a later lifecycle event replaces the row; an older one
//     writes nothing; the same event time and state with other content is
//     a conflict (duplicate_key).
//   - device_state: the newest state by (ts, updated_at) wins, and at a
//     tie the later record (a change made within the same millisecond): it
//     is the latest state, so nothing is a conflict.
//   - dead_letters: one row per Kafka record (see migration 0007).
//
// Nothing meets a key without a row, a dead letter or a count
// (drover_sink_duplicates_total{table, outcome}).

// Dead-letter reasons of a conflict.
const (
	ReasonDuplicateTS  = "duplicate_timestamp" // sensor_readings, gps_fixes
	ReasonDuplicateKey = "duplicate_key"       // media_objects, features, alerts
)

// verdict is what a later record does to an earlier one of the same key.
type verdict int

const (
	vSkip     verdict = iota // the same record again, or an older version: nothing to write
	vReplace                 // a newer version: it is written instead
	vConflict                // other content: a dead letter
)

// conflict is a record stored as a dead letter instead of a row: its index
// in its table's rows of the batch and what already held its key.
type conflict struct {
	i    int
	with string
}

// tableSpec is how one table is written.
type tableSpec struct {
	name string
	cols []string
	tail string // SQL after "INSERT INTO t (cols) SELECT cols FROM stage_t"
	// direct tries COPY straight into the table first (insert-only tables
	// and features; see writePart): when it succeeds no key was stored, and
	// the batch's own collisions are all there is to judge.
	direct bool
	// reason is the dead-letter reason of a conflict; "" when a collision
	// never is one.
	reason string
	// verdicts judges, for each staged row (ord) whose key the table holds,
	// the row against the stored one as judge does in Go ('skip',
	// 'replace' or 'conflict'), and describes the stored row. When timed,
	// $1 and $2 bound ts, so only the batch's partitions or chunks are
	// read. "" for tables without conflicts: their rows are merged by the
	// tail alone.
	verdicts string
	timed    bool
}

// keyed adds to a tableSpec what it takes to judge collisions of T rows.
type keyed[T any, K comparable] struct {
	tableSpec
	// seen recycles dedupe's maps (map[K]int): a batch of 5000 readings
	// would otherwise allocate half a megabyte.
	seen sync.Pool
	row  func(*T) []any
	// copy, when set, encodes a row for a binary COPY (copy.go), in cols
	// order; row is then used only by the tests.
	copy  func(*copyBuf, *T) error
	key   func(*T) K
	judge func(kept, later *T) verdict
	ts    func(*T) time.Time
	// about names a row for a dead letter's message: its owner, its key and
	// its identity.
	about func(*T) (tenant, device, key, self string)
}

// part is one table's rows of a batch, being written.
type part[T any, K comparable] struct {
	def       *keyed[T, K]
	rows      []T
	src       []*kgo.Record // origin of rows[i], when known
	keep      []int         // rows to write, by index; nil = all of them
	skipped   int
	conflicts []conflict
}

// writable is what Write needs of a part, whatever its row type.
type writable interface {
	spec() *tableSpec
	dedupe()
	count() int
	// copyKept copies the rows dedupe kept into table (cols); copyStaged
	// copies every row (all) or the kept ones, each with its index in the
	// batch as ord, into the staging table, and returns how many.
	copyKept(ctx context.Context, tx pgx.Tx, table string, cols []string) error
	copyStaged(ctx context.Context, tx pgx.Tx, table string, cols []string, all bool) (int, error)
	bounds() (lo, hi time.Time)
	resolve(stored map[int32]storedRow) []int32
	result() (skipped int, conflicts []conflict)
	letters(now time.Time) ([]DeadLetter, []*kgo.Record)
}

// storedRow is what the table holds under a staged row's key: the staged
// row's verdict against it, and a description of it.
type storedRow struct {
	v    verdict
	desc string
}

func (p *part[T, K]) spec() *tableSpec { return &p.def.tableSpec }

func (p *part[T, K]) count() int {
	if p.keep != nil {
		return len(p.keep)
	}
	return len(p.rows)
}

func (p *part[T, K]) index(j int) int {
	if p.keep != nil {
		return p.keep[j]
	}
	return j
}

func (p *part[T, K]) copyKept(ctx context.Context, tx pgx.Tx, table string, cols []string) error {
	return p.copyInto(ctx, tx, table, cols, p.count(), p.index, false)
}

func (p *part[T, K]) copyStaged(ctx context.Context, tx pgx.Tx, table string, cols []string, all bool) (int, error) {
	n, index := p.count(), p.index
	if all {
		n, index = len(p.rows), func(j int) int { return j }
	}
	return n, p.copyInto(ctx, tx, table, cols, n, index, true)
}

func (p *part[T, K]) bounds() (lo, hi time.Time) {
	for i := range p.rows {
		ts := p.def.ts(&p.rows[i])
		if i == 0 || ts.Before(lo) {
			lo = ts
		}
		if i == 0 || ts.After(hi) {
			hi = ts
		}
	}
	return lo, hi
}

func (p *part[T, K]) result() (int, []conflict) { return p.skipped, p.conflicts }

// dedupe keeps one row per natural key among the part's rows, where the
// first of them stood, judging every later one against the one kept. It
// allocates nothing beyond its map while every key is new. Its judgement is
// final when no key is stored yet (the direct COPY succeeded); else resolve
// decides.
func (p *part[T, K]) dedupe() {
	n := len(p.rows)
	if n < 2 || p.def.key == nil {
		return
	}
	seen, _ := p.def.seen.Get().(map[K]int) // key → position in keep
	if seen == nil {
		seen = make(map[K]int, n)
	}
	defer func() { clear(seen); p.def.seen.Put(seen) }()
	for i := range n {
		k := p.def.key(&p.rows[i])
		j, dup := seen[k]
		if !dup {
			if p.keep != nil {
				p.keep = append(p.keep, i)
				seen[k] = len(p.keep) - 1
			} else {
				seen[k] = i
			}
			continue
		}
		if p.keep == nil { // every row so far was kept: positions are indices
			p.keep = make([]int, i, n)
			for x := range p.keep {
				p.keep[x] = x
			}
		}
		kept := p.keep[j]
		if p.apply(p.def.judge(&p.rows[kept], &p.rows[i]), i, kept, "") {
			p.keep[j] = i
		}
	}
}

// apply records verdict v of row i against the row that held its key (the
// batch's row current, or the stored row described by stored when current
// is -1) and reports whether i now holds the key.
func (p *part[T, K]) apply(v verdict, i, current int, stored string) bool {
	switch v {
	case vReplace:
		if current >= 0 {
			p.skipped++ // an older version of the batch: superseded
		}
		return true
	case vConflict:
		with := "the stored row (" + stored + ")"
		if current >= 0 {
			_, _, _, self := p.def.about(&p.rows[current])
			with = "an earlier record of the same batch (" + self + ")"
		}
		p.conflicts = append(p.conflicts, conflict{i: i, with: with})
	default:
		p.skipped++
	}
	return false
}

// resolve judges every row of the part, in batch order, against what holds
// its key by then: the stored row (whose verdicts the table gave, in
// stored), or the batch's row that took the key. It returns the rows to
// write: per key, the one that holds it at the end, if it is not the
// stored one.
func (p *part[T, K]) resolve(stored map[int32]storedRow) []int32 {
	p.keep, p.skipped, p.conflicts = nil, 0, nil
	holder := make(map[K]int, len(p.rows)) // key → row index, or -1 for the stored row
	var order []K
	for i := range p.rows {
		k := p.def.key(&p.rows[i])
		cur, seen := holder[k]
		if !seen { // the first record of its key in the batch
			order = append(order, k)
			s, ok := stored[int32(i)]
			if !ok {
				holder[k] = i
				continue
			}
			holder[k] = -1
			if p.apply(s.v, i, -1, s.desc) {
				holder[k] = i
			}
			continue
		}
		var v verdict
		desc := ""
		if cur < 0 {
			s := stored[int32(i)]
			v, desc = s.v, s.desc
		} else {
			v = p.def.judge(&p.rows[cur], &p.rows[i])
		}
		if p.apply(v, i, cur, desc) {
			holder[k] = i
		}
	}
	var write []int32
	for _, k := range order {
		if i := holder[k]; i >= 0 {
			write = append(write, int32(i))
		}
	}
	return write
}

// letters returns the dead letters of the part's conflicts and the Kafka
// records they replace (nil where the row was given without one).
func (p *part[T, K]) letters(now time.Time) ([]DeadLetter, []*kgo.Record) {
	var out []DeadLetter
	var recs []*kgo.Record
	for _, c := range p.conflicts {
		r := &p.rows[c.i]
		tenant, device, key, self := p.def.about(r)
		msg := fmt.Sprintf("%s: %s is already held by %s; this record (%s) differs and was not stored", p.def.name, key, c.with, self)
		var rec *kgo.Record
		if c.i < len(p.src) {
			rec = p.src[c.i]
		}
		out = append(out, conflictLetter(rec, p.def.name, p.def.reason, msg, tenant, device, r, now))
		recs = append(recs, rec)
	}
	return out, recs
}

// storedRows runs the part's verdicts query over its staging table. It is
// an unnamed statement (QueryExecModeExec), planned with the bounds, so
// only the batch's partitions or chunks are locked and read. It probes the
// key index once per staged row, as INSERT ... ON CONFLICT does: the
// planner, which knows nothing of the staging table (never analyzed),
// otherwise hashes every row of the time range read through the ts BRIN
// index (a replay batch took 2-3 times as long).
func storedRows(ctx context.Context, tx pgx.Tx, p writable) (map[int32]storedRow, error) {
	s := p.spec()
	args := []any{pgx.QueryExecModeExec}
	if s.timed {
		lo, hi := p.bounds()
		args = append(args, lo, hi)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; SET LOCAL enable_bitmapscan = off"); err != nil {
		return nil, err
	}
	defer func() {
		_, _ = tx.Exec(context.WithoutCancel(ctx), "RESET enable_hashjoin; RESET enable_mergejoin; RESET enable_bitmapscan")
	}()
	rows, err := tx.Query(ctx, s.verdicts, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the stored rows of %s: %w", s.name, err)
	}
	out := map[int32]storedRow{}
	var ord int32
	var v, desc string
	_, err = pgx.ForEachRow(rows, []any{&ord, &v, &desc}, func() error {
		out[ord] = storedRow{v: map[string]verdict{"skip": vSkip, "replace": vReplace, "conflict": vConflict}[v], desc: desc}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the stored rows of %s: %w", s.name, err)
	}
	return out, nil
}

// conflictLetter is the dead letter of a conflicting record: built from its
// Kafka record when known (deterministic id sink:topic:partition:offset, so
// a replay writes it once), else from the row itself (id from its JSON).
func conflictLetter(rec *kgo.Record, table, reason, msg, tenant, device string, row any, now time.Time) DeadLetter {
	var dl DeadLetter
	if rec != nil {
		dl = recordLetter(rec, reason, msg, now)
	} else {
		payload, _ := json.Marshal(row)
		sum := sha256.Sum256(payload)
		ts := now.UTC().Truncate(time.Millisecond)
		dl = DeadLetter{DeadLetter: schemas.DeadLetter{
			ID: deadLetterIDPrefix + table + ":" + hex.EncodeToString(sum[:16]), Stage: StageSink, Reason: reason,
			Message: cleanText(msg), Source: table, Payload: payload, PayloadSize: int64(len(payload)),
			Headers: map[string]string{}, ReceivedAt: ts, TS: ts, IngestedAt: ts,
		}}
	}
	dl.Tenant, dl.DeviceID = &tenant, &device
	return dl
}

func tsText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Natural keys; timestamps in microseconds, the database's precision.
type (
	readingKey struct {
		tenant, device, metric string
		ts                     int64
	}
	fixKey struct {
		tenant, device string
		ts             int64
	}
	mediaKey   struct{ bucket, key string }
	featureKey struct {
		id string
		ts int64
	}
	stateKey struct{ tenant, device string }
)

func micros(t time.Time) int64 { return t.Round(time.Microsecond).UnixMicro() }

// sameOr: an event_id names one record of one MQTT message (the bridge
// derives it from the message's bytes), so the same id is a redelivery;
// another id with the same measurement loses nothing either.
func sameOr(sameID, sameValues bool) verdict {
	if sameID || sameValues {
		return vSkip
	}
	return vConflict
}

var readingTable = keyed[schemas.SensorReading, readingKey]{
	tableSpec: tableSpec{name: TableSensorReadings, cols: readingCols, tail: doNothing, direct: true, reason: ReasonDuplicateTS, timed: true,
		verdicts: `SELECT s.ord,
			CASE WHEN t.event_id = s.event_id OR t.value = s.value AND t.unit IS NOT DISTINCT FROM s.unit THEN 'skip' ELSE 'conflict' END,
			format('event_id %s, value %s', t.event_id, t.value)
			FROM stage_sensor_readings s
			JOIN sensor_readings t ON t.tenant = s.tenant AND t.device_id = s.device_id AND t.metric = s.metric AND t.ts = s.ts
			WHERE t.ts >= $1 AND t.ts <= $2`},
	row:  readingRow,
	copy: readingCopy,
	key: func(r *schemas.SensorReading) readingKey {
		return readingKey{r.Tenant, r.DeviceID, r.Metric, micros(r.TS)}
	},
	judge: func(a, b *schemas.SensorReading) verdict {
		return sameOr(a.EventID == b.EventID, a.Value == b.Value && eqPtr(a.Unit, b.Unit))
	},
	ts: func(r *schemas.SensorReading) time.Time { return r.TS },
	about: func(r *schemas.SensorReading) (string, string, string, string) {
		return r.Tenant, r.DeviceID, fmt.Sprintf("(tenant, device_id, metric, ts) = (%s, %s, %s, %s)", r.Tenant, r.DeviceID, r.Metric, tsText(r.TS)),
			fmt.Sprintf("event_id %s, value %v", r.EventID, r.Value)
	},
}

var fixTable = keyed[schemas.GPSFix, fixKey]{
	tableSpec: tableSpec{name: TableGPSFixes, cols: fixCols, tail: doNothing, direct: true, reason: ReasonDuplicateTS, timed: true,
		verdicts: `SELECT s.ord,
			CASE WHEN t.event_id = s.event_id
			       OR (t.lat, t.lon, t.alt, t.hdop, t.speed, t.satellites) IS NOT DISTINCT FROM (s.lat, s.lon, s.alt, s.hdop, s.speed, s.satellites)
			     THEN 'skip' ELSE 'conflict' END,
			format('event_id %s, position %s,%s', t.event_id, t.lat, t.lon)
			FROM stage_gps_fixes s
			JOIN gps_fixes t ON t.tenant = s.tenant AND t.device_id = s.device_id AND t.ts = s.ts
			WHERE t.ts >= $1 AND t.ts <= $2`},
	row:  fixRow,
	copy: fixCopy,
	key:  func(r *schemas.GPSFix) fixKey { return fixKey{r.Tenant, r.DeviceID, micros(r.TS)} },
	judge: func(a, b *schemas.GPSFix) verdict {
		return sameOr(a.EventID == b.EventID, a.Lat == b.Lat && a.Lon == b.Lon && eqPtr(a.Alt, b.Alt) && eqPtr(a.HDOP, b.HDOP) &&
			eqPtr(a.Speed, b.Speed) && eqPtr(a.Satellites, b.Satellites))
	},
	ts: func(r *schemas.GPSFix) time.Time { return r.TS },
	about: func(r *schemas.GPSFix) (string, string, string, string) {
		return r.Tenant, r.DeviceID, fmt.Sprintf("(tenant, device_id, ts) = (%s, %s, %s)", r.Tenant, r.DeviceID, tsText(r.TS)),
			fmt.Sprintf("event_id %s, position %v,%v", r.EventID, r.Lat, r.Lon)
	},
}

var mediaTable = keyed[schemas.MediaObject, mediaKey]{
	tableSpec: tableSpec{name: TableMediaObjects, cols: mediaCols, tail: doNothing, direct: true, reason: ReasonDuplicateKey,
		verdicts: `SELECT s.ord,
			CASE WHEN t.tenant = s.tenant AND t.device_id = s.device_id AND t.size = s.size
			      AND (t.sha256 IS NULL OR s.sha256 IS NULL OR t.sha256 = s.sha256)
			      AND (t.etag IS NULL OR s.etag IS NULL OR btrim(t.etag, '"') = btrim(s.etag, '"'))
			     THEN 'skip' ELSE 'conflict' END,
			format('event_id %s: %s/%s, %s bytes, sha256 %s, etag %s', t.event_id, t.tenant, t.device_id, t.size,
			       coalesce(t.sha256, 'unknown'), coalesce(t.etag, 'unknown'))
			FROM stage_media_objects s JOIN media_objects t ON t.bucket = s.bucket AND t.key = s.key`},
	row: mediaRow,
	key: func(r *schemas.MediaObject) mediaKey { return mediaKey{r.Bucket, r.Key} },
	judge: func(a, b *schemas.MediaObject) verdict {
		known := func(x, y *string) bool {
			return x == nil || y == nil || strings.Trim(*x, `"`) == strings.Trim(*y, `"`)
		}
		if a.Tenant == b.Tenant && a.DeviceID == b.DeviceID && a.Size == b.Size && known(a.SHA256, b.SHA256) && known(a.ETag, b.ETag) {
			return vSkip
		}
		return vConflict
	},
	about: func(r *schemas.MediaObject) (string, string, string, string) {
		return r.Tenant, r.DeviceID, fmt.Sprintf("(bucket, key) = (%s, %s)", r.Bucket, r.Key),
			fmt.Sprintf("event_id %s: %s/%s, %d bytes, sha256 %s, etag %s", r.EventID, r.Tenant, r.DeviceID, r.Size, optStr(r.SHA256), optStr(r.ETag))
	},
}

var featureTable = keyed[schemas.Feature, featureKey]{
	tableSpec: tableSpec{name: TableFeatures, cols: featureCols, tail: featureMerge, direct: true, reason: ReasonDuplicateKey, timed: true,
		verdicts: `SELECT s.ord,
			CASE WHEN s.late_updates > t.late_updates THEN 'replace'
			     WHEN s.late_updates < t.late_updates
			       OR (t.tenant, t.device_id, t.metric, t.window_start, t.window_end, t.window_size_ms, t.count, t.min, t.max, t.mean,
			           t.stddev, t.first, t.last, t.distance_m, t.mean_speed_mps, t.max_speed_mps, t.moving_s, t.stationary_s)
			          IS NOT DISTINCT FROM (s.tenant, s.device_id, s.metric, s.window_start, s.window_end, s.window_size_ms, s.count, s.min,
			           s.max, s.mean, s.stddev, s.first, s.last, s.distance_m, s.mean_speed_mps, s.max_speed_mps, s.moving_s, s.stationary_s)
			     THEN 'skip' ELSE 'conflict' END,
			format('late_updates %s, count %s, mean %s', t.late_updates, t.count, coalesce(t.mean::text, 'none'))
			FROM stage_features s JOIN features t ON t.feature_id = s.feature_id AND t.ts = s.ts
			WHERE t.ts >= $1 AND t.ts <= $2`},
	row: featureRow,
	key: func(r *schemas.Feature) featureKey { return featureKey{r.FeatureID, micros(r.TS)} },
	judge: func(a, b *schemas.Feature) verdict {
		switch {
		case b.LateUpdates > a.LateUpdates:
			return vReplace
		case b.LateUpdates < a.LateUpdates || sameFeature(a, b):
			return vSkip
		}
		return vConflict
	},
	ts: func(r *schemas.Feature) time.Time { return r.TS },
	about: func(r *schemas.Feature) (string, string, string, string) {
		return r.Tenant, r.DeviceID, fmt.Sprintf("(feature_id, ts) = (%s, %s)", r.FeatureID, tsText(r.TS)),
			fmt.Sprintf("late_updates %d, count %d, mean %s", r.LateUpdates, r.Count, optFloat(r.Mean))
	},
}

var alertTable = keyed[schemas.Alert, string]{
	tableSpec: tableSpec{name: TableAlerts, cols: alertCols, tail: alertMerge, reason: ReasonDuplicateKey,
		verdicts: `SELECT s.ord,
			CASE WHEN s.ts > t.ts OR s.ts = t.ts AND s.state = 'resolved' AND t.state <> 'resolved' THEN 'replace'
			     WHEN s.ts <> t.ts OR s.state <> t.state
			       OR (t.rule, t.kind, t.tenant, t.device_id, t.severity, t.value, t.threshold, t.message)
			          IS NOT DISTINCT FROM (s.rule, s.kind, s.tenant, s.device_id, s.severity, s.value, s.threshold, s.message)
			     THEN 'skip' ELSE 'conflict' END,
			format('%s at %s: value %s, severity %s, message %s', t.state, t.ts, coalesce(t.value::text, 'none'), t.severity, t.message)
			FROM stage_alerts s JOIN alerts t ON t.alert_id = s.alert_id`},
	row: alertRow,
	key: func(r *schemas.Alert) string { return r.AlertID },
	judge: func(a, b *schemas.Alert) verdict {
		switch {
		case b.TS.After(a.TS) || b.TS.Equal(a.TS) && b.State == "resolved" && a.State != "resolved":
			return vReplace
		case !b.TS.Equal(a.TS) || b.State != a.State || sameAlert(a, b):
			return vSkip
		}
		return vConflict
	},
	about: func(r *schemas.Alert) (string, string, string, string) {
		return r.Tenant, r.DeviceID, fmt.Sprintf("alert_id %s", r.AlertID),
			fmt.Sprintf("%s at %s: value %s, severity %s, message %s", r.State, tsText(r.TS), optFloat(r.Value), r.Severity, r.Message)
	},
}

var stateTable = keyed[schemas.DeviceState, stateKey]{
	tableSpec: tableSpec{name: TableDeviceState, cols: stateCols, tail: stateMerge},
	row:       stateRow,
	key:       func(r *schemas.DeviceState) stateKey { return stateKey{r.Tenant, r.DeviceID} },
	judge: func(a, b *schemas.DeviceState) verdict {
		if cmp.Or(b.TS.Compare(a.TS), b.UpdatedAt.Compare(a.UpdatedAt)) >= 0 {
			return vReplace
		}
		return vSkip
	},
}

// appTable: an app record's event_id is derived from its app and source
// record, so the same id is the same record again (a replay, a rebalance):
// nothing to write, never a conflict.
var appTable = keyed[AppRecord, string]{
	tableSpec: tableSpec{name: TableAppRecords, cols: appCols, tail: doNothing, direct: true},
	row:       appRow,
	key:       func(r *AppRecord) string { return r.EventID },
	judge:     func(_, _ *AppRecord) verdict { return vSkip },
}

var deadLetterTable = keyed[DeadLetter, struct{}]{
	tableSpec: tableSpec{name: TableDeadLetters, cols: dlCols, tail: doNothing, direct: true},
	row:       deadLetterRow,
}

func sameFeature(a, b *schemas.Feature) bool {
	return a.Tenant == b.Tenant && a.DeviceID == b.DeviceID && a.Metric == b.Metric && a.WindowStart.Equal(b.WindowStart) &&
		a.WindowEnd.Equal(b.WindowEnd) && a.WindowSizeMS == b.WindowSizeMS && a.Count == b.Count &&
		eqPtr(a.Min, b.Min) && eqPtr(a.Max, b.Max) && eqPtr(a.Mean, b.Mean) && eqPtr(a.Stddev, b.Stddev) &&
		eqPtr(a.First, b.First) && eqPtr(a.Last, b.Last) && eqPtr(a.DistanceM, b.DistanceM) &&
		eqPtr(a.MeanSpeedMPS, b.MeanSpeedMPS) && eqPtr(a.MaxSpeedMPS, b.MaxSpeedMPS) && eqPtr(a.MovingS, b.MovingS) &&
		eqPtr(a.StationaryS, b.StationaryS)
}

func sameAlert(a, b *schemas.Alert) bool {
	return a.Rule == b.Rule && a.Kind == b.Kind && a.Tenant == b.Tenant && a.DeviceID == b.DeviceID &&
		a.Severity == b.Severity && eqPtr(a.Value, b.Value) && eqPtr(a.Threshold, b.Threshold) && a.Message == b.Message
}

func eqPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func optStr(s *string) string {
	if s == nil {
		return "unknown"
	}
	return *s
}

func optFloat(f *float64) string {
	if f == nil {
		return "none"
	}
	return fmt.Sprint(*f)
}
