package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/topics"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		id      int
		body    []byte
		wantErr string
	}{
		{name: "header only", in: []byte{0, 0, 0, 0, 7}, id: 7, body: []byte{}},
		{name: "with body", in: []byte{0, 0, 0, 1, 2, 0xAA, 0xBB}, id: 258, body: []byte{0xAA, 0xBB}},
		{name: "large id", in: []byte{0, 0x7f, 0xff, 0xff, 0xff}, id: 1<<31 - 1, body: []byte{}},
		{name: "empty", in: nil, wantErr: "not confluent wire format: 0 bytes"},
		{name: "short", in: []byte{0, 0, 0, 1}, wantErr: "not confluent wire format: 4 bytes"},
		{name: "bad magic", in: []byte{1, 0, 0, 0, 1, 2}, wantErr: "magic byte is 0x01"},
		{name: "json", in: []byte(`{"a":1}`), wantErr: "magic byte is 0x7b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, body, err := ParseHeader(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrNotWireFormat) {
					t.Errorf("err %v does not wrap ErrNotWireFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id != tt.id || !bytes.Equal(body, tt.body) {
				t.Errorf("got (%d, %x), want (%d, %x)", id, body, tt.id, tt.body)
			}
			if h := Header(id); !bytes.Equal(h, tt.in[:HeaderSize]) {
				t.Errorf("Header(%d) = %x, want %x", id, h, tt.in[:HeaderSize])
			}
		})
	}
}

