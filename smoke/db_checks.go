package smoke

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// rowSet is a table's rows as key → value digest.
type rowSet map[string]string

// diff describes how got differs from want ("" when equal).
func diff(table string, want, got rowSet) string {
	var missing, extra, changed []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case v != "" && g != v:
			changed = append(changed, fmt.Sprintf("%s: %s, want %s", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra)+len(changed) == 0 {
		if len(want) == 0 {
			return "no rows expected: the pipeline produced nothing to compare"
		}
		return ""
	}
	first := func(xs []string) string {
		sort.Strings(xs)
		if len(xs) > 3 {
			return strings.Join(xs[:3], "; ") + fmt.Sprintf("; … (%d)", len(xs))
		}
		return strings.Join(xs, "; ")
	}
	var parts []string
	if len(missing) > 0 {
		parts = append(parts, "missing "+first(missing))
	}
	if len(extra) > 0 {
		parts = append(parts, "unexpected "+first(extra))
	}
	if len(changed) > 0 {
		parts = append(parts, "differing "+first(changed))
	}
	return fmt.Sprintf("%s: %d rows, want %d: %s", table, len(got), len(want), strings.Join(parts, "; "))
}

func us(t time.Time) string { return fmt.Sprint(t.UnixMicro()) }

// queryRows runs q and turns each row into a key and a digest.
func queryRows(ctx context.Context, db *pgx.Conn, q string, args []any, row func(pgx.Rows) (string, string, error)) (rowSet, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := db.Query(qctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := rowSet{}
	for rows.Next() {
		k, v, err := row(rows)
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// dbCheck compares a table with what Kafka says it must hold, polling until
// they agree.
func dbCheck(w *waiter, table string, want func() rowSet, q string, args []any, row func(pgx.Rows) (string, string, error)) {
	w.check("db: "+table+" holds exactly the run's rows", func() string {
		exp := want()
		got, err := queryRows(w.parent, db(w), q, args, row)
		if err != nil {
			return table + ": " + err.Error()
		}
		return diff(table, exp, got)
	})
}

// db returns the connection stored on the waiter by checkDatabase.
func db(w *waiter) *pgx.Conn { return w.db }

func checkDatabase(w *waiter, p *plan, col *collector, conn *pgx.Conn) {
	w.db = conn
	devs := p.devices

	// sensor_readings: key (tenant, device_id, metric, ts). Two records
	// with the same key are one row; only unique keys pin the value.
	dbCheck(w, "sensor_readings", func() rowSet {
		want, seen := rowSet{}, map[string]int{}
		for _, r := range col.snapshot(topics.RawSensor) {
			if s, ok := r.Value.(*schemas.SensorReading); ok && r.Err == nil {
				k := strings.Join([]string{s.Tenant, s.DeviceID, s.Metric, us(s.TS)}, "|")
				seen[k]++
				want[k] = fmt.Sprint(s.Value)
				if seen[k] > 1 {
					want[k] = ""
				}
			}
		}
		return want
	}, `SELECT tenant, device_id, metric, ts, value FROM sensor_readings WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var t, d, m string
			var ts time.Time
			var v float64
			err := r.Scan(&t, &d, &m, &ts, &v)
			return strings.Join([]string{t, d, m, us(ts)}, "|"), fmt.Sprint(v), err
		})

	// The device event fixture: its row carries severity and message in
	// attrs (the generic check above compares keys and values only).
	w.check("db: sensor_readings holds the event row of "+p.dev+" (event.tamper, severity warning)", func() string {
		qctx, cancel := context.WithTimeout(w.parent, 10*time.Second)
		defer cancel()
		var n int
		var value float64
		var source, severity, message, zone string
		err := db(w).QueryRow(qctx, `SELECT count(*) OVER (), value, source, coalesce(attrs->>'severity', ''), coalesce(attrs->>'message', ''), coalesce(attrs->>'zone', '')
			FROM sensor_readings WHERE tenant = $1 AND device_id = $2 AND metric = 'event.tamper' AND ts = $3`,
			p.tenant, p.dev, p.now.Truncate(time.Millisecond)).Scan(&n, &value, &source, &severity, &message, &zone)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return "no event.tamper row"
		case err != nil:
			return "sensor_readings: " + err.Error()
		case n != 1 || value != 1 || source != "events" || severity != "warning" || message != "case opened" || zone != "b":
			return fmt.Sprintf("%d rows; value %v source %q severity %q message %q zone %q", n, value, source, severity, message, zone)
		}
		return ""
	})

	dbCheck(w, "gps_fixes", func() rowSet {
		want, seen := rowSet{}, map[string]int{}
		for _, r := range col.snapshot(topics.RawGPS) {
			if g, ok := r.Value.(*schemas.GPSFix); ok && r.Err == nil {
				k := strings.Join([]string{g.Tenant, g.DeviceID, us(g.TS)}, "|")
				seen[k]++
				want[k] = fmt.Sprint(g.Lat, g.Lon)
				if seen[k] > 1 {
					want[k] = ""
				}
			}
		}
		return want
	}, `SELECT tenant, device_id, ts, lat, lon FROM gps_fixes WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var t, d string
			var ts time.Time
			var lat, lon float64
			err := r.Scan(&t, &d, &ts, &lat, &lon)
			return strings.Join([]string{t, d, us(ts)}, "|"), fmt.Sprint(lat, lon), err
		})

	dbCheck(w, "media_objects", func() rowSet {
		want := rowSet{}
		for _, k := range mediaKinds {
			t, _ := topics.MediaTopic(k)
			for _, r := range col.snapshot(t) {
				if m, ok := r.Value.(*schemas.MediaObject); ok && r.Err == nil {
					want[m.Bucket+"/"+m.Key] = fmt.Sprint(m.DeviceID, " ", m.Kind, " ", m.Size)
				}
			}
		}
		return want
	}, `SELECT bucket, key, device_id, kind, size FROM media_objects WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var b, k, d, kind string
			var size int64
			err := r.Scan(&b, &k, &d, &kind, &size)
			return b + "/" + k, fmt.Sprint(d, " ", kind, " ", size), err
		})

	// features: key (feature_id, ts); the latest update of a window wins.
	dbCheck(w, "features", func() rowSet {
		want := rowSet{}
		for _, r := range col.snapshot(topics.Features) {
			if f, ok := r.Value.(*schemas.Feature); ok && r.Err == nil {
				want[f.FeatureID+"|"+us(f.TS)] = fmt.Sprint(f.Count)
			}
		}
		return want
	}, `SELECT feature_id, ts, count FROM features WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var id string
			var ts time.Time
			var n int64
			err := r.Scan(&id, &ts, &n)
			return id + "|" + us(ts), fmt.Sprint(n), err
		})

	// alerts: key alert_id; the row shows the latest lifecycle state.
	dbCheck(w, "alerts", func() rowSet {
		want := rowSet{}
		for _, r := range col.snapshot(topics.Alerts) {
			if a, ok := r.Value.(*schemas.Alert); ok && r.Err == nil {
				if cur, seen := want[a.AlertID]; !seen || cur != "resolved" {
					want[a.AlertID] = a.State
				}
			}
		}
		return want
	}, `SELECT alert_id, state FROM alerts WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var id, st string
			err := r.Scan(&id, &st)
			return id, st, err
		})

	dbCheck(w, "device_state", func() rowSet {
		want := rowSet{}
		for _, r := range col.snapshot(topics.StateLatest) {
			if s, ok := r.Value.(*schemas.DeviceState); ok && r.Err == nil {
				want[s.Tenant+"/"+s.DeviceID] = ""
			}
		}
		return want
	}, `SELECT tenant, device_id FROM device_state WHERE device_id = ANY($1)`, []any{devs},
		func(r pgx.Rows) (string, string, error) {
			var t, d string
			err := r.Scan(&t, &d)
			return t + "/" + d, "", err
		})

	// dead_letters: the run's dead letters by id, plus anything else filed
	// under the run's devices.
	var ids []string
	dbCheck(w, "dead_letters", func() rowSet {
		want := rowSet{}
		ids = ids[:0]
		for _, r := range col.snapshot(topics.DLQ) {
			if d, ok := r.Value.(*schemas.DeadLetter); ok && r.Err == nil {
				want[d.ID] = d.Stage + "/" + d.Reason
				ids = append(ids, d.ID)
			}
		}
		return want
	}, `SELECT id, stage, reason FROM dead_letters WHERE id = ANY($1) OR device_id = ANY($2)`, []any{&ids, devs},
		func(r pgx.Rows) (string, string, error) {
			var id, st, re string
			err := r.Scan(&id, &st, &re)
			return id, st + "/" + re, err
		})
}
