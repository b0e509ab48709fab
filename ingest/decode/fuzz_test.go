package decode

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// fuzzDecoder checks that dec never panics and that every input ends either
// in records that encode with their topic's Avro schema or in an *Error
// with a stage and a reason (a dead letter).
func fuzzDecoder(f *testing.F, name, kind string, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	d, ok := Lookup(name)
	if !ok {
		f.Fatalf("no decoder %s", name)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		in := &Input{Tenant: "t", DeviceID: "d", Source: name, Kind: kind, Payload: payload, ReceivedAt: now}
		var out Output
		err := Decode(d.Func, in, DefaultLimits(), &out)
		if err != nil {
			var de *Error
			if !errors.As(err, &de) || de.Stage == "" || de.Reason == "" || de.Message == "" {
				t.Fatalf("rejection without stage/reason/message: %#v", err)
			}
			if Escape(de.Message) != de.Message || len(de.Message) > MaxMessage+len("…") {
				t.Fatalf("rejection message not escaped or not bounded: %q", de.Message)
			}
			return
		}
		if out.Len() == 0 {
			t.Fatal("accepted with no records")
		}
		checkAccepted(t, &out)
		enc := func(topic string, v any) {
			s, _ := schemas.ForTopic(topic)
			if _, err := avro.Marshal(s, v); err != nil {
				t.Fatalf("accepted record does not encode for %s: %v (%+v)", topic, err, v)
			}
		}
		for i := range out.Sensor {
			enc(topics.RawSensor, &out.Sensor[i])
		}
		for i := range out.GPS {
			enc(topics.RawGPS, &out.GPS[i])
		}
		for i := range out.Media {
			enc(topics.RawImage2D, &out.Media[i])
		}
	})
}

func FuzzDecodeSensor(f *testing.F) {
	fuzzDecoder(f, "sensor", "",
		`{"ts":"2026-05-01T11:59:00Z","metric":"temperature","value":38.6,"unit":"Cel"}`,
		`{"ts":1777636740000,"measurements":{"temperature":38.6,"activity":0.42}}`,
		`{"ts":1777636740000,"metric":"t","value":"NaN"}`,
		`{"ts":1777636740000,"metric":"t","value":1e999}`,
		`[{"bn":"a:","n":"b","v":1}]`, ``, `null`, "\xff", `{"ts":-1e30}`,
		// duplicate keys, underflow, far-off and odd times, hostile text
		`{"ts":1777636740000,"measurements":{"temp":1,"temp":2}}`, `{"ts":1777636740000,"metric":"t","value":1,"Value":2}`,
		`{"ts":1777636740000,"metric":"t","value":1e-400}`, `{"ts":"0000-01-01T00:00:00Z","metric":"t","value":1}`,
		`{"ts":"2026-04-30T23:59:60Z","metric":"t","value":1}`, `{"ts":"2026-05-01T12:00:00+24:00","metric":"t","value":1}`,
		`{"ts":-62135596800001,"metric":"t","value":1}`, `{"ts":1777636740000,"metric":"t\u202e\u001b[31m","value":1}`,
		`{"ts":1777636740000,"metric":"t","value":1,"device_id":"\ud800"}`, `{"ts":1777636740000,"measurements":{"a":1,"a\u0000":2}}`)
}

func FuzzDecodeSenML(f *testing.F) {
	fuzzDecoder(f, "senml", "",
		`[{"bn":"collar.","bt":1777636740,"bu":"Cel","n":"temp","v":38.5},{"n":"temp","t":30,"v":38.7},{"n":"moving","vb":true}]`,
		`[{"n":"x","s":1,"bs":2}]`, `[{"bver":10}]`, `[{"n":"a","u":"xx","v":1}]`, `[{"n":"a","t":1e300,"v":1}]`, `[null]`,
		`[{"n":"temp","v":1},{"n":"temp","v":2},{"n":"temp","v":3}]`, `[{"bt":-62135596800,"n":"a","v":1}]`,
		`[{"bt":1e308,"n":"a","t":1e308,"v":1}]`, `[{"bv":1e308,"n":"a","v":1e308}]`, `[{"n":"a","v":1,"v":2}]`,
		`[{"n":"a","t":-0.0001,"v":1},{"n":"a","t":-0.0002,"v":1}]`, `[{"n":"a","v":1e-400}]`)
}