// TestRoundTrip encodes every record type through the registry and decodes
// it back, including nullable and map fields.
func TestRoundTrip(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	if _, err := Register(ctx, client, nil); err != nil {
		t.Fatal(err)
	}
	s := newSerde(t, client)
	ts, ing := at(1_700_000_000_123), at(1_700_000_001_456)
	tests := []struct {
		name  string
		topic string
		in    any // pointer
	}{
		{name: "sensor full", topic: topics.RawSensor, in: &SensorReading{
			EventID: "e1", Tenant: "farm1", DeviceID: "cow-7", TS: ts, IngestedAt: ing, Metric: "temperature",
			Value: 38.6, Unit: ptr("Cel"), Source: "sensor", Replayed: true, Attrs: map[string]string{"fw": "1.2"}}},
		{name: "sensor nulls", topic: topics.RawSensor, in: &SensorReading{
			EventID: "e2", Tenant: "farm1", DeviceID: "cow-7", TS: ts, IngestedAt: ing, Metric: "imu.ax",
			Value: -0.5, Source: "wildfi/imu", Attrs: map[string]string{}}},
		{name: "gps full", topic: topics.RawGPS, in: &GPSFix{
			EventID: "g1", Tenant: "farm1", DeviceID: "cow-7", TS: ts, IngestedAt: ing, Lat: 52.1, Lon: 5.2,
			Alt: ptr(12.5), HDOP: ptr(0.9), Speed: ptr(1.4), Satellites: ptr(int32(9)), Source: "gps",
			Attrs: map[string]string{"fix": "3d"}}},
		{name: "gps nulls", topic: topics.RawGPS, in: &GPSFix{
			EventID: "g2", Tenant: "farm1", DeviceID: "cow-7", TS: ts, IngestedAt: ing, Lat: -33.9, Lon: 151.2,
			Source: "wildfi/gnss", Replayed: true, Attrs: map[string]string{}}},
		{name: "media", topic: topics.RawVideo3D, in: &MediaObject{
			EventID: "m1", Tenant: "farm1", DeviceID: "cam-1", TS: ts, IngestedAt: ing, Kind: "video3d",
			Bucket: "media", Key: "farm1/cam-1/x.mp4", Size: 1 << 40, ContentType: "video/mp4",
			SHA256: ptr("abc"), ETag: ptr(`"e"`), Replayed: true, Attrs: map[string]string{"fps": "30"}}},
		{name: "media event", topic: topics.MediaEvents, in: &MediaObjectEvent{
			EventID: "n1", EventName: "s3:ObjectCreated:Put", Bucket: "media", Key: "a/b.jpg", Size: 42,
			ETag: ptr("x"), EventTime: ts, TS: ts, IngestedAt: ing,
			UserMetadata: map[string]string{"device": "cam-1"}, Raw: `{"eventName":"s3:ObjectCreated:Put"}`}},
		{name: "feature stats", topic: topics.Features, in: &Feature{
			FeatureID: "f1", Tenant: "farm1", DeviceID: "cow-7", Metric: "temperature",
			WindowStart: at(1_700_000_000_000), WindowEnd: at(1_700_000_060_000), WindowSizeMS: 60_000, Count: 12,
			Min: ptr(1.0), Max: ptr(3.0), Mean: ptr(2.0), Stddev: ptr(0.5), First: ptr(1.5), Last: ptr(2.5),
			LateUpdates: 2, TS: at(1_700_000_060_000), IngestedAt: ing}},
		{name: "feature motion", topic: topics.Features, in: &Feature{
			FeatureID: "f2", Tenant: "farm1", DeviceID: "cow-7", Metric: "motion",
			WindowStart: at(1_700_000_000_000), WindowEnd: at(1_700_000_060_000), WindowSizeMS: 60_000, Count: 4,
			DistanceM: ptr(120.0), MeanSpeedMPS: ptr(2.0), MaxSpeedMPS: ptr(3.5), MovingS: ptr(50.0), StationaryS: ptr(10.0),
			TS: at(1_700_000_060_000), IngestedAt: ing}},
		{name: "alert firing", topic: topics.Alerts, in: &Alert{
			AlertID: "a1", Rule: "hot", Kind: "threshold", Tenant: "farm1", DeviceID: "cow-7", State: "firing",
			Severity: "warning", Value: ptr(40.1), Threshold: ptr(39.5), Message: "temperature above 39.5",
			FiredAt: ts, TS: ts, IngestedAt: ing}},
		{name: "alert resolved", topic: topics.Alerts, in: &Alert{
			AlertID: "a1", Rule: "offline", Kind: "offline", Tenant: "farm1", DeviceID: "cow-7", State: "resolved",
			Severity: "critical", Message: "back online", FiredAt: ts, ResolvedAt: ptr(ing), TS: ing, IngestedAt: ing}},
		{name: "state full", topic: topics.StateLatest, in: &DeviceState{
			Tenant: "farm1", DeviceID: "cow-7", TS: ts, IngestedAt: ing, Online: true, LastSeen: ts,
			Lat: ptr(52.1), Lon: ptr(5.2), PositionTS: ptr(ts), Battery: ptr(87.0), Firmware: ptr("1.2.3"),
			Metrics: map[string]float64{"temperature": 38.6, "battery": 87}, ActiveAlerts: 2, UpdatedAt: ing,
			Desired: map[string]string{"interval": "30", "mode": "eco"}, Version: 3}},
		{name: "state empty", topic: topics.StateLatest, in: &DeviceState{
			Tenant: "farm1", DeviceID: "cow-8", TS: ts, IngestedAt: ing, LastSeen: ts, Metrics: map[string]float64{}, UpdatedAt: ing, Desired: map[string]string{}}},
		{name: "dead letter", topic: topics.DLQ, in: &DeadLetter{
			ID: "d1", Stage: "decode", Reason: "not_json", Message: "payload is not JSON", Source: "devices/farm1/cow-7/sensor",
			Tenant: ptr("farm1"), DeviceID: ptr("cow-7"), Payload: []byte{0xff, 0x00, 'x'}, PayloadSize: 3,
			ContentType: ptr("application/json"), Headers: map[string]string{"mqtt.qos": "1"},
			ReceivedAt: ts, TS: ts, IngestedAt: ing}},
		{name: "dead letter truncated", topic: topics.DLQ, in: &DeadLetter{
			ID: "d2", Stage: "validate", Reason: "too_large", Message: "m", Source: "wildfi/x/imu",
			Payload: []byte("abc"), PayloadSize: 1 << 20, Truncated: true, Headers: map[string]string{},
			ReceivedAt: ts, TS: ts, IngestedAt: ing}},
		{name: "command", topic: topics.Commands, in: &DeviceCommand{
			CommandID: "c1", Tenant: "farm1", DeviceID: "cow-7", Name: "set_interval", Payload: `{"s":60}`,
			CreatedAt: ts, ExpiresAt: ptr(ing), TS: ts, IngestedAt: ing, ReplyTopic: ptr("devices/farm1/cow-7/replies/c1")}},
		{name: "command status", topic: topics.CommandStatus, in: &CommandStatus{
			CommandID: "c1", Tenant: "farm1", DeviceID: "cow-7", Name: "set_interval", Status: "succeeded",
			CreatedAt: ts, ExpiresAt: ptr(ing), Result: ptr(`{"ok":true}`), TS: ts, IngestedAt: ing}},
		{name: "envelope", topic: "security.incident.events", in: &Envelope{
			EventID: "x1", EventType: "incident.reported", TS: ts, IngestedAt: ing, Tenant: ptr("farm1"),
			Subject: ptr("asset-9"), Actor: ptr("soc"), Payload: `{"severity":"high"}`,
			Attributes: map[string]string{"regulation": "NIS2"}}},
		{name: "envelope nulls", topic: "cra.product.lifecycle", in: &Envelope{
			EventID: "x2", EventType: "release", TS: ts, IngestedAt: ing, Payload: `{}`, Attributes: map[string]string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.Encode(ctx, tt.topic, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			wantID, err := s.ID(ctx, tt.topic)
			if err != nil {
				t.Fatal(err)
			}
			out := reflect.New(reflect.TypeOf(tt.in).Elem()).Interface()
			id, err := s.Decode(ctx, b, out)
			if err != nil {
				t.Fatal(err)
			}
			if id != wantID {
				t.Errorf("decoded id %d, want %d", id, wantID)
			}
			if !reflect.DeepEqual(out, tt.in) {
				t.Errorf("round trip differs\n got %+v\nwant %+v", out, tt.in)
			}
			// DecodeTopic and a fresh Serde (cold caches) agree.
			out2 := reflect.New(reflect.TypeOf(tt.in).Elem()).Interface()
			if _, err := newSerde(t, client).DecodeTopic(ctx, tt.topic, b, out2); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out2, tt.in) {
				t.Errorf("DecodeTopic differs\n got %+v\nwant %+v", out2, tt.in)
			}
		})
	}
}

