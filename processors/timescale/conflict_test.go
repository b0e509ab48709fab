package timescale

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestDedupeReadings(t *testing.T) {
	r := func(id string, minute int, v float64) schemas.SensorReading {
		return schemas.SensorReading{EventID: id, Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(1, minute), Value: v}
	}
	tests := []struct {
		name          string
		rows          []schemas.SensorReading
		keep          []int // nil: all
		skipped       int
		conflictsWith map[int]string
	}{
		{"all distinct", []schemas.SensorReading{r("a", 0, 1), r("b", 1, 2), r("c", 2, 3)}, nil, 0, nil},
		{"redelivery", []schemas.SensorReading{r("a", 0, 1), r("b", 1, 2), r("a", 0, 1)}, []int{0, 1}, 1, nil},
		{"the same value in another message", []schemas.SensorReading{r("a", 0, 1), r("b", 0, 1)}, []int{0}, 1, nil},
		{"same instant, other event", []schemas.SensorReading{r("a", 0, 1), r("b", 0, 2), r("c", 1, 3)}, []int{0, 2}, 0, map[int]string{1: "event_id a"}},
		{"first stays however many follow", []schemas.SensorReading{r("a", 0, 1), r("b", 0, 2), r("c", 0, 3), r("a", 0, 1)}, []int{0}, 1,
			map[int]string{1: "event_id a", 2: "event_id a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &part[schemas.SensorReading, readingKey]{def: &readingTable, rows: tc.rows}
			p.dedupe()
			if fmt.Sprint(p.keep) != fmt.Sprint(tc.keep) || p.skipped != tc.skipped || len(p.conflicts) != len(tc.conflictsWith) {
				t.Fatalf("keep %v skipped %d conflicts %+v; want keep %v skipped %d conflicts %v", p.keep, p.skipped, p.conflicts, tc.keep, tc.skipped, tc.conflictsWith)
			}
			for _, c := range p.conflicts {
				if want, ok := tc.conflictsWith[c.i]; !ok || !strings.Contains(c.with, want) {
					t.Errorf("conflict of row %d with %q, want one naming %q", c.i, c.with, want)
				}
			}
		})
	}
}