func FuzzDecodeGPS(f *testing.F) {
	fuzzDecoder(f, "gps", "",
		`{"ts":"2026-05-01T11:59:00Z","lat":47.5,"lon":8.7,"alt":420,"hdop":0.9,"satellites":9,"speed":1.2}`,
		`{"ts":1777636740000,"lat":91,"lon":8}`, `{"ts":1777636740000,"lat":1,"lon":1,"satellites":1e10}`,
		`{"ts":1777636740000,"lat":1e-400,"lon":180}`, `{"":1,"ts":1777636740000,"lat":1,"lon":1,"":2}`, `{"ts":1777636740000,"lat":-90,"lon":1,"LAT":2}`,
		`{"ts":"9999-12-31T23:59:59-23:59","lat":1,"lon":1}`)
}

func FuzzDecodeMedia(f *testing.F) {
	fuzzDecoder(f, "media", "video3d",
		`{"ts":1777636740000,"bucket":"media","key":"a.mp4","size":12,"content_type":"video/mp4"}`,
		`{"ts":1777636740000,"bucket":"media","key":"a.mp4","size":1e300,"content_type":"video/mp4"}`)
}

func FuzzDecodeHeartbeat(f *testing.F) {
	fuzzDecoder(f, "heartbeat", "",
		`{"ts":1777636740000,"battery":87,"rssi":-71,"firmware":"1.4.2"}`, `{"ts":1777636740000,"uptime":null}`)
}

func FuzzDecodeEvent(f *testing.F) {
	fuzzDecoder(f, "event", "",
		`{"ts":1777636740000,"event":"tamper","severity":"warning","message":"case opened","value":1,"attrs":{"zone":"b"}}`,
		`{"ts":"2026-05-01T11:59:00Z","event":"button"}`,
		`[{"ts":1777636740000,"event":"door_open","value":0},{"ts":1777636741000,"event":"firmware_update_failed","value":-3,"severity":"critical","unit":"count"}]`,
		`{"ts":1777636740000,"event":"Tamper","severity":"urgent"}`, `{"ts":1777636740000,"event":"a","value":true}`,
		`[]`, `[null]`, `[[]]`, `{"ts":1777636740000,"event":"a.b-c_d","device_id":"d","message":"\u00e9"}`,
		`[{"ts":1777636740000,"event":"a"},{"ts":1777636740000,"event":"a"}]`, `{"ts":1777636740000,"event":"a","device":"d\u202e"}`)
}

func FuzzDecodeWildFiGPS(f *testing.F) {
	fuzzDecoder(f, "wildfi-gps", "gnss",
		`{"timestamp":1777636740000,"latitude":47.1,"lng":8.2,"sats":7,"fix":"3d"}`,
		`[{"ts":1777636740000,"lat":47.1,"lon":8.2},{"ts":1777636741000,"lat":47.2,"lon":8.3}]`,
		`[{"ts":1777636740000,"lat":1,"lon":1},{"time":1777636740000,"lat":2,"lon":2}]`, `{"ts":1777636740000,"lat":1,"latitude":2,"lon":1}`)
}

func FuzzDecodeWildFiSensor(f *testing.F) {
	fuzzDecoder(f, "wildfi-sensor", "imu",
		`{"ts":1777636740000,"hz":10,"ax":[0.1,0.2],"ay":[0,0],"temp":{"c":21.5},"mode":"burst"}`,
		`{"ts":1777636740000,"hz":1e-300,"ax":[1,2]}`, `[{"time":"2026-05-01T11:59:00Z","a":{"b":{"c":[1]}}}]`,
		`{"ts":1777636740000,"ax":[1,2,3]}`, `{"ts":1777636740000,"hz":1001,"ax":[1,2]}`, `{"ts":1777636740000,"hz":1e-400,"ax":[1,2]}`,
		`{"ts":1777636740000,"t":{"c":1},"t.c":2}`, `{"ts":1777636740000,"a":{"b":"x"},"a.b":"y","n":1}`,
		`{"ts":1777636740000,"timestamp":1,"t":1}`, `{"ts":"9999-12-31T23:59:59.999Z","hz":1,"ax":[1,2]}`, `{"ts":1777636740000,"t\u2066":1}`)
}