func TestTimePrecision(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client, AutoRegister(true))
	cet := time.FixedZone("CET", 3600)
	in := &SensorReading{
		EventID: "e", Tenant: "t", DeviceID: "d", Metric: "m", Source: "sensor",
		TS:         time.Date(2025, 3, 1, 12, 0, 0, 123_456_789, cet),
		IngestedAt: time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC), // before the epoch
	}
	b, err := s.Encode(ctx, topics.RawSensor, in)
	if err != nil {
		t.Fatal(err)
	}
	var out SensorReading
	if _, err := s.Decode(ctx, b, &out); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 3, 1, 11, 0, 0, 123_000_000, time.UTC); !out.TS.Equal(want) || out.TS.Location() != time.UTC {
		t.Errorf("ts = %v, want %v in UTC", out.TS, want)
	}
	if !out.IngestedAt.Equal(in.IngestedAt) {
		t.Errorf("ingested_at = %v, want %v", out.IngestedAt, in.IngestedAt)
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    []Option
		topic   string
		v       any
		is      error
		wantErr string
	}{
		{name: "not registered", topic: topics.RawSensor, v: &SensorReading{}, is: ErrNotRegistered,
			wantErr: "subject raw.sensor-value: schema not registered"},
		{name: "unknown topic", opts: []Option{AutoRegister(true)}, topic: "nope", v: &SensorReading{}, is: ErrUnknownTopic,
			wantErr: "topic has no schema: nope"},
		{name: "wrong type", opts: []Option{AutoRegister(true)}, topic: topics.RawGPS, v: &SensorReading{},
			wantErr: "encoding raw.gps value"},
		{name: "nil", opts: []Option{AutoRegister(true)}, topic: topics.RawGPS, v: nil, wantErr: "encoding raw.gps value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client := newRegistry(t)
			s := newSerde(t, client, tt.opts...)
			dst := []byte("keep")
			out, err := s.AppendEncode(testCtx(t), dst, tt.topic, tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
			if string(out) != "keep" {
				t.Errorf("dst changed to %q", out)
			}
		})
	}
}