// TestIntegrationWriterConflicts: for every table with a natural key, a
// record that meets its key (in the table, or earlier in its batch) is
// either nothing new (skipped, counted), a newer version (written), or a
// conflict: the stored row stays and the record becomes a dead letter
// naming the key and both records. A second write of the same records adds
// nothing, not even a second dead letter.
func TestIntegrationWriterConflicts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()

	reading := func(id string, v float64) schemas.SensorReading {
		return schemas.SensorReading{EventID: id, Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(1, 0), IngestedAt: at(1, 0), Value: v, Source: "sensor"}
	}
	fix := func(id string, lat float64) schemas.GPSFix {
		return schemas.GPSFix{EventID: id, Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Lat: lat, Lon: 8, Source: "gps"}
	}
	media := func(id string, size int64, etag string) schemas.MediaObject {
		return schemas.MediaObject{EventID: id, Tenant: "farm", DeviceID: "cam-1", TS: at(1, 0), IngestedAt: at(1, 0), Kind: "image2d",
			Bucket: "media", Key: "farm/cam-1/1.jpg", Size: size, ContentType: "image/jpeg", ETag: ptr(etag)}
	}
	feature := func(late int64, count int64) schemas.Feature {
		return schemas.Feature{FeatureID: "f1", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", WindowStart: at(1, 0), WindowEnd: at(1, 1),
			WindowSizeMS: 60000, Count: count, LateUpdates: late, TS: at(1, 1), IngestedAt: at(1, 2)}
	}
	alert := func(value float64) schemas.Alert {
		return schemas.Alert{AlertID: "a1", Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-1", State: "firing", Severity: "warning",
			Value: ptr(value), Message: "fever", FiredAt: at(4, 0), TS: at(4, 0), IngestedAt: at(4, 0)}
	}
	state := func(battery float64) schemas.DeviceState {
		return schemas.DeviceState{Tenant: "farm", DeviceID: "cow-1", TS: at(4, 0), IngestedAt: at(4, 0), Online: true, LastSeen: at(4, 0),
			Battery: ptr(battery), UpdatedAt: at(4, 0)}
	}
	steps := []struct {
		name                       string
		batch                      Batch
		table                      string
		written, skipped, conflict int64
		reason                     string
		check                      string // true once the step is done
	}{
		{"reading stored", Batch{Readings: []schemas.SensorReading{reading("r1", 38.5)}}, TableSensorReadings, 1, 0, 0, "", ""},
		{"reading redelivered, and another at the same instant", Batch{Readings: []schemas.SensorReading{reading("r1", 38.5), reading("r2", 39.9)}},
			TableSensorReadings, 0, 1, 1, ReasonDuplicateTS, "SELECT value = 38.5 AND event_id = 'r1' FROM sensor_readings"},
		{"the same reading re-sent in another message", Batch{Readings: []schemas.SensorReading{reading("r1-again", 38.5)}},
			TableSensorReadings, 0, 1, 0, "", "SELECT count(*) = 1 FROM sensor_readings"},
		{"another at a stored instant", Batch{Readings: []schemas.SensorReading{reading("r5", 37)}}, TableSensorReadings, 0, 0, 1, ReasonDuplicateTS,
			"SELECT count(*) = 1 FROM sensor_readings"},
		{"two at a new instant in one batch", Batch{Readings: []schemas.SensorReading{
			{EventID: "r3", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(2, 0), IngestedAt: at(2, 0), Value: 1},
			{EventID: "r4", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(2, 0), IngestedAt: at(2, 0), Value: 2},
		}}, TableSensorReadings, 1, 0, 1, ReasonDuplicateTS, "SELECT value = 1 FROM sensor_readings WHERE event_id = 'r3'"},
		{"fix stored", Batch{Fixes: []schemas.GPSFix{fix("g1", 47)}}, TableGPSFixes, 1, 0, 0, "", ""},
		{"fix at the same instant elsewhere", Batch{Fixes: []schemas.GPSFix{fix("g2", 48), fix("g1", 47)}}, TableGPSFixes, 0, 1, 1, ReasonDuplicateTS,
			"SELECT lat = 47 FROM gps_fixes"},
		{"media object stored", Batch{Media: []schemas.MediaObject{media("m1", 10, "e1")}}, TableMediaObjects, 1, 0, 0, "", ""},
		{"the same object replayed under another id", Batch{Media: []schemas.MediaObject{media("backfill-1", 10, `"e1"`)}}, TableMediaObjects, 0, 1, 0, "", ""},
		{"another object at the same key", Batch{Media: []schemas.MediaObject{media("m2", 20, "e2")}}, TableMediaObjects, 0, 0, 1, ReasonDuplicateKey,
			"SELECT size = 10 FROM media_objects"},
		{"feature window stored", Batch{Features: []schemas.Feature{feature(1, 5)}}, TableFeatures, 1, 0, 0, "", ""},
		{"older version and the same version with other values", Batch{Features: []schemas.Feature{feature(0, 4), feature(1, 6)}}, TableFeatures, 0, 1, 1,
			ReasonDuplicateKey, "SELECT count = 5 FROM features"},
		{"alert fired", Batch{Alerts: []schemas.Alert{alert(40.1)}}, TableAlerts, 1, 0, 0, "", ""},
		{"the same event with another value", Batch{Alerts: []schemas.Alert{alert(40.1), alert(41)}}, TableAlerts, 0, 1, 1, ReasonDuplicateKey,
			"SELECT value = 40.1 FROM alerts"},
		{"state stored", Batch{States: []schemas.DeviceState{state(3.9)}}, TableDeviceState, 1, 0, 0, "", ""},
		{"a later change within the same millisecond wins", Batch{States: []schemas.DeviceState{state(3.8)}}, TableDeviceState, 1, 0, 0, "",
			"SELECT battery = 3.8 FROM device_state"},
		{"and in one batch the later one", Batch{States: []schemas.DeviceState{state(3.7), state(3.6)}}, TableDeviceState, 1, 1, 0, "",
			"SELECT battery = 3.6 FROM device_state"},
	}
	letters := int64(0)
	for _, s := range steps {
		for attempt := range 2 { // the second attempt is a replay: nothing new
			res, err := w.Write(ctx, &s.batch)
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			written, skipped, conflicts := res.Written[s.table], res.Skipped[s.table], res.Conflicts[s.table]
			if attempt == 0 && (written != s.written || skipped != s.skipped || conflicts != s.conflict) {
				t.Errorf("%s: written %d skipped %d conflicts %d, want %d %d %d", s.name, written, skipped, conflicts, s.written, s.skipped, s.conflict)
			}
			if attempt == 1 && (res.Written.Total() != 0 || written+skipped+conflicts != int64(s.batch.Len())) {
				t.Errorf("%s, again: written %v skipped %v conflicts %v, want every record skipped or a conflict again", s.name, res.Written, res.Skipped, res.Conflicts)
			}
		}
		letters += s.conflict
		if n := count(t, c, "SELECT count(*) FROM dead_letters"); n != letters {
			t.Errorf("%s: dead_letters has %d rows, want %d (one per conflicting record, once)", s.name, n, letters)
		}
		if s.check != "" {
			var ok bool
			if err := c.QueryRow(ctx, s.check).Scan(&ok); err != nil || !ok {
				t.Errorf("%s: %s = %v, %v", s.name, s.check, ok, err)
			}
		}
	}
	// The dead letter names the table, the key and both records.
	var msg, tenant, device string
	if err := c.QueryRow(ctx, `SELECT message, tenant, device_id FROM dead_letters
		WHERE stage = 'sink' AND reason = 'duplicate_timestamp' AND message LIKE '%r2%'`).Scan(&msg, &tenant, &device); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sensor_readings", "(farm, cow-1, temperature, " + at(1, 0).Format(time.RFC3339), "event_id r1", "event_id r2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("dead letter message %q does not name %q", msg, want)
		}
	}
	if tenant != "farm" || device != "cow-1" {
		t.Errorf("dead letter owner %s/%s, want farm/cow-1", tenant, device)
	}
}

