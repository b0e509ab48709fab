package simulate

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/topics"
)

// Class is a bad-input class, spelled as the machine-readable reason code
// the bridge puts on the dead letter (DeadLetter.reason and the
// drover.reason header; ingest/decode's Reason constants). The empty Class
// marks a valid message.
type Class string

// The bad-input classes of issue 3, with the bridge's reason codes. Each
// one must end in dlq.events with this reason.
const (
	ClassNotJSON          Class = "not_json"                 // payload is not JSON
	ClassNotUTF8          Class = "not_utf8"                 // payload bytes are not valid UTF-8
	ClassEmptyPayload     Class = "empty_payload"            // zero-length payload
	ClassWrongShape       Class = "wrong_shape"              // JSON, but not the structure or field types the channel takes
	ClassMissingField     Class = "missing_field"            // ts, metric, value, lat, lon, ... absent
	ClassNotFinite        Class = "invalid_value"            // value is a string, null, "NaN", "Infinity" or overflows
	ClassOutOfRange       Class = "coordinates_out_of_range" // latitude or longitude out of range
	ClassTSFuture         Class = "ts_in_future"             // ts beyond the allowed clock skew (bridge default 5 min)
	ClassTSPast           Class = "ts_too_old"               // ts older than the allowed age (bridge default 30 days)
	ClassDeviceMismatch   Class = "device_mismatch"          // payload names another device than the topic
	ClassUnknownChannel   Class = "unknown_channel"          // device topic with a channel, media kind or WildFi type no route knows
	ClassTooLarge         Class = "payload_too_large"        // payload above the size limit (256 KiB)
	ClassSenMLUnknownUnit Class = "senml_unknown_unit"       // SenML record with a unit outside the SenML units registry
	ClassSenMLMissingName Class = "senml_missing_name"       // SenML record with neither bn nor n

	// Further reasons the bridge gives, also produced by the simulator.
	ClassInvalidTS        Class = "invalid_ts"         // ts neither RFC 3339 nor epoch milliseconds
	ClassEmptyMetric      Class = "empty_metric"       // metric name blank
	ClassNoRecords        Class = "no_records"         // well-formed payload without a single value
	ClassSenMLInvalidName Class = "senml_invalid_name" // SenML name with characters RFC 8428 forbids
	ClassSenMLUnsupported Class = "senml_unsupported"  // SenML string value (vs): raw.sensor carries numbers
	ClassUnknownTopic     Class = "unknown_topic"      // topic under devices/ that names no device channel
	ClassBadIdentity      Class = "invalid_identity"   // device id in the topic over-long or outside the identity alphabet (a bidi override)

	ClassEventInvalidName     Class = "event_invalid_name"     // event name with characters outside [a-z0-9_.-]
	ClassEventInvalidSeverity Class = "event_invalid_severity" // event severity not info, warning or critical
	ClassEventMessageTooLong  Class = "event_message_too_long" // event message above 256 characters

	// Records that would collide or be mangled downstream (issue 14).
	ClassDuplicateTimestamp Class = "duplicate_timestamp" // two records of one message with the same metric and ts (a SenML pack without t)
	ClassDuplicateKey       Class = "duplicate_key"       // a JSON object naming one field twice
	ClassInvalidMetric      Class = "invalid_metric"      // metric name with a control or bidi character

	// ClassSchemaInvalid is a record that passed decoding and the semantic
	// checks but not the Avro schema. A device cannot provoke it through the
	// documented payloads, so the simulator never sends it and Fixtures has
	// none; it is listed so that the reason codes stay in one catalogue.
	ClassSchemaInvalid Class = "schema_invalid"
)

// Classes returns the bad-input classes the simulator produces, in a fixed
// order: every class above except ClassSchemaInvalid. Fixtures has at least
// one message of each.
func Classes() []Class {
	return []Class{
		ClassNotJSON, ClassNotUTF8, ClassEmptyPayload, ClassWrongShape, ClassMissingField,
		ClassNotFinite, ClassOutOfRange, ClassTSFuture, ClassTSPast, ClassDeviceMismatch,
		ClassUnknownChannel, ClassTooLarge, ClassSenMLUnknownUnit, ClassSenMLMissingName,
		ClassInvalidTS, ClassEmptyMetric, ClassNoRecords, ClassSenMLInvalidName, ClassSenMLUnsupported,
		ClassUnknownTopic, ClassBadIdentity, ClassEventInvalidName, ClassEventInvalidSeverity, ClassEventMessageTooLong,
		ClassDuplicateTimestamp, ClassDuplicateKey, ClassInvalidMetric,
	}
}

