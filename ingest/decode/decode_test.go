package decode

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func input(source, kind, payload string) *Input {
	return &Input{Tenant: "farm1", DeviceID: "cow-7", Source: source, Kind: kind, Payload: []byte(payload), ReceivedAt: now}
}

func TestDecode(t *testing.T) {
	big := `{"ts":1777636800000,"metric":"t","value":1,"attrs":{"x":"` + strings.Repeat("a", DefaultMaxPayload) + `"}}`
	tests := []struct {
		name    string
		decoder string
		kind    string
		payload string
		records int    // expected record count when no error
		reason  Reason // expected rejection reason
		stage   Stage
		errSub  string // expected substring of the message
		check   func(t *testing.T, out *Output)
	}{
		{name: "sensor single rfc3339", decoder: "sensor", payload: `{"ts":"2026-05-01T11:59:00Z","metric":"temperature","value":38.6,"unit":"Cel"}`, records: 1,
			check: func(t *testing.T, out *Output) {
				r := out.Sensor[0]
				if r.Metric != "temperature" || r.Value != 38.6 || *r.Unit != "Cel" || !r.TS.Equal(now.Add(-time.Minute)) || r.Tenant != "farm1" || r.DeviceID != "cow-7" || r.Source != "sensor" || !r.IngestedAt.Equal(now) {
					t.Errorf("record = %+v", r)
				}
				if len(r.EventID) != 32 {
					t.Errorf("event id %q", r.EventID)
				}
			}},
		{name: "sensor epoch millis", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"temperature","value":38}`, records: 1,
			check: func(t *testing.T, out *Output) {
				if !out.Sensor[0].TS.Equal(now.Add(-time.Minute)) || out.Sensor[0].Unit != nil {
					t.Errorf("record = %+v", out.Sensor[0])
				}
			}},
		{name: "sensor measurements", decoder: "sensor", payload: `{"ts":1777636740000,"measurements":{"temperature":38.6,"activity":0.42},"units":{"temperature":"Cel"}}`, records: 2,
			check: func(t *testing.T, out *Output) {
				if out.Sensor[0].Metric != "activity" || out.Sensor[1].Metric != "temperature" || *out.Sensor[1].Unit != "Cel" || out.Sensor[0].Unit != nil {
					t.Errorf("records = %+v", out.Sensor)
				}
				if out.Sensor[0].EventID == out.Sensor[1].EventID {
					t.Error("same event id for two measurements")
				}
			}},
		{name: "sensor same device named", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":1,"device_id":"cow-7"}`, records: 1},
		{name: "senml via sensor", decoder: "sensor", payload: `[{"bn":"collar.","bt":1777636740,"bu":"Cel","n":"temp","v":38.5},{"n":"temp","t":30,"v":38.7},{"n":"moving","vb":true}]`, records: 3,
			check: func(t *testing.T, out *Output) {
				a, b, c := out.Sensor[0], out.Sensor[1], out.Sensor[2]
				if a.Metric != "collar.temp" || !a.TS.Equal(now.Add(-time.Minute)) || *a.Unit != "Cel" || a.Value != 38.5 {
					t.Errorf("a = %+v", a)
				}
				if !b.TS.Equal(now.Add(-30*time.Second)) || b.Value != 38.7 {
					t.Errorf("b = %+v", b)
				}
				if c.Value != 1 || c.Attrs["senml.type"] != "boolean" {
					t.Errorf("c = %+v", c)
				}
			}},
		{name: "senml relative time", decoder: "senml", payload: `[{"n":"battery","u":"%","v":80,"t":-60}]`, records: 1,
			check: func(t *testing.T, out *Output) {
				if !out.Sensor[0].TS.Equal(now.Add(-time.Minute)) {
					t.Errorf("ts = %v", out.Sensor[0].TS)
				}
			}},
		{name: "senml no time is now", decoder: "senml", payload: `[{"n":"x","v":1}]`, records: 1,
			check: func(t *testing.T, out *Output) {
				if !out.Sensor[0].TS.Equal(now) {
					t.Errorf("ts = %v", out.Sensor[0].TS)
				}
			}},
		{name: "senml base value and sum", decoder: "senml", payload: `[{"bn":"m:","bv":10,"bs":100},{"n":"a","v":1},{"n":"b","s":5}]`, records: 2,
			check: func(t *testing.T, out *Output) {
				if out.Sensor[0].Value != 11 || out.Sensor[1].Value != 105 || out.Sensor[1].Attrs["senml.type"] != "sum" {
					t.Errorf("records = %+v", out.Sensor)
				}
			}},
		{name: "senml base only record skipped", decoder: "senml", payload: `[{"bn":"d:","bt":1777636740},{"n":"a","v":1}]`, records: 1},
		{name: "senml bver 10", decoder: "senml", payload: `[{"bver":10,"n":"a","v":1}]`, records: 1},
		{name: "gps full", decoder: "gps", payload: `{"ts":"2026-05-01T11:59:00Z","lat":47.5,"lon":8.7,"alt":420,"hdop":0.9,"satellites":9,"speed":1.2}`, records: 1,
			check: func(t *testing.T, out *Output) {
				g := out.GPS[0]
				if g.Lat != 47.5 || g.Lon != 8.7 || *g.Alt != 420 || *g.HDOP != 0.9 || *g.Satellites != 9 || *g.Speed != 1.2 {
					t.Errorf("fix = %+v", g)
				}
			}},
		{name: "gps minimal", decoder: "gps", payload: `{"ts":1777636740000,"lat":-33.9,"lon":151.2}`, records: 1,
			check: func(t *testing.T, out *Output) {
				if out.GPS[0].Alt != nil || out.GPS[0].Satellites != nil {
					t.Errorf("fix = %+v", out.GPS[0])
				}
			}},
		{name: "media", decoder: "media", kind: "image2d", payload: `{"ts":1777636740000,"bucket":"media","key":"farm1/cow-7/a.jpg","size":123456,"content_type":"image/jpeg","sha256":"` + strings.Repeat("ab", 32) + `"}`, records: 1,
			check: func(t *testing.T, out *Output) {
				m := out.Media[0]
				if m.Kind != "image2d" || m.Bucket != "media" || m.Size != 123456 || *m.SHA256 != strings.Repeat("ab", 32) {
					t.Errorf("media = %+v", m)
				}
			}},
		{name: "heartbeat", decoder: "heartbeat", payload: `{"ts":1777636740000,"battery":87,"rssi":-71,"firmware":"1.4.2"}`, records: 3,
			check: func(t *testing.T, out *Output) {
				if out.Sensor[0].Metric != "heartbeat" || out.Sensor[0].Attrs["firmware"] != "1.4.2" || out.Sensor[1].Metric != "battery" || *out.Sensor[1].Unit != "%" || out.Sensor[2].Metric != "rssi" || out.Sensor[2].Value != -71 {
					t.Errorf("records = %+v", out.Sensor)
				}
			}},
		{name: "heartbeat bare", decoder: "heartbeat", payload: `{"ts":1777636740000}`, records: 1},
		{name: "event full", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","severity":"warning","message":"case opened","value":2,"unit":"count","attrs":{"zone":"b"}}`, records: 1,
			check: func(t *testing.T, out *Output) {
				r := out.Sensor[0]
				if r.Metric != "event.tamper" || r.Value != 2 || r.Unit == nil || *r.Unit != "count" || !r.TS.Equal(now.Add(-time.Minute)) || r.Source != "event" {
					t.Errorf("record = %+v", r)
				}
				if len(r.Attrs) != 3 || r.Attrs["severity"] != "warning" || r.Attrs["message"] != "case opened" || r.Attrs["zone"] != "b" {
					t.Errorf("attrs = %v", r.Attrs)
				}
			}},
		{name: "event minimal defaults", decoder: "event", payload: `{"ts":"2026-05-01T11:59:00Z","event":"button"}`, records: 1,
			check: func(t *testing.T, out *Output) {
				r := out.Sensor[0]
				if r.Metric != "event.button" || r.Value != 1 || r.Unit != nil || len(r.Attrs) != 1 || r.Attrs["severity"] != "info" {
					t.Errorf("record = %+v", r)
				}
			}},
		{name: "event nulls are defaults", decoder: "event", payload: `{"ts":1777636740000,"event":"door_open","value":null,"severity":null,"message":null,"unit":null,"attrs":null,"device_id":null}`, records: 1,
			check: func(t *testing.T, out *Output) {
				r := out.Sensor[0]
				if r.Value != 1 || r.Attrs["severity"] != "info" || r.Attrs["message"] != "" || r.Unit != nil {
					t.Errorf("record = %+v", r)
				}
			}},
		{name: "event value zero and negative", decoder: "event", payload: `[{"ts":1777636740000,"event":"door_open","value":0},{"ts":1777636741000,"event":"firmware_update_failed","value":-3,"severity":"critical"}]`, records: 2,
			check: func(t *testing.T, out *Output) {
				a, b := out.Sensor[0], out.Sensor[1]
				if a.Metric != "event.door_open" || a.Value != 0 || b.Metric != "event.firmware_update_failed" || b.Value != -3 || b.Attrs["severity"] != "critical" {
					t.Errorf("records = %+v", out.Sensor)
				}
				if !b.TS.Equal(now.Add(-59 * time.Second)) {
					t.Errorf("second ts = %v", b.TS)
				}
			}},
		{name: "event array same name and ts", decoder: "event", payload: `[{"ts":1777636740000,"event":"button"},{"ts":1777636740000,"event":"button"}]`, reason: ReasonDuplicateTimestamp, stage: StageValidate, errSub: `metric "event.button" has two values at ts 2026-05-01T11:59:00Z (records 0 and 1 of the message)`},
		{name: "event array same name distinct ids", decoder: "event", payload: `[{"ts":1777636740000,"event":"button"},{"ts":1777636740001,"event":"button"}]`, records: 2,
			check: func(t *testing.T, out *Output) {
				if out.Sensor[0].EventID == out.Sensor[1].EventID {
					t.Error("two events of one array share an event id")
				}
			}},
		{name: "event top-level fields win over attrs", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","severity":"critical","message":"m","attrs":{"severity":"info","message":"x","k":"v"}}`, records: 1,
			check: func(t *testing.T, out *Output) {
				a := out.Sensor[0].Attrs
				if a["severity"] != "critical" || a["message"] != "m" || a["k"] != "v" {
					t.Errorf("attrs = %v", a)
				}
			}},
		{name: "event attrs severity kept when top-level absent is default", decoder: "event", payload: `{"ts":1777636740000,"event":"x","attrs":{"severity":"bogus"}}`, records: 1,
			check: func(t *testing.T, out *Output) {
				if out.Sensor[0].Attrs["severity"] != "info" {
					t.Errorf("attrs = %v", out.Sensor[0].Attrs)
				}
			}},
		{name: "event name charset", decoder: "event", payload: `{"ts":1777636740000,"event":"0a.b-c_d","device":"cow-7","message":"` + strings.Repeat("é", MaxEventMessage) + `"}`, records: 1},
		{name: "event name 64 bytes", decoder: "event", payload: `{"ts":1777636740000,"event":"` + strings.Repeat("a", 64) + `"}`, records: 1},
		{name: "event empty message omitted", decoder: "event", payload: `{"ts":1777636740000,"event":"a","message":"","severity":""}`, records: 1,
			check: func(t *testing.T, out *Output) {
				if _, ok := out.Sensor[0].Attrs["message"]; ok || out.Sensor[0].Attrs["severity"] != "info" {
					t.Errorf("attrs = %v", out.Sensor[0].Attrs)
				}
			}},
		{name: "wildfi gps", decoder: "wildfi-gps", kind: "gnss", payload: `{"timestamp":1777636740000,"latitude":47.1,"lng":8.2,"sats":7,"fix":"3d"}`, records: 1,
			check: func(t *testing.T, out *Output) {
				g := out.GPS[0]
				if g.Lat != 47.1 || g.Lon != 8.2 || *g.Satellites != 7 || g.Attrs["fix"] != "3d" {
					t.Errorf("fix = %+v", g)
				}
			}},
		{name: "wildfi gps batch", decoder: "wildfi-gps", kind: "gps", payload: `[{"ts":1777636740000,"lat":47.1,"lon":8.2},{"ts":1777636741000,"lat":47.2,"lon":8.3}]`, records: 2},
		{name: "wildfi imu", decoder: "wildfi-sensor", kind: "imu", payload: `{"ts":1777636740000,"hz":10,"ax":[0.1,0.2],"ay":[0,0],"temp":{"c":21.5},"mode":"burst"}`, records: 5,
			check: func(t *testing.T, out *Output) {
				var names []string
				for _, r := range out.Sensor {
					names = append(names, r.Metric)
				}
				if strings.Join(names, ",") != "imu.ax,imu.ax,imu.ay,imu.ay,imu.temp.c" {
					t.Errorf("metrics = %v", names)
				}
				if !out.Sensor[1].TS.Equal(now.Add(-time.Minute+100*time.Millisecond)) || out.Sensor[1].Attrs["index"] != "1" || out.Sensor[1].Attrs["mode"] != "burst" {
					t.Errorf("second = %+v", out.Sensor[1])
				}
			}},
		{name: "wildfi env", decoder: "wildfi-sensor", kind: "env", payload: `{"ts":"2026-05-01T11:59:00Z","temperature":18.2,"humidity":55,"pressure":1013.2}`, records: 3},

		// Bad input classes.
		{name: "empty", decoder: "sensor", payload: ``, reason: ReasonEmptyPayload, stage: StageDecode},
		{name: "too large", decoder: "sensor", payload: big, reason: ReasonPayloadTooLarge, stage: StageDecode, errSub: "limit 262144"},
		{name: "not utf8", decoder: "sensor", payload: "{\"metric\":\"\xff\"}", reason: ReasonNotUTF8, stage: StageDecode, errSub: "offset 11"},
		{name: "not json", decoder: "sensor", payload: `temperature=38`, reason: ReasonNotJSON, stage: StageDecode},
		{name: "truncated json", decoder: "gps", payload: `{"ts":1,"lat":`, reason: ReasonNotJSON, stage: StageDecode},
		{name: "wrong shape string", decoder: "sensor", payload: `"hello"`, reason: ReasonWrongShape, stage: StageDecode, errSub: "JSON object"},
		{name: "wrong shape metric number", decoder: "sensor", payload: `{"ts":1777636740000,"metric":5,"value":1}`, reason: ReasonWrongShape, stage: StageDecode, errSub: `"metric"`},
		{name: "wrong shape both forms", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"a","value":1,"measurements":{"b":2}}`, reason: ReasonWrongShape},
		{name: "missing ts", decoder: "sensor", payload: `{"metric":"t","value":1}`, reason: ReasonMissingField, stage: StageDecode, errSub: "ts is missing"},
		{name: "missing metric", decoder: "sensor", payload: `{"ts":1777636740000,"value":1}`, reason: ReasonMissingField, errSub: "metric is missing"},
		{name: "missing value", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t"}`, reason: ReasonMissingField, errSub: "value is missing"},
		{name: "bad ts string", decoder: "sensor", payload: `{"ts":"yesterday","metric":"t","value":1}`, reason: ReasonInvalidTS, stage: StageDecode},
		{name: "value string", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":"38.6"}`, reason: ReasonInvalidValue, stage: StageValidate, errSub: "string"},
		{name: "value NaN", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":"NaN"}`, reason: ReasonInvalidValue},
		{name: "value Infinity literal", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":Infinity}`, reason: ReasonNotJSON},
		{name: "value overflow", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":1e999}`, reason: ReasonInvalidValue, errSub: "Infinity"},
		{name: "value null", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":null}`, reason: ReasonInvalidValue, errSub: "null"},
		{name: "measurement null", decoder: "sensor", payload: `{"ts":1777636740000,"measurements":{"a":null}}`, reason: ReasonInvalidValue, errSub: "measurements.a"},
		{name: "empty measurements", decoder: "sensor", payload: `{"ts":1777636740000,"measurements":{}}`, reason: ReasonNoRecords},
		{name: "empty metric", decoder: "sensor", payload: `{"ts":1777636740000,"metric":" ","value":1}`, reason: ReasonEmptyMetric, stage: StageValidate},
		{name: "lat out of range", decoder: "gps", payload: `{"ts":1777636740000,"lat":91,"lon":8}`, reason: ReasonOutOfRange, stage: StageValidate, errSub: "latitude"},
		{name: "lon out of range", decoder: "gps", payload: `{"ts":1777636740000,"lat":47,"lon":-180.5}`, reason: ReasonOutOfRange, errSub: "longitude"},
		{name: "gps missing lat", decoder: "gps", payload: `{"ts":1777636740000,"lon":8}`, reason: ReasonMissingField, errSub: "lat"},
		{name: "ts in future", decoder: "sensor", payload: `{"ts":"2026-05-01T12:10:00Z","metric":"t","value":1}`, reason: ReasonTSFuture, stage: StageValidate},
		{name: "ts too old", decoder: "sensor", payload: `{"ts":"2025-01-01T00:00:00Z","metric":"t","value":1}`, reason: ReasonTSTooOld, stage: StageValidate},
		{name: "ts seconds not millis", decoder: "sensor", payload: `{"ts":1777636740,"metric":"t","value":1}`, reason: ReasonTSTooOld, errSub: "not seconds"},
		{name: "device mismatch", decoder: "sensor", payload: `{"ts":1777636740000,"metric":"t","value":1,"device_id":"cow-8"}`, reason: ReasonDeviceMismatch, stage: StageValidate, errSub: `"cow-8"`},
		{name: "device mismatch device field", decoder: "gps", payload: `{"ts":1777636740000,"lat":1,"lon":1,"device":"x"}`, reason: ReasonDeviceMismatch},
		{name: "wildfi device mismatch", decoder: "wildfi-sensor", kind: "imu", payload: `{"ts":1777636740000,"device_id":"other","ax":1}`, reason: ReasonDeviceMismatch},
		{name: "senml unknown unit", decoder: "senml", payload: `[{"n":"temp","u":"Celsius","v":1}]`, reason: ReasonSenMLUnknownUnit, stage: StageDecode, errSub: `"Celsius"`},
		{name: "senml unknown base unit", decoder: "senml", payload: `[{"bu":"furlong","n":"d","v":1}]`, reason: ReasonSenMLUnknownUnit},
		{name: "senml missing name", decoder: "senml", payload: `[{"u":"Cel","v":1}]`, reason: ReasonSenMLMissingName, stage: StageDecode},
		{name: "senml invalid name", decoder: "senml", payload: `[{"n":"-bad name","v":1}]`, reason: ReasonSenMLInvalidName},
		{name: "senml string value", decoder: "senml", payload: `[{"n":"status","vs":"ok"}]`, reason: ReasonSenMLUnsupported},
		{name: "senml must understand", decoder: "senml", payload: `[{"n":"a","v":1,"foo_":1}]`, reason: ReasonSenMLUnsupported, errSub: "foo_"},
		{name: "senml bver 11", decoder: "senml", payload: `[{"bver":11,"n":"a","v":1}]`, reason: ReasonSenMLUnsupported},
		{name: "senml no value", decoder: "senml", payload: `[{"n":"a"}]`, reason: ReasonMissingField},
		{name: "senml value null", decoder: "senml", payload: `[{"n":"a","v":null}]`, reason: ReasonInvalidValue},
		{name: "senml empty pack", decoder: "senml", payload: `[]`, reason: ReasonNoRecords},
		{name: "senml object not array", decoder: "senml", payload: `{"n":"a"}`, reason: ReasonWrongShape},
		{name: "senml element not object", decoder: "senml", payload: `[1]`, reason: ReasonWrongShape},
		{name: "media unknown kind", decoder: "media", kind: "image4d", payload: `{}`, reason: ReasonUnknownChannel, stage: StageRoute},
		{name: "media missing bucket", decoder: "media", kind: "video2d", payload: `{"ts":1777636740000,"key":"k","size":1,"content_type":"video/mp4"}`, reason: ReasonMissingField, errSub: "bucket"},
		{name: "media negative size", decoder: "media", kind: "video2d", payload: `{"ts":1777636740000,"bucket":"b","key":"k","size":-1,"content_type":"video/mp4"}`, reason: ReasonInvalidValue},
		{name: "media bad sha", decoder: "media", kind: "video2d", payload: `{"ts":1777636740000,"bucket":"b","key":"k","size":1,"content_type":"video/mp4","sha256":"xyz"}`, reason: ReasonInvalidValue},
		{name: "heartbeat battery string", decoder: "heartbeat", payload: `{"ts":1777636740000,"battery":"full"}`, reason: ReasonInvalidValue},
		{name: "event missing name", decoder: "event", payload: `{"ts":1777636740000,"severity":"warning"}`, reason: ReasonMissingField, stage: StageDecode, errSub: "event (the event's name"},
		{name: "event blank name", decoder: "event", payload: `{"ts":1777636740000,"event":"  "}`, reason: ReasonMissingField, errSub: "missing or empty"},
		{name: "event null name", decoder: "event", payload: `{"ts":1777636740000,"event":null}`, reason: ReasonMissingField},
		{name: "event name number", decoder: "event", payload: `{"ts":1777636740000,"event":42}`, reason: ReasonWrongShape, stage: StageDecode, errSub: `"event"`},
		{name: "event name upper case", decoder: "event", payload: `{"ts":1777636740000,"event":"Tamper"}`, reason: ReasonEventInvalidName, stage: StageDecode, errSub: `character "T" at offset 0`},
		{name: "event name space", decoder: "event", payload: `{"ts":1777636740000,"event":"door open"}`, reason: ReasonEventInvalidName, errSub: `" " at offset 4`},
		{name: "event name leading dot", decoder: "event", payload: `{"ts":1777636740000,"event":".x"}`, reason: ReasonEventInvalidName},
		{name: "event name unicode", decoder: "event", payload: `{"ts":1777636740000,"event":"tür"}`, reason: ReasonEventInvalidName, errSub: `"ü"`},
		{name: "event name too long", decoder: "event", payload: `{"ts":1777636740000,"event":"` + strings.Repeat("a", 65) + `"}`, reason: ReasonEventInvalidName, errSub: "65 bytes, limit 64"},
		{name: "event bad severity", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","severity":"urgent"}`, reason: ReasonEventInvalidSeverity, stage: StageDecode, errSub: `"urgent" is not one of info, warning, critical`},
		{name: "event severity upper case", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","severity":"WARNING"}`, reason: ReasonEventInvalidSeverity},
		{name: "event severity number", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","severity":2}`, reason: ReasonWrongShape, errSub: `"severity"`},
		{name: "event message too long", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","message":"` + strings.Repeat("x", MaxEventMessage+1) + `"}`, reason: ReasonEventMessageTooLong, stage: StageDecode, errSub: "257 characters, limit 256"},
		{name: "event message object", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","message":{"a":1}}`, reason: ReasonWrongShape},
		{name: "event value string", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","value":"1"}`, reason: ReasonInvalidValue, stage: StageValidate, errSub: "value is a string"},
		{name: "event value boolean", decoder: "event", payload: `{"ts":1777636740000,"event":"door_open","value":true}`, reason: ReasonInvalidValue, errSub: "boolean"},
		{name: "event value overflow", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","value":1e999}`, reason: ReasonInvalidValue, errSub: "Infinity"},
		{name: "event device mismatch", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","device_id":"cow-8"}`, reason: ReasonDeviceMismatch, stage: StageValidate, errSub: `"cow-8"`},
		{name: "event missing ts", decoder: "event", payload: `{"event":"tamper"}`, reason: ReasonMissingField, errSub: "ts is missing"},
		{name: "event bad ts", decoder: "event", payload: `{"ts":"soon","event":"tamper"}`, reason: ReasonInvalidTS},
		{name: "event ts future", decoder: "event", payload: `{"ts":"2026-05-02T00:00:00Z","event":"tamper"}`, reason: ReasonTSFuture, stage: StageValidate},
		{name: "event ts seconds", decoder: "event", payload: `{"ts":1777636740,"event":"tamper"}`, reason: ReasonTSTooOld, errSub: "not seconds"},
		{name: "event attrs not strings", decoder: "event", payload: `{"ts":1777636740000,"event":"tamper","attrs":{"zone":2}}`, reason: ReasonWrongShape, errSub: "attrs"},
		{name: "event not json", decoder: "event", payload: `tamper!`, reason: ReasonNotJSON},
		{name: "event trailing data", decoder: "event", payload: `{"ts":1777636740000,"event":"a"} {}`, reason: ReasonNotJSON},
		{name: "event string payload", decoder: "event", payload: `"tamper"`, reason: ReasonWrongShape, errSub: "event payload must be a JSON object"},
		{name: "event empty array", decoder: "event", payload: ` [ ]`, reason: ReasonNoRecords, stage: StageValidate},
		{name: "event array of numbers", decoder: "event", payload: `[1]`, reason: ReasonWrongShape, errSub: "event 0 of the array is a number"},
		{name: "event array with null", decoder: "event", payload: `[{"ts":1777636740000,"event":"a"},null]`, reason: ReasonWrongShape, errSub: "event 1 of the array is null"},
		{name: "event array element bad severity", decoder: "event", payload: `[{"ts":1777636740000,"event":"a"},{"ts":1777636740000,"event":"b","severity":"meh"}]`, reason: ReasonEventInvalidSeverity, errSub: "event 1 of the array: severity"},
		{name: "event array nested", decoder: "event", payload: `[[{"ts":1777636740000,"event":"a"}]]`, reason: ReasonWrongShape, errSub: "an array"},
		{name: "event array truncated", decoder: "event", payload: `[{"ts":1777636740000,"event":"a"}`, reason: ReasonNotJSON},
		{name: "wildfi not object", decoder: "wildfi-gps", kind: "gps", payload: `42`, reason: ReasonWrongShape},
		{name: "wildfi trailing data", decoder: "wildfi-gps", kind: "gps", payload: `{"ts":1} {}`, reason: ReasonNotJSON},
		{name: "wildfi missing ts", decoder: "wildfi-sensor", kind: "env", payload: `{"t":1}`, reason: ReasonMissingField},
		{name: "wildfi no numbers", decoder: "wildfi-sensor", kind: "meta", payload: `{"ts":1777636740000,"fw":"x"}`, reason: ReasonNoRecords},
		{name: "wildfi string in array", decoder: "wildfi-sensor", kind: "imu", payload: `{"ts":1777636740000,"hz":10,"ax":[1,"x"]}`, reason: ReasonInvalidValue, errSub: "imu.ax[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := Lookup(tc.decoder)
			if !ok {
				t.Fatalf("no decoder %q", tc.decoder)
			}
			src := tc.decoder
			if tc.kind != "" {
				src += "/" + tc.kind
			}
			var out Output
			err := Decode(d.Func, input(src, tc.kind, tc.payload), DefaultLimits(), &out)
			if tc.reason != "" {
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("err = %v, want reason %s", err, tc.reason)
				}
				if de.Reason != tc.reason {
					t.Fatalf("reason = %s (%v), want %s", de.Reason, err, tc.reason)
				}
				if tc.stage != "" && de.Stage != tc.stage {
					t.Errorf("stage = %s, want %s", de.Stage, tc.stage)
				}
				if !strings.Contains(err.Error(), tc.errSub) {
					t.Errorf("err %q does not contain %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if out.Len() != tc.records {
				t.Fatalf("got %d records, want %d: %+v", out.Len(), tc.records, out)
			}
			if tc.check != nil {
				tc.check(t, &out)
			}
		})
	}
}

func TestEventIDDeterministic(t *testing.T) {
	d, _ := Lookup("sensor")
	p := `{"ts":1777636740000,"measurements":{"a":1,"b":2}}`
	var o1, o2 Output
	if err := Decode(d.Func, input("sensor", "", p), DefaultLimits(), &o1); err != nil {
		t.Fatal(err)
	}
	in2 := input("sensor", "", p)
	in2.ReceivedAt = now.Add(time.Hour) // a redelivery, later
	if err := Decode(d.Func, in2, DefaultLimits(), &o2); err != nil {
		t.Fatal(err)
	}
	for i := range o1.Sensor {
		if o1.Sensor[i].EventID != o2.Sensor[i].EventID {
			t.Errorf("record %d: ids differ across redelivery", i)
		}
	}
	in3 := input("sensor", "", p)
	in3.DeviceID = "cow-8"
	var o3 Output
	if err := Decode(d.Func, in3, DefaultLimits(), &o3); err != nil {
		t.Fatal(err)
	}
	if o3.Sensor[0].EventID == o1.Sensor[0].EventID {
		t.Error("different devices share an event id")
	}
}

func TestSenMLUnitsIncludeCommon(t *testing.T) {
	for _, u := range []string{"Cel", "%", "%RH", "m/s2", "dBm", "V", "lat", "lon", "count", "ppm"} {
		if !SenMLUnit(u) {
			t.Errorf("unit %q not accepted", u)
		}
	}
}

// TestEventArrayErrorNamesElement checks that a rejected event inside an
// array names the element in the field and the message.
func TestEventArrayErrorNamesElement(t *testing.T) {
	d, _ := Lookup("event")
	var out Output
	err := Decode(d.Func, input("events", "", `[{"ts":1777636740000,"event":"a"},{"ts":1777636740000,"event":"b","value":"x"}]`), DefaultLimits(), &out)
	var de *Error
	if !errors.As(err, &de) || de.Reason != ReasonInvalidValue || de.Field != "[1].value" || !strings.HasPrefix(de.Message, "event 1 of the array: value") {
		t.Fatalf("err = %#v", err)
	}
	// Deterministic ids: the same message gives the same ids, another
	// index another id.
	p := `[{"ts":1777636740000,"event":"a"},{"ts":1777636740001,"event":"a"}]`
	var o1, o2 Output
	if err := Decode(d.Func, input("events", "", p), DefaultLimits(), &o1); err != nil {
		t.Fatal(err)
	}
	in2 := input("events", "", p)
	in2.ReceivedAt = now.Add(time.Hour)
	if err := Decode(d.Func, in2, DefaultLimits(), &o2); err != nil {
		t.Fatal(err)
	}
	if o1.Sensor[0].EventID != o2.Sensor[0].EventID || o1.Sensor[1].EventID != o2.Sensor[1].EventID || o1.Sensor[0].EventID == o1.Sensor[1].EventID {
		t.Errorf("ids %s %s / %s %s", o1.Sensor[0].EventID, o1.Sensor[1].EventID, o2.Sensor[0].EventID, o2.Sensor[1].EventID)
	}
}