// checkAccepted checks what every accepted message must satisfy: times in
// the years 0001-9999, finite values, printable metric names, and no two
// records that the sink would merge into one row.
func checkAccepted(t *testing.T, out *Output) {
	t.Helper()
	seen := map[readingKey]bool{}
	for _, r := range out.Sensor {
		if r.TS.Before(minTS) || r.TS.After(maxTS) || !finite(r.Value) || Escape(r.Metric) != r.Metric {
			t.Fatalf("accepted reading out of range: %+v", r)
		}
		k := readingKey{r.Metric, r.TS.UnixMilli()}
		if seen[k] {
			t.Fatalf("accepted two readings of %q at %v", r.Metric, r.TS)
		}
		seen[k] = true
	}
	fixes := map[int64]bool{}
	for _, g := range out.GPS {
		if g.TS.Before(minTS) || g.TS.After(maxTS) || fixes[g.TS.UnixMilli()] {
			t.Fatalf("accepted fix out of range or at a repeated time: %+v", g)
		}
		fixes[g.TS.UnixMilli()] = true
	}
}

// FuzzSensorFastPath checks that the reflection-free sensor decoder, when
// it accepts an input, decodes it exactly as encoding/json does.
func FuzzSensorFastPath(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-05-01T11:59:00Z","metric":"temperature","value":38.6,"unit":"Cel"}`,
		`{"ts":1777636740000,"metric":"t","value":1,"attrs":{"a":"b","c":"d"},"extra":[1,{"x":"}"}]}`,
		`{"ts":1,"Metric":"t","value":1}`, `{"ts":1,"metric":null,"unit":null,"attrs":null}`,
		`{"ts":1,"metric":"a\"b","value":1}`, `{"ts":1,"metric":"t","metric":"u"}`, `{}`, ` { "ts" : 1 , "value" : -1e5 } `,
		`{"device_id":"x","device":7,"value":"s"}`, `{"attrs":{}}`, `{"attrs":{"a":1}}`, `{"tſ":1}`,
		`{"ts":1,"tſ":2}`, `{"value":1,"VALUE":2}`, `{"attrs":{"a":"x","a":"y"}}`, `{"x":1,"x":2,"ts":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast sensorJSON
		if !fastSensor(b, &fast) {
			return
		}
		var slow sensorJSON
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("fast path accepted what encoding/json rejects (%v): %q", err, b)
		}
		if err := checkKeys(b, &sensorKeys); err != nil {
			t.Fatalf("fast path accepted a payload the general path refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(normalise(fast), normalise(slow)) {
			t.Fatalf("fast path differs for %q:\nfast %+v\nslow %+v", b, fast, slow)
		}
	})
}

// normalise makes RawMessage fields comparable (nil and empty alike).
func normalise(p sensorJSON) sensorJSON {
	for _, r := range []*json.RawMessage{&p.TS, &p.Value, &p.DeviceID, &p.Device} {
		if len(*r) == 0 {
			*r = nil
		}
	}
	return p
}

// FuzzEscape checks that Escape's result is printable, valid UTF-8 and
// stable, and that printable input comes back unchanged.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"plain", "a\u202eb", "\x1b[31m", "\x00", "\xff\xfe", "\xed\xa0\x80", "é\u0085", "\U000e0001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q is not UTF-8", s, e)
		}
		for _, r := range e {
			if !strconv.IsPrint(r) {
				t.Fatalf("Escape(%q) = %q keeps %U", s, e, r)
			}
		}
		if Escape(e) != e {
			t.Fatalf("Escape is not stable on %q", e)
		}
		if strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) < 0 && utf8.ValidString(s) && e != s {
			t.Fatalf("Escape changed printable %q to %q", s, e)
		}
	})
}