// Fixture is one MQTT message with the outcome the bridge must produce:
// valid messages land on ExpectTopic (a raw.* topic), invalid ones on
// dlq.events with Class as the reason.
type Fixture struct {
	// Name is unique within Fixtures, e.g. "sensor/metric-rfc3339" or
	// "not_finite/string".
	Name    string
	Topic   string
	Payload []byte
	Valid   bool
	// Class is the expected dead-letter reason ("" when Valid).
	Class Class
	// ExpectTopic is the Kafka topic the message must land on.
	ExpectTopic string
	// Records is how many records a valid message yields on ExpectTopic
	// (one per measurement or SenML record; a heartbeat yields one per
	// reported value plus the heartbeat marker). Zero for invalid ones.
	Records int
}

// Fixture defaults used by Fixtures.
const (
	FixtureTenant = "demo"
	FixtureDevice = "collar-fixture"
)

// MaxPayload is the bridge's default payload size limit (256 KiB); the
// too_large fixtures exceed it.
const MaxPayload = 256 << 10

// Fixtures returns one message of every accepted payload form and of every
// bad-input class (several variants for most classes), for tenant
// FixtureTenant and device FixtureDevice, with event times around now.
func Fixtures() []Fixture { return FixturesAt(time.Now(), FixtureTenant, FixtureDevice) }

// FixturesAt is Fixtures for a given event time, tenant and device. WildFi
// fixtures use the device id with a "wildfi-" prefix (the bridge gives
// WildFi collars its configured default tenant).
func FixturesAt(now time.Time, tenant, device string) []Fixture {
	fc := fixtureCtx{now: now.UTC(), tenant: tenant, device: device}
	var out []Fixture
	for _, v := range validForms {
		topic, payload := v.build(fc)
		out = append(out, Fixture{Name: v.name, Topic: topic, Payload: payload, Valid: true, ExpectTopic: v.expect, Records: v.records})
	}
	for _, v := range invalidForms {
		topic, payload := v.build(fc)
		out = append(out, Fixture{Name: string(v.class) + "/" + v.name, Topic: topic, Payload: payload, Class: v.class, ExpectTopic: topics.DLQ})
	}
	return out
}

// fixtureCtx is what a payload builder needs: who sends, and when.
type fixtureCtx struct {
	now    time.Time
	tenant string
	device string
}

func (c fixtureCtx) topic(channel string) string {
	return "devices/" + c.tenant + "/" + c.device + "/" + channel
}

func (c fixtureCtx) wildfiTopic(typ string) string {
	id := c.device
	if !strings.HasPrefix(id, "wildfi-") {
		id = "wildfi-" + id
	}
	return "wildfi/" + id + "/" + typ
}

func (c fixtureCtx) ms() string  { return strconv.FormatInt(c.now.UnixMilli(), 10) }
func (c fixtureCtx) rfc() string { return strconv.Quote(c.now.Format(time.RFC3339Nano)) }
func (c fixtureCtx) secs() string {
	return strconv.FormatFloat(float64(c.now.UnixMilli())/1000, 'f', 3, 64)
}
func (c fixtureCtx) at(d time.Duration) fixtureCtx {
	c.now = c.now.Add(d)
	return c
}

type form struct {
	name    string
	class   Class  // invalid forms
	expect  string // valid forms
	records int
	build   func(fixtureCtx) (topic string, payload []byte)
}

func raw(topic string, format string, args ...any) (string, []byte) {
	return topic, fmt.Appendf(nil, format, args...)
}

