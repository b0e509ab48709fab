package timescale

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestDecodeValidation(t *testing.T) {
	env := newKafkaEnv(t, 1)
	now := day0.AddDate(0, 0, 3)
	d := newDecoder(env.serde, func() time.Time { return now })
	okReading := schemas.SensorReading{EventID: "e", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Metric: "temperature", Value: 38}
	reading := func(mod func(*schemas.SensorReading)) *kgo.Record {
		v := okReading
		mod(&v)
		return env.record(t, topics.RawSensor, "cow-1", v)
	}
	fix := func(lat, lon float64) *kgo.Record {
		return env.record(t, topics.RawGPS, "cow-1", schemas.GPSFix{EventID: "g", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Lat: lat, Lon: lon})
	}
	alert := func(state string) *kgo.Record {
		return env.record(t, topics.Alerts, "cow-1", schemas.Alert{AlertID: "a", Rule: "r", Tenant: "farm", DeviceID: "cow-1", State: state, FiredAt: at(1, 0), TS: at(1, 0), IngestedAt: at(1, 0)})
	}
	tests := []struct {
		name       string
		rec        *kgo.Record
		want       outcome
		wantReason string // dead letter reason
		wantMsg    string // substring of its message
	}{
		{"valid reading", reading(func(*schemas.SensorReading) {}), outRow, "", ""},
		{"empty tenant", reading(func(v *schemas.SensorReading) { v.Tenant = "" }), outDeadLetter, ReasonInvalid, "tenant is empty"},
		{"NUL in metric", reading(func(v *schemas.SensorReading) { v.Metric = "a\x00b" }), outDeadLetter, ReasonInvalid, "metric contains a NUL byte"},
		{"invalid UTF-8 unit", reading(func(v *schemas.SensorReading) { v.Unit = ptr("\xff") }), outDeadLetter, ReasonInvalid, "unit is not valid UTF-8"},
		{"NUL in attrs", reading(func(v *schemas.SensorReading) { v.Attrs = map[string]string{"k": "\x00"} }), outDeadLetter, ReasonInvalid, "attrs value"},
		{"ts before 2000", reading(func(v *schemas.SensorReading) { v.TS = time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC) }), outDeadLetter, ReasonTimeRange, "before 2000"},
		{"ts two years ahead", reading(func(v *schemas.SensorReading) { v.TS = now.AddDate(2, 0, 0) }), outDeadLetter, ReasonTimeRange, "ahead"},
		{"valid fix", fix(47, 8), outRow, "", ""},
		{"latitude out of range", fix(91, 8), outDeadLetter, ReasonInvalid, "not a valid latitude/longitude"},
		{"longitude out of range", fix(0, -181), outDeadLetter, ReasonInvalid, "not a valid latitude/longitude"},
		{"alert firing", alert("firing"), outRow, "", ""},
		{"alert unknown state", alert("snoozed"), outDeadLetter, ReasonInvalid, `"snoozed" is neither firing nor resolved`},
		{"not wire format", &kgo.Record{Topic: topics.RawSensor, Value: []byte("{}")}, outDeadLetter, ReasonNotWireFormat, "not confluent wire format"},
		{"unknown schema id", &kgo.Record{Topic: topics.RawSensor, Value: schemas.Header(424242)}, outDeadLetter, ReasonUnknownSchema, "424242"},
		{"tombstone", &kgo.Record{Topic: topics.StateLatest, Key: []byte("cow-1")}, outSkipped, "", ""},
		// Older state processors emitted the state of a device never seen
		// (an alert before its first reading) with ts and last_seen at the
		// epoch: skipped and counted, not a dead letter.
		{"state of a device never seen", env.record(t, topics.StateLatest, "cow-1", schemas.DeviceState{Tenant: "farm", DeviceID: "cow-1",
			TS: time.UnixMilli(0), LastSeen: time.UnixMilli(0), IngestedAt: time.UnixMilli(0), ActiveAlerts: 1, UpdatedAt: at(1, 0)}), outIgnored, "", ""},
		{"state with an old event time", env.record(t, topics.StateLatest, "cow-1", schemas.DeviceState{Tenant: "farm", DeviceID: "cow-1",
			TS: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), LastSeen: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), UpdatedAt: at(1, 0)}), outDeadLetter, ReasonTimeRange, "before 2000"},
		{"dead letter with bad text is cleaned, not rejected", env.record(t, topics.DLQ, "x", schemas.DeadLetter{ID: "d", Stage: "s", Reason: "r", Message: "bad \x00 \xff",
			ReceivedAt: at(1, 0), TS: at(1, 0), IngestedAt: at(1, 0)}), outRow, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.rec.Partition, tc.rec.Offset = 2, 17
			var b Batch
			got, err := d.add(context.Background(), &b, tc.rec)
			if err != nil {
				t.Fatalf("add: %v", err)
			}
			if got != tc.want {
				t.Fatalf("outcome = %d, want %d (batch %+v)", got, tc.want, b)
			}
			if tc.want != outDeadLetter {
				if tc.rec.Topic == topics.DLQ && (len(b.DeadLetters) != 1 || b.DeadLetters[0].Message != "bad  \uFFFD" ||
					b.DeadLetters[0].KafkaTopic != topics.DLQ || b.DeadLetters[0].KafkaPartition != 2 || b.DeadLetters[0].KafkaOffset != 17) {
					t.Fatalf("dead letter from dlq.events (cleaned, keyed by its record) = %+v", b.DeadLetters)
				}
				if tc.want == outIgnored && b.Len() != 0 {
					t.Fatalf("an ignored record left rows in the batch: %+v", b)
				}
				return
			}
			if len(b.DeadLetters) != 1 {
				t.Fatalf("batch has %d dead letters, want 1", len(b.DeadLetters))
			}
			dl := b.DeadLetters[0]
			if dl.Reason != tc.wantReason || !strings.Contains(dl.Message, tc.wantMsg) || dl.Stage != StageSink ||
				dl.KafkaTopic != tc.rec.Topic || dl.KafkaPartition != 2 || dl.KafkaOffset != 17 || dl.ID != "sink:"+tc.rec.Topic+":2:17" {
				t.Fatalf("dead letter = %+v, want reason %s with %q", dl, tc.wantReason, tc.wantMsg)
			}
		})
	}
}

