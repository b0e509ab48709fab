package decode

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

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
			return
		}
		if out.Len() == 0 {
			t.Fatal("accepted with no records")
		}
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
		`[{"bn":"a:","n":"b","v":1}]`, ``, `null`, "\xff", `{"ts":-1e30}`)
}

func FuzzDecodeSenML(f *testing.F) {
	fuzzDecoder(f, "senml", "",
		`[{"bn":"collar.","bt":1777636740,"bu":"Cel","n":"temp","v":38.5},{"n":"temp","t":30,"v":38.7},{"n":"moving","vb":true}]`,
		`[{"n":"x","s":1,"bs":2}]`, `[{"bver":10}]`, `[{"n":"a","u":"xx","v":1}]`, `[{"n":"a","t":1e300,"v":1}]`, `[null]`)
}

func FuzzDecodeGPS(f *testing.F) {
	fuzzDecoder(f, "gps", "",
		`{"ts":"2026-05-01T11:59:00Z","lat":47.5,"lon":8.7,"alt":420,"hdop":0.9,"satellites":9,"speed":1.2}`,
		`{"ts":1777636740000,"lat":91,"lon":8}`, `{"ts":1777636740000,"lat":1,"lon":1,"satellites":1e10}`)
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
		`[]`, `[null]`, `[[]]`, `{"ts":1777636740000,"event":"a.b-c_d","device_id":"d","message":"\u00e9"}`)
}

func FuzzDecodeWildFiGPS(f *testing.F) {
	fuzzDecoder(f, "wildfi-gps", "gnss",
		`{"timestamp":1777636740000,"latitude":47.1,"lng":8.2,"sats":7,"fix":"3d"}`,
		`[{"ts":1777636740000,"lat":47.1,"lon":8.2},{"ts":1777636741000,"lat":47.2,"lon":8.3}]`)
}

func FuzzDecodeWildFiSensor(f *testing.F) {
	fuzzDecoder(f, "wildfi-sensor", "imu",
		`{"ts":1777636740000,"hz":10,"ax":[0.1,0.2],"ay":[0,0],"temp":{"c":21.5},"mode":"burst"}`,
		`{"ts":1777636740000,"hz":1e-300,"ax":[1,2]}`, `[{"time":"2026-05-01T11:59:00Z","a":{"b":{"c":[1]}}}]`)
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