// TestNotRegisteredIsNotCached checks that a schema registered after a
// failed Encode is picked up by the next Encode.
func TestNotRegisteredIsNotCached(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client)
	in := &SensorReading{EventID: "e", TS: at(1), IngestedAt: at(2)}
	if _, err := s.Encode(ctx, topics.RawSensor, in); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("err = %v, want ErrNotRegistered", err)
	}
	res, err := Register(ctx, client, []string{topics.RawSensor})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Encode(ctx, topics.RawSensor, in)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _ := ParseHeader(b); id != res[0].ID {
		t.Errorf("id %d, want %d", id, res[0].ID)
	}
}

func TestAppendEncode(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client, AutoRegister(true))
	in := &SensorReading{EventID: "e", TS: at(1), IngestedAt: at(2), Attrs: map[string]string{}}
	one, err := s.Encode(ctx, topics.RawSensor, in)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := s.AppendEncode(ctx, []byte("prefix"), topics.RawSensor, in)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("prefix"), one...); !bytes.Equal(buf, want) {
		t.Errorf("AppendEncode = %x, want %x", buf, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client, AutoRegister(true))
	good, err := s.Encode(ctx, topics.RawSensor, &SensorReading{EventID: "e", Metric: "m", TS: at(1), IngestedAt: at(2)})
	if err != nil {
		t.Fatal(err)
	}
	alert, err := s.Encode(ctx, topics.Alerts, &Alert{AlertID: "a", TS: at(1), IngestedAt: at(2), FiredAt: at(1)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		into    any
		target  any // errors.As target, or an error for errors.Is
		wantErr string
	}{
		{name: "short", in: []byte{0, 1}, into: &SensorReading{}, target: ErrNotWireFormat, wantErr: "not confluent wire format"},
		{name: "bad magic", in: append([]byte{9}, good[1:]...), into: &SensorReading{}, target: ErrNotWireFormat, wantErr: "magic byte is 0x09"},
		{name: "unknown id", in: append(Header(4242), good[5:]...), into: &SensorReading{}, target: new(*UnknownSchemaError), wantErr: "unknown schema id 4242"},
		{name: "truncated body", in: good[:len(good)-3], into: &SensorReading{}, target: new(*DecodeError), wantErr: "decoding avro body"},
		{name: "other record", in: alert, into: &SensorReading{}, target: new(*DecodeError), wantErr: "cannot be read as io.drover.SensorReading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Decode(ctx, tt.in, tt.into)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			switch target := tt.target.(type) {
			case error:
				if !errors.Is(err, target) {
					t.Errorf("err %v is not %v", err, target)
				}
			default:
				if !errors.As(err, target) {
					t.Errorf("err %v (%T) is not %T", err, err, target)
				}
			}
			if _, _, err := s.DecodeAny(ctx, tt.in); err == nil && tt.name != "other record" {
				t.Errorf("DecodeAny accepted %s", tt.name)
			}
		})
	}
	var ue *UnknownSchemaError
	_, err = s.Decode(ctx, append(Header(4242), good[5:]...), &SensorReading{})
	if errors.As(err, &ue) && ue.ID != 4242 {
		t.Errorf("UnknownSchemaError.ID = %d", ue.ID)
	}
}

