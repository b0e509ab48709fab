package inspect

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// samples returns one fully populated value of each drover record type,
// with its topic.
func samples() map[string]any {
	ts := time.Date(2026, 11, 23, 6, 1, 2, 345e6, time.UTC)
	f := ptr(1.5)
	return map[string]any{
		topics.RawSensor: sensor("collar-1", "temp\"erature\n", -0.25, ts),
		topics.RawGPS: schemas.GPSFix{EventID: "e", Tenant: "t", DeviceID: "d", TS: ts, IngestedAt: ts, Lat: 52.1, Lon: -1e-7,
			Alt: f, HDOP: nil, Speed: f, Satellites: ptr(int32(-7)), Source: "s", Attrs: map[string]string{"a": "1", "b": "ü"}},
		topics.RawImage2D:  schemas.MediaObject{EventID: "e", TS: ts, IngestedAt: ts, Kind: "image2d", Bucket: "b", Key: "k/1.jpg", Size: 1 << 40, SHA256: ptr("abc"), Attrs: map[string]string{}},
		topics.MediaEvents: schemas.MediaObjectEvent{EventID: "e", EventName: "s3:ObjectCreated:Put", EventTime: ts, TS: ts, IngestedAt: ts, ETag: ptr("x"), UserMetadata: map[string]string{"x": "y"}, Raw: "{}"},
		topics.Features:    schemas.Feature{FeatureID: "f", Metric: "m", WindowStart: ts, WindowEnd: ts, WindowSizeMS: 60000, Count: 3, Min: f, Max: f, Mean: f, TS: ts, IngestedAt: ts},
		topics.Alerts:      schemas.Alert{AlertID: "a", State: "firing", Value: f, FiredAt: ts, ResolvedAt: &ts, TS: ts, IngestedAt: ts},
		topics.StateLatest: schemas.DeviceState{Tenant: "t", DeviceID: "d", TS: ts, Online: true, LastSeen: ts, Lat: f, PositionTS: &ts,
			Battery: f, Firmware: ptr("1.0"), Metrics: map[string]float64{"temperature": 38.5}, ActiveAlerts: 2, UpdatedAt: ts},
		topics.DLQ:      schemas.DeadLetter{ID: "x", Stage: "decode", Payload: []byte{0, 1, 2, 0xff}, Headers: map[string]string{"h": "v"}, ReceivedAt: ts, TS: ts, IngestedAt: ts, Tenant: ptr("t")},
		topics.Commands: schemas.DeviceCommand{CommandID: "c", Name: "reboot", Payload: "{}", CreatedAt: ts, ExpiresAt: &ts, TS: ts, IngestedAt: ts},
	}
}

func normalise(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// TestTranscoderMatchesGeneric checks the fast path writes what the generic
// decoder and appendValue write, for every record type.
func TestTranscoderMatchesGeneric(t *testing.T) {
	for topic, v := range samples() {
		t.Run(topic, func(t *testing.T) {
			sch, ok := schemas.ForTopic(topic)
			if !ok {
				t.Fatalf("no schema for %s", topic)
			}
			body, err := avro.Marshal(sch, v)
			if err != nil {
				t.Fatal(err)
			}
			var generic any
			if err := avro.Unmarshal(sch, body, &generic); err != nil {
				t.Fatal(err)
			}
			want := appendValue(nil, sch, generic)
			tc := newTranscoder(sch)
			if tc == nil {
				t.Fatal("no transcoder")
			}
			r := avroReader{buf: body}
			got := tc(nil, &r)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.pos != len(body) {
				t.Errorf("read %d of %d bytes", r.pos, len(body))
			}
			if !reflect.DeepEqual(normalise(t, got), normalise(t, want)) {
				t.Errorf("fast path\n%s\ngeneric\n%s", got, want)
			}
			// Every truncation fails cleanly (no panic, an error).
			for cut := range len(body) {
				r := avroReader{buf: body[:cut]}
				tc(nil, &r)
				if r.err == nil && cut < len(body) {
					// Only a cut inside trailing empty maps could pass; all
					// drover records end with a non-empty field.
					var v any
					if avro.Unmarshal(sch, body[:cut], &v) != nil {
						t.Errorf("cut at %d of %d: transcoder accepted a body the decoder rejects", cut, len(body))
					}
				}
			}
		})
	}
}