// validForms documents every accepted payload form by example.
var validForms = []form{
	{name: "sensor/metric-rfc3339", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":38.6,"unit":"Cel"}`, c.rfc())
	}},
	// Valid forms of one device never put two values of a metric, or two
	// positions, at one instant: the sink keeps the first and dead-letters
	// the other (duplicate_timestamp).
	{name: "sensor/metric-epoch-ms", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":38.4}`, c.at(-time.Second).ms())
	}},
	{name: "sensor/measurements", expect: topics.RawSensor, records: 4, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"measurements":{"activity":0.42,"accel_x":0.12,"accel_y":-0.03,"accel_z":9.79},"units":{"activity":"/","accel_x":"m/s2","accel_y":"m/s2","accel_z":"m/s2"}}`, c.at(-2*time.Second).ms())
	}},
	{name: "sensor/senml", expect: topics.RawSensor, records: 3, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":%s,"bu":"Cel","n":"temperature","v":38.7},{"n":"activity","u":"/","v":0.35,"t":-5},{"n":"battery","u":"%%EL","v":81.5}]`, c.at(5*time.Second).secs())
	}},
	{name: "gps/full", expect: topics.RawGPS, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lat":52.4712,"lon":-7.8601,"alt":87.5,"hdop":0.9,"satellites":9,"speed":0.4}`, c.rfc())
	}},
	{name: "gps/minimal", expect: topics.RawGPS, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lat":52.4709,"lon":-7.8588}`, c.at(-time.Second).ms())
	}},
	{name: "heartbeat/full", expect: topics.RawSensor, records: 3, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("heartbeat"), `{"ts":%s,"battery":87.2,"rssi":-71,"firmware":"1.4.2"}`, c.ms())
	}},
	{name: "heartbeat/minimal", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("heartbeat"), `{"ts":%s}`, c.rfc())
	}},
	{name: "events/tamper", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"event":"tamper","severity":"warning","message":"case opened","value":1,"attrs":{"zone":"b"}}`, c.ms())
	}},
	{name: "events/array", expect: topics.RawSensor, records: 2, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `[{"ts":%s,"event":"button"},{"ts":%s,"event":"collar_removed","severity":"critical"}]`, c.at(-time.Second).rfc(), c.ms())
	}},
	{name: "media/image2d", expect: topics.RawImage2D, records: 1, build: mediaFixture("image2d")},
	{name: "media/image3d", expect: topics.RawImage3D, records: 1, build: mediaFixture("image3d")},
	{name: "media/video2d", expect: topics.RawVideo2D, records: 1, build: mediaFixture("video2d")},
	{name: "media/video3d", expect: topics.RawVideo3D, records: 1, build: mediaFixture("video3d")},
	{name: "wildfi/gps", expect: topics.RawGPS, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("gps"), `{"ts":%s,"lat":52.4705,"lon":-7.8612,"hdop":1.2,"satellites":7}`, c.ms())
	}},
	{name: "wildfi/gnss", expect: topics.RawGPS, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("gnss"), `{"ts":%s,"lat":52.4701,"lon":-7.8597,"alt":91.0,"satellites":11}`, c.at(-time.Second).ms())
	}},
	{name: "wildfi/rawgps", expect: topics.RawGPS, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("rawgps"), `{"ts":%s,"lat":52.4698,"lon":-7.8605}`, c.at(-2*time.Second).ms())
	}},
	{name: "wildfi/imu", expect: topics.RawSensor, records: 6, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("imu"), `{"ts":%s,"hz":10,"ax":[0.08,0.11],"ay":[0.02,-0.01],"az":[9.81,9.79],"mode":"burst"}`, c.ms())
	}},
	{name: "wildfi/env", expect: topics.RawSensor, records: 3, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("env"), `{"ts":%s,"temperature":14.2,"humidity":81.0,"pressure":1012.6}`, c.ms())
	}},
	{name: "wildfi/prox", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("prox"), `{"ts":%s,"proximity_rssi":-78}`, c.ms())
	}},
	{name: "wildfi/move", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("move"), `{"ts":%s,"activity":0.57}`, c.ms())
	}},
	{name: "wildfi/meta", expect: topics.RawSensor, records: 1, build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("meta"), `{"ts":%s,"battery_voltage":3.91}`, c.ms())
	}},
}

func mediaFixture(kind string) func(fixtureCtx) (string, []byte) {
	return func(c fixtureCtx) (string, []byte) {
		ext, ctype := mediaExt(kind)
		key := mediaKey(kind, c.tenant, c.device, c.now, "00000000-0000-4000-8000-000000000000", ext)
		return raw(c.topic("media/"+kind), `{"ts":%s,"bucket":%q,"key":%q,"size":1024,"content_type":%q,"sha256":"%s"}`,
			c.ms(), DefaultBucket, key, ctype, strings.Repeat("ab", 32))
	}
}

// invalidForms holds the variants of every bad-input class. The generator
// cycles through them, so a long enough run sends each.
var invalidForms = []form{
	{class: ClassNotJSON, name: "truncated", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":38.`, c.ms())
	}},
	{class: ClassNotJSON, name: "text", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `temperature=38.5`)
	}},
	{class: ClassNotUTF8, name: "latin1-in-string", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), "{\"ts\":%s,\"metric\":\"temp\xe9rature\",\"value\":38.5}", c.ms())
	}},
	{class: ClassNotUTF8, name: "binary", build: func(c fixtureCtx) (string, []byte) {
		return c.topic("gps"), []byte{0xff, 0xfe, 0x00, 0x81, 0xc3, 0x28, 0xa0, 0xa1}
	}},
	{class: ClassEmptyPayload, name: "sensor", build: func(c fixtureCtx) (string, []byte) { return c.topic("sensor"), []byte{} }},
	{class: ClassEmptyPayload, name: "gps", build: func(c fixtureCtx) (string, []byte) { return c.topic("gps"), []byte{} }},
	{class: ClassWrongShape, name: "number", build: func(c fixtureCtx) (string, []byte) { return raw(c.topic("sensor"), `42`) }},
	{class: ClassWrongShape, name: "array-on-gps", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `[52.47,-7.86]`)
	}},
	{class: ClassWrongShape, name: "string-heartbeat", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("heartbeat"), `"alive"`)
	}},
	{class: ClassMissingField, name: "ts", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"metric":"temperature","value":38.5}`)
	}},
	{class: ClassMissingField, name: "metric", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"value":38.5}`, c.ms())
	}},
	{class: ClassMissingField, name: "value", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature"}`, c.ms())
	}},
	{class: ClassMissingField, name: "lat", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lon":-7.86}`, c.ms())
	}},
	{class: ClassMissingField, name: "event-name", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"severity":"warning","message":"case opened"}`, c.ms())
	}},
	{class: ClassMissingField, name: "wildfi-imu-no-hz", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("imu"), `{"ts":%s,"ax":[0.08,0.11,0.09]}`, c.ms())
	}},
	{class: ClassNotFinite, name: "string", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":"38.5"}`, c.ms())
	}},
	{class: ClassNotFinite, name: "null", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":null}`, c.ms())
	}},
	{class: ClassNotFinite, name: "nan", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":"NaN"}`, c.ms())
	}},
	{class: ClassNotFinite, name: "infinity", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"measurements":{"activity":"Infinity"}}`, c.ms())
	}},
	{class: ClassNotFinite, name: "overflow", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":1e999}`, c.ms())
	}},
	{class: ClassNotFinite, name: "event-value", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"event":"tamper","value":"NaN"}`, c.ms())
	}},
	{class: ClassNotFinite, name: "underflow", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":1e-400}`, c.ms())
	}},
	{class: ClassOutOfRange, name: "lat", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lat":91.5,"lon":-7.86}`, c.ms())
	}},
	{class: ClassOutOfRange, name: "lon", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lat":52.47,"lon":-181.2}`, c.ms())
	}},
	{class: ClassTSFuture, name: "one-day", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":38.5}`, c.at(24*time.Hour).ms())
	}},
	{class: ClassTSPast, name: "400-days", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"lat":52.47,"lon":-7.86}`, c.at(-400*24*time.Hour).rfc())
	}},
	{class: ClassDeviceMismatch, name: "sensor", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"device_id":%q,"metric":"temperature","value":38.5}`, c.ms(), c.device+"-impostor")
	}},
	{class: ClassDeviceMismatch, name: "gps", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":%s,"device_id":%q,"lat":52.47,"lon":-7.86}`, c.ms(), "stray-"+c.device)
	}},
	{class: ClassDeviceMismatch, name: "event", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"device_id":%q,"event":"tamper"}`, c.ms(), c.device+"-impostor")
	}},
	{class: ClassUnknownChannel, name: "channel", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("telemetry"), `{"ts":%s,"metric":"temperature","value":38.5}`, c.ms())
	}},
	{class: ClassUnknownChannel, name: "media-kind", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("media/hologram"), `{"ts":%s,"bucket":"drover-media","key":"x","size":1,"content_type":"application/octet-stream"}`, c.ms())
	}},
	{class: ClassUnknownChannel, name: "wildfi-type", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("sonar"), `{"ts":%s,"depth":3}`, c.ms())
	}},
	{class: ClassTooLarge, name: "padded-sensor", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature","value":38.5,"note":"%s"}`, c.ms(), strings.Repeat("x", MaxPayload+4096))
	}},
	{class: ClassSenMLUnknownUnit, name: "furlong", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":%s,"n":"temperature","u":"furlong","v":38.5}]`, c.secs())
	}},
	{class: ClassSenMLMissingName, name: "no-n", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":%s,"u":"Cel","v":38.5}]`, c.secs())
	}},
	{class: ClassInvalidTS, name: "word", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":"yesterday","metric":"temperature","value":38.5}`)
	}},
	{class: ClassInvalidTS, name: "year-0000", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("gps"), `{"ts":"0000-01-01T00:00:00Z","lat":52.47,"lon":-7.86}`)
	}},
	{class: ClassInvalidTS, name: "senml-bt-year-1", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":-62135596800,"n":"temperature","u":"Cel","v":38.5}]`)
	}},
	{class: ClassEmptyMetric, name: "blank", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":" ","value":38.5}`, c.ms())
	}},
	{class: ClassNoRecords, name: "empty-measurements", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"measurements":{}}`, c.ms())
	}},
	{class: ClassNoRecords, name: "empty-senml", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[]`)
	}},
	{class: ClassSenMLInvalidName, name: "space", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":%s,"n":"-body temp","u":"Cel","v":38.5}]`, c.secs())
	}},
	{class: ClassSenMLUnsupported, name: "string-value", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bt":%s,"n":"status","vs":"grazing"}]`, c.secs())
	}},
	{class: ClassUnknownTopic, name: "no-channel", build: func(c fixtureCtx) (string, []byte) {
		return raw("devices/"+c.tenant+"/"+c.device, `{"ts":%s,"metric":"temperature","value":38.5}`, c.ms())
	}},
	{class: ClassBadIdentity, name: "long-device", build: func(c fixtureCtx) (string, []byte) {
		return raw("devices/"+c.tenant+"/"+strings.Repeat("d", 300)+"/sensor", `{"ts":%s,"metric":"temperature","value":38.5}`, c.ms())
	}},
	{class: ClassBadIdentity, name: "bidi-device", build: func(c fixtureCtx) (string, []byte) {
		return raw("devices/"+c.tenant+"/"+c.device+"\u202e/sensor", `{"ts":%s,"metric":"temperature","value":38.5}`, c.ms())
	}},
	{class: ClassDuplicateTimestamp, name: "senml-without-t", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `[{"bn":"collar.","n":"temperature","u":"Cel","v":38.5},{"n":"temperature","v":38.6},{"n":"temperature","v":38.7}]`)
	}},
	{class: ClassDuplicateTimestamp, name: "events-same-ms", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `[{"ts":%s,"event":"button"},{"ts":%[1]s,"event":"button","value":2}]`, c.ms())
	}},
	{class: ClassDuplicateKey, name: "measurement-twice", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"measurements":{"temperature":38.5,"temperature":39.1}}`, c.ms())
	}},
	{class: ClassDuplicateKey, name: "wildfi-ts-aliases", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.wildfiTopic("env"), `{"ts":%s,"timestamp":%[1]s,"temperature":14.2}`, c.ms())
	}},
	{class: ClassInvalidMetric, name: "bidi", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("sensor"), `{"ts":%s,"metric":"temperature\u202e","value":38.5}`, c.ms())
	}},
	{class: ClassEventInvalidName, name: "upper-case-space", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"event":"Door Open"}`, c.ms())
	}},
	{class: ClassEventInvalidSeverity, name: "urgent", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"event":"tamper","severity":"urgent"}`, c.ms())
	}},
	{class: ClassEventMessageTooLong, name: "300-chars", build: func(c fixtureCtx) (string, []byte) {
		return raw(c.topic("events"), `{"ts":%s,"event":"tamper","message":"%s"}`, c.ms(), strings.Repeat("m", 300))
	}},
}

// invalidByClass indexes invalidForms.
var invalidByClass = func() map[Class][]form {
	m := map[Class][]form{}
	for _, f := range invalidForms {
		m[f.class] = append(m[f.class], f)
	}
	return m
}()