// TestDecodeOlderVersion writes with v1 of the SensorReading schema and
// reads into the current Go type: added fields take their defaults, the
// dropped field is skipped, float is promoted to double.
func TestDecodeOlderVersion(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	old := newSerde(t, client, WithSchemas(map[string]string{topics.RawSensor: v1SensorReading}), AutoRegister(true))
	b, err := old.Encode(ctx, topics.RawSensor, &v1Reading{
		EventID: "e1", Tenant: "farm1", DeviceID: "cow-7", TS: at(1000), IngestedAt: at(2000),
		Metric: "temperature", Value: 38.5, Source: "sensor", Quality: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The current schema is a compatible evolution of v1.
	res, err := Register(ctx, client, []string{topics.RawSensor})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != Created || res[0].Version != 2 {
		t.Fatalf("register current schema: %+v, want created version 2", res[0])
	}
	s := newSerde(t, client)
	want := SensorReading{
		EventID: "e1", Tenant: "farm1", DeviceID: "cow-7", TS: at(1000), IngestedAt: at(2000),
		Metric: "temperature", Value: 38.5, Source: "sensor", Attrs: map[string]string{},
	}
	for _, name := range []string{"Decode", "DecodeTopic"} {
		t.Run(name, func(t *testing.T) {
			var got SensorReading
			var id int
			var err error
			if name == "Decode" {
				id, err = s.Decode(ctx, b, &got)
			} else {
				id, err = s.DecodeTopic(ctx, topics.RawSensor, b, &got)
			}
			if err != nil {
				t.Fatal(err)
			}
			if oldID, _, _ := ParseHeader(b); id != oldID {
				t.Errorf("id %d, want %d", id, oldID)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
	// New records get the new id and still decode.
	nb, err := s.Encode(ctx, topics.RawSensor, &want)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, _ := ParseHeader(nb); id != res[0].ID {
		t.Errorf("new record id %d, want %d", id, res[0].ID)
	}
}

func TestDecodeAny(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client, AutoRegister(true))
	b, err := s.Encode(ctx, topics.RawGPS, &GPSFix{
		EventID: "g1", Tenant: "farm1", DeviceID: "cow-7", TS: at(1000), IngestedAt: at(2000),
		Lat: 52.1, Lon: 5.2, Alt: ptr(3.5), Satellites: ptr(int32(7)), Source: "gps", Attrs: map[string]string{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh Serde has to fetch the writer schema by id.
	id, v, err := newSerde(t, client).DecodeAny(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := s.ID(ctx, topics.RawGPS); id != want {
		t.Errorf("id %d, want %d", id, want)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("value is %T, want map[string]any", v)
	}
	tests := []struct {
		name  string
		field string
		want  string // fmt %v of the value; unions decode to the plain value
	}{
		{name: "string", field: "device_id", want: "cow-7"},
		{name: "double", field: "lat", want: "52.1"},
		{name: "timestamp", field: "ts", want: at(1000).String()},
		{name: "nullable set", field: "alt", want: "3.5"},
		{name: "nullable int", field: "satellites", want: "7"},
		{name: "nullable null", field: "hdop", want: "<nil>"},
		{name: "map", field: "attrs", want: "map[k:v]"},
		{name: "default", field: "replayed", want: "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(m[tt.field]); got != tt.want {
				t.Errorf("%s = %s (%T), want %s", tt.field, got, m[tt.field], tt.want)
			}
		})
	}
}

// TestConcurrent encodes and decodes from many goroutines on cold caches
// (run with -race).
func TestConcurrent(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	if _, err := Register(ctx, client, []string{topics.RawSensor, topics.RawGPS}); err != nil {
		t.Fatal(err)
	}
	s := newSerde(t, client)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				in := &SensorReading{EventID: fmt.Sprint(g, i), Value: float64(i), TS: at(int64(i)), IngestedAt: at(1), Attrs: map[string]string{}}
				b, err := s.Encode(ctx, topics.RawSensor, in)
				if err != nil {
					errs <- err
					return
				}
				var out SensorReading
				if _, err := s.Decode(ctx, b, &out); err != nil {
					errs <- err
					return
				}
				if !reflect.DeepEqual(&out, in) {
					errs <- fmt.Errorf("goroutine %d record %d differs", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHotPathMakesNoRegistryRequests counts registry requests after warm-up.
func TestHotPathMakesNoRegistryRequests(t *testing.T) {
	reg, client := newRegistry(t)
	ctx := testCtx(t)
	if _, err := Register(ctx, client, []string{topics.RawSensor}); err != nil {
		t.Fatal(err)
	}
	s := newSerde(t, client)
	in := &SensorReading{EventID: "e", TS: at(1), IngestedAt: at(2), Attrs: map[string]string{}}
	b, err := s.Encode(ctx, topics.RawSensor, in) // warm-up
	if err != nil {
		t.Fatal(err)
	}
	var requests int
	var mu sync.Mutex
	reg.Intercept(func(_ http.ResponseWriter, _ *http.Request) bool {
		mu.Lock()
		requests++
		mu.Unlock()
		return false
	})
	for range 100 {
		if _, err := s.Encode(ctx, topics.RawSensor, in); err != nil {
			t.Fatal(err)
		}
		var out SensorReading
		if _, err := s.Decode(ctx, b, &out); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.DecodeAny(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if requests != 0 {
		t.Errorf("%d registry requests after warm-up, want 0", requests)
	}
}