// TestIntegrationStateTombstone: a tombstone on state.latest (a device
// removed from the compacted state) deletes the device's device_state row;
// a state after the tombstone in the same batch brings it back, one before
// it is dropped; other devices are untouched.
func TestIntegrationStateTombstone(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 1)
	url, layout := migratedDB(t)
	ctx := context.Background()
	d := newDecoder(env.serde, func() time.Time { return day0.AddDate(0, 0, 3) })
	w := testWriter(t, url, layout)
	state := func(dev string, h int) *kgo.Record {
		return env.record(t, topics.StateLatest, dev, schemas.DeviceState{Tenant: "farm", DeviceID: dev, TS: at(h, 0), IngestedAt: at(h, 0),
			Online: true, LastSeen: at(h, 0), UpdatedAt: at(h, 0)})
	}
	tomb := func(dev string) *kgo.Record { return &kgo.Record{Topic: topics.StateLatest, Key: []byte(dev)} }
	write := func(recs ...*kgo.Record) {
		t.Helper()
		var b Batch
		for _, r := range recs {
			if _, err := d.add(ctx, &b, r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Write(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, url)
	devices := func() string {
		t.Helper()
		rows, err := c.Query(ctx, "SELECT device_id || '@' || extract(hour FROM ts AT TIME ZONE 'UTC') FROM device_state ORDER BY device_id")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, " ")
	}
	write(state("cow-1", 1), state("cow-2", 1), state("cow-3", 1))
	if got := devices(); got != "cow-1@1 cow-2@1 cow-3@1" {
		t.Fatalf("before the tombstones: %q", got)
	}
	// cow-1: removed. cow-2: removed, then seen again. cow-3: a newer state,
	// then removed.
	write(tomb("cow-1"), tomb("cow-2"), state("cow-2", 2), state("cow-3", 3), tomb("cow-3"))
	if got, want := devices(), "cow-2@2"; got != want {
		t.Errorf("after the tombstones: %q, want %q", got, want)
	}
	// A tombstone alone in its batch, and one for a device never seen.
	write(tomb("cow-2"), tomb("cow-9"))
	if got := devices(); got != "" {
		t.Errorf("after removing cow-2: %q, want no device", got)
	}
	// Keys are tenant-qualified: farm/cow-5's tombstone leaves farm2's
	// cow-5 alone, in the batch and in the table.
	tenantState := func(tenant string, h int) *kgo.Record {
		return env.record(t, topics.StateLatest, tenant+"/cow-5", schemas.DeviceState{Tenant: tenant, DeviceID: "cow-5", TS: at(h, 0),
			IngestedAt: at(h, 0), Online: true, LastSeen: at(h, 0), UpdatedAt: at(h, 0)})
	}
	write(tenantState("farm", 1), tenantState("farm2", 1))
	write(tenantState("farm", 2), tenantState("farm2", 2), tomb("farm/cow-5"))
	var left string
	if err := c.QueryRow(ctx, "SELECT string_agg(tenant || '/' || device_id || '@' || extract(hour FROM ts AT TIME ZONE 'UTC'), ' ') FROM device_state").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != "farm2/cow-5@2" {
		t.Errorf("after farm/cow-5's tombstone: %q, want farm2/cow-5@2", left)
	}
}