// TestIntegrationSinkDuplicateTimestamp: readings and fixes from separate
// Kafka records that share a key. The redelivered copy writes nothing; the
// one with other content becomes a dead letter carrying its own bytes and
// Kafka coordinates, counted per table, and a replay of the topics by a new
// group adds no second dead letter.
func TestIntegrationSinkDuplicateTimestamp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 1)
	dbURL := devtest.Postgres(t)
	first := schemas.SensorReading{EventID: "e1", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(1, 0), IngestedAt: at(1, 0), Value: 38.5, Source: "sensor"}
	other := first
	other.EventID, other.Value = "e2", 41
	fixA := schemas.GPSFix{EventID: "g1", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Lat: 47, Lon: 8, Source: "gps"}
	fixB := fixA
	fixB.EventID, fixB.Lat = "g2", 46
	env.produce(t, env.record(t, topics.RawSensor, "farm/cow-1", first), env.record(t, topics.RawGPS, "farm/cow-1", fixA))
	rs := startSink(t, env, dbURL, nil)
	waitFor(t, 60*time.Second, "first records written", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	// In a later batch: a redelivered copy, and another record at the same
	// instant, which is also redelivered: both copies meet the stored row.
	dup, dupAgain := env.record(t, topics.RawSensor, "farm/cow-1", other), env.record(t, topics.RawSensor, "farm/cow-1", other)
	env.produce(t, env.record(t, topics.RawSensor, "farm/cow-1", first), dup, dupAgain, env.record(t, topics.RawGPS, "farm/cow-1", fixB))
	waitFor(t, 60*time.Second, "duplicates handled", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	c := connect(t, dbURL)
	checks := []struct {
		q    string
		want int64
	}{
		{"SELECT count(*) FROM sensor_readings WHERE event_id = 'e1' AND value = 38.5", 1},
		{"SELECT count(*) FROM sensor_readings", 1},
		{"SELECT count(*) FROM gps_fixes WHERE lat = 47", 1},
		{fmt.Sprintf(`SELECT count(*) FROM dead_letters WHERE stage = 'sink' AND reason = 'duplicate_timestamp'
			AND kafka_topic = 'raw.sensor' AND kafka_offset = %d AND id = 'sink:raw.sensor:0:%d' AND payload_excerpt = $1
			AND message LIKE '%%(farm, cow-1, temperature, %s)%%event_id e1%%event_id e2%%'`, dup.Offset, dup.Offset, at(1, 0).Format(time.RFC3339)), 1},
		{fmt.Sprintf("SELECT count(*) FROM dead_letters WHERE reason = 'duplicate_timestamp' AND kafka_offset = %d", dupAgain.Offset), 1},
		{"SELECT count(*) FROM dead_letters WHERE reason = 'duplicate_timestamp' AND kafka_topic = 'raw.gps' AND message LIKE '%g1%g2%'", 1},
		{"SELECT count(*) FROM dead_letters", 3},
	}
	for _, ch := range checks {
		var args []any
		if strings.Contains(ch.q, "$1") {
			args = []any{dup.Value}
		}
		if n := count(t, c, ch.q, args...); n != ch.want {
			t.Errorf("%s = %d, want %d", ch.q, n, ch.want)
		}
	}
	metrics := []struct {
		name      string
		got, want float64
	}{
		{"duplicates{sensor_readings,dead_letter}", metricValue(rs.sink.m.duplicates.WithLabelValues(TableSensorReadings, "dead_letter")), 2},
		{"duplicates{sensor_readings,skipped}", metricValue(rs.sink.m.duplicates.WithLabelValues(TableSensorReadings, "skipped")), 1},
		{"duplicates{gps_fixes,dead_letter}", metricValue(rs.sink.m.duplicates.WithLabelValues(TableGPSFixes, "dead_letter")), 1},
		{"records{raw.sensor,dead_letter}", metricValue(rs.sink.m.records.WithLabelValues(topics.RawSensor, "dead_letter")), 2},
		{"records{raw.sensor,row}", metricValue(rs.sink.m.records.WithLabelValues(topics.RawSensor, "row")), 2},
	}
	for _, m := range metrics {
		if m.got != m.want {
			t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
		}
	}

	replay := replayChangesNothing(t, env, dbURL)
	if got := metricValue(replay.sink.m.records.WithLabelValues(topics.RawSensor, "dead_letter")); got != 2 {
		t.Errorf("replay: records{raw.sensor,dead_letter} = %v, want 2 (the conflicts are found again; their dead letters exist)", got)
	}
}

// BenchmarkDedupe is the sink's extra work per batch on the hot path: one
// map insert per reading (go test -run '^$' -bench Dedupe).
func BenchmarkDedupe(b *testing.B) {
	rows := benchReadings(5000)
	b.ReportAllocs()
	for b.Loop() {
		p := &part[schemas.SensorReading, readingKey]{def: &readingTable, rows: rows}
		p.dedupe()
		if p.keep != nil {
			b.Fatal("benchmark readings collide")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/5000, "ns/record")
}
