package bridge

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

type payloadCase struct {
	name    string
	topic   string // %s = device id
	payload string // %d = now in epoch ms
	topicTo string // expected Kafka topic of the records ("" for a dead letter)
	records int
	reason  decode.Reason
	stage   decode.Stage
}

func payloadCases() []payloadCase {
	big := `{"ts":%d,"metric":"t","value":1,"pad":"` + strings.Repeat("x", 300<<10) + `"}`
	return []payloadCase{
		{name: "sensor single", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"temperature","value":38.6,"unit":"Cel"}`, topicTo: topics.RawSensor, records: 1},
		{name: "sensor measurements", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"measurements":{"temperature":38.6,"activity":0.42}}`, topicTo: topics.RawSensor, records: 2},
		{name: "sensor senml", topic: "devices/farm1/%s/sensor", payload: `[{"bn":"collar.","bu":"Cel","n":"temp","v":38.5},{"n":"temp","t":-10,"v":38.7}]`, topicTo: topics.RawSensor, records: 2},
		{name: "gps", topic: "devices/farm1/%s/gps", payload: `{"ts":%d,"lat":47.5,"lon":8.7,"alt":420,"hdop":0.9,"satellites":9,"speed":1.2}`, topicTo: topics.RawGPS, records: 1},
		{name: "media image2d", topic: "devices/farm1/%s/media/image2d", payload: `{"ts":%d,"bucket":"drover-media","key":"a.jpg","size":1024,"content_type":"image/jpeg"}`, topicTo: topics.RawImage2D, records: 1},
		{name: "media image3d", topic: "devices/farm1/%s/media/image3d", payload: `{"ts":%d,"bucket":"drover-media","key":"a.ply","size":1024,"content_type":"application/ply"}`, topicTo: topics.RawImage3D, records: 1},
		{name: "media video2d", topic: "devices/farm1/%s/media/video2d", payload: `{"ts":%d,"bucket":"drover-media","key":"a.mp4","size":1024,"content_type":"video/mp4"}`, topicTo: topics.RawVideo2D, records: 1},
		{name: "media video3d", topic: "devices/farm1/%s/media/video3d", payload: `{"ts":%d,"bucket":"drover-media","key":"a.bin","size":1024,"content_type":"application/octet-stream"}`, topicTo: topics.RawVideo3D, records: 1},
		{name: "heartbeat", topic: "devices/farm1/%s/heartbeat", payload: `{"ts":%d,"battery":87,"rssi":-71,"firmware":"1.4.2"}`, topicTo: topics.RawSensor, records: 3},
		{name: "event", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"event":"tamper","severity":"warning","message":"case opened","value":1,"attrs":{"zone":"b"}}`, topicTo: topics.RawSensor, records: 1},
		{name: "event array", topic: "devices/farm1/%s/events", payload: `[{"ts":%d,"event":"button"},{"ts":%[1]d,"event":"collar_removed","severity":"critical"}]`, topicTo: topics.RawSensor, records: 2},
		{name: "wildfi gps", topic: "wildfi/%s/gps", payload: `{"ts":%d,"lat":47.1,"lon":8.2}`, topicTo: topics.RawGPS, records: 1},
		{name: "wildfi gnss", topic: "wildfi/%s/gnss", payload: `{"timestamp":%d,"latitude":47.1,"longitude":8.2}`, topicTo: topics.RawGPS, records: 1},
		{name: "wildfi rawgps", topic: "wildfi/%s/rawgps", payload: `[{"ts":%d,"lat":47.1,"lon":8.2,"sats":5}]`, topicTo: topics.RawGPS, records: 1},
		{name: "wildfi imu", topic: "wildfi/%s/imu", payload: `{"ts":%d,"hz":25,"ax":[0.1,0.2,0.3]}`, topicTo: topics.RawSensor, records: 3},
		{name: "wildfi env", topic: "wildfi/%s/env", payload: `{"ts":%d,"temperature":18.5,"humidity":60}`, topicTo: topics.RawSensor, records: 2},
		{name: "wildfi prox", topic: "wildfi/%s/prox", payload: `{"ts":%d,"peer":"tag-9","rssi":-80}`, topicTo: topics.RawSensor, records: 1},
		{name: "wildfi move", topic: "wildfi/%s/move", payload: `{"ts":%d,"odba":0.3}`, topicTo: topics.RawSensor, records: 1},
		{name: "wildfi meta", topic: "wildfi/%s/meta", payload: `{"ts":%d,"battery_v":3.9,"fw":"2.1"}`, topicTo: topics.RawSensor, records: 1},

		{name: "not json", topic: "devices/farm1/%s/sensor", payload: `temperature=38`, reason: decode.ReasonNotJSON, stage: decode.StageDecode},
		{name: "not utf8", topic: "devices/farm1/%s/sensor", payload: "{\"ts\":%d,\"metric\":\"\xff\xfe\"}", reason: decode.ReasonNotUTF8, stage: decode.StageDecode},
		{name: "empty", topic: "devices/farm1/%s/sensor", payload: ``, reason: decode.ReasonEmptyPayload, stage: decode.StageDecode},
		{name: "wrong shape", topic: "devices/farm1/%s/gps", payload: `[1,2,3]`, reason: decode.ReasonWrongShape, stage: decode.StageDecode},
		{name: "missing ts", topic: "devices/farm1/%s/sensor", payload: `{"metric":"t","value":1}`, reason: decode.ReasonMissingField, stage: decode.StageDecode},
		{name: "missing value", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t"}`, reason: decode.ReasonMissingField, stage: decode.StageDecode},
		{name: "value string", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":"NaN"}`, reason: decode.ReasonInvalidValue, stage: decode.StageValidate},
		{name: "value null", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":null}`, reason: decode.ReasonInvalidValue, stage: decode.StageValidate},
		{name: "value infinity", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":1e400}`, reason: decode.ReasonInvalidValue, stage: decode.StageValidate},
		{name: "lat out of range", topic: "devices/farm1/%s/gps", payload: `{"ts":%d,"lat":95,"lon":8}`, reason: decode.ReasonOutOfRange, stage: decode.StageValidate},
		{name: "ts future", topic: "devices/farm1/%s/sensor", payload: `{"ts":"2999-01-01T00:00:00Z","metric":"t","value":1}`, reason: decode.ReasonTSFuture, stage: decode.StageValidate},
		{name: "ts past", topic: "devices/farm1/%s/sensor", payload: `{"ts":"2001-01-01T00:00:00Z","metric":"t","value":1}`, reason: decode.ReasonTSTooOld, stage: decode.StageValidate},
		{name: "device mismatch", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":1,"device_id":"someone-else"}`, reason: decode.ReasonDeviceMismatch, stage: decode.StageValidate},
		{name: "event missing name", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"severity":"warning"}`, reason: decode.ReasonMissingField, stage: decode.StageDecode},
		{name: "event bad name", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"event":"Door Open"}`, reason: decode.ReasonEventInvalidName, stage: decode.StageDecode},
		{name: "event bad severity", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"event":"tamper","severity":"urgent"}`, reason: decode.ReasonEventInvalidSeverity, stage: decode.StageDecode},
		{name: "event message too long", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"event":"tamper","message":"` + strings.Repeat("m", decode.MaxEventMessage+1) + `"}`, reason: decode.ReasonEventMessageTooLong, stage: decode.StageDecode},
		{name: "event value string", topic: "devices/farm1/%s/events", payload: `{"ts":%d,"event":"tamper","value":"one"}`, reason: decode.ReasonInvalidValue, stage: decode.StageValidate},
		{name: "event device mismatch", topic: "devices/farm1/%s/events", payload: `[{"ts":%d,"event":"tamper","device":"someone-else"}]`, reason: decode.ReasonDeviceMismatch, stage: decode.StageValidate},
		{name: "unknown channel", topic: "devices/farm1/%s/telepathy", payload: `{"ts":%d}`, reason: decode.ReasonUnknownChannel, stage: decode.StageRoute},
		{name: "unknown media kind", topic: "devices/farm1/%s/media/hologram", payload: `{"ts":%d}`, reason: decode.ReasonUnknownChannel, stage: decode.StageRoute},
		{name: "unknown wildfi type", topic: "wildfi/%s/sonar", payload: `{"ts":%d}`, reason: decode.ReasonUnknownChannel, stage: decode.StageRoute},
		{name: "unknown topic", topic: "devices/%s", payload: `{"ts":%d}`, reason: decode.ReasonUnknownTopic, stage: decode.StageRoute},
		{name: "oversized", topic: "devices/farm1/%s/sensor", payload: big, reason: decode.ReasonPayloadTooLarge, stage: decode.StageDecode},
		{name: "senml unknown unit", topic: "devices/farm1/%s/sensor", payload: `[{"n":"temp","u":"Celsius","v":1}]`, reason: decode.ReasonSenMLUnknownUnit, stage: decode.StageDecode},
		{name: "senml missing name", topic: "devices/farm1/%s/sensor", payload: `[{"u":"Cel","v":1}]`, reason: decode.ReasonSenMLMissingName, stage: decode.StageDecode},
		{name: "device id with bidi override", topic: "devices/farm1/%s\u202e/sensor", payload: `{"ts":%d,"metric":"t","value":1}`, reason: decode.ReasonBadIdentity, stage: decode.StageRoute},
		{name: "tenant not ascii", topic: "devices/färm/%s/gps", payload: `{"ts":%d,"lat":1,"lon":1}`, reason: decode.ReasonBadIdentity, stage: decode.StageRoute},
		{name: "wildfi device with bidi", topic: "wildfi/%s\u2067/gps", payload: `{"ts":%d,"lat":1,"lon":1}`, reason: decode.ReasonBadIdentity, stage: decode.StageRoute},
		{name: "payload device_id with bidi", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":1,"device_id":"x\u202e"}`, reason: decode.ReasonBadIdentity, stage: decode.StageValidate},
		{name: "senml same name no t", topic: "devices/farm1/%s/sensor", payload: `[{"n":"temp","v":1},{"n":"temp","v":2},{"n":"temp","v":3}]`, reason: decode.ReasonDuplicateTimestamp, stage: decode.StageValidate},
		{name: "wildfi imu without hz", topic: "wildfi/%s/imu", payload: `{"ts":%d,"ax":[0.1,0.2,0.3]}`, reason: decode.ReasonMissingField, stage: decode.StageDecode},
		{name: "measurement twice", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"measurements":{"temp":1,"temp":2}}`, reason: decode.ReasonDuplicateKey, stage: decode.StageDecode},
		{name: "value underflow", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"t","value":1e-400}`, reason: decode.ReasonInvalidValue, stage: decode.StageValidate},
		{name: "senml bt of year 1", topic: "devices/farm1/%s/sensor", payload: `[{"bt":-62135596800,"n":"t","v":1}]`, reason: decode.ReasonInvalidTS, stage: decode.StageDecode},
		{name: "metric with escape sequence", topic: "devices/farm1/%s/sensor", payload: `{"ts":%d,"metric":"\u001b[31mt","value":1}`, reason: decode.ReasonInvalidMetric, stage: decode.StageValidate},
		{name: "media null sha256", topic: "devices/farm1/%s/media/image2d", payload: `{"ts":%d,"bucket":"b","key":"k","size":1,"content_type":"image/png","sha256":null,"attrs":{"a":"b"}}`, topicTo: topics.RawImage2D, records: 1},
	}
}

func TestIntegrationBridgePayloads(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, broker := range []struct {
		name  string
		start func(t *testing.T) string
	}{
		{"embedded", func(t *testing.T) string { return devtest.MQTT(t) }},
		{"mosquitto", func(t *testing.T) string { return devtest.Mosquitto(t) }},
	} {
		t.Run(broker.name, func(t *testing.T) {
			e := newEnv(t)
			mqttURL := broker.start(t)
			runBridge(t, e.config(mqttURL, "bridge-"+broker.name))
			pub := newPublisher(t, mqttURL, "pub-"+broker.name, nil)

			cases := payloadCases()
			want := 0
			nowMS := time.Now().UnixMilli()
			byTopic := map[string]payloadCase{}
			devOf := map[string]string{}
			caseIndex := map[string]int{}
			payloads := map[string][]byte{}
			for i, c := range cases {
				dev := fmt.Sprintf("dev-%02d", i)
				topic := fmt.Sprintf(c.topic, dev)
				payload := c.payload
				if strings.Contains(payload, "%d") {
					payload = fmt.Sprintf(payload, nowMS)
				}
				byTopic[topic] = c
				devOf[topic] = dev
				caseIndex[topic] = i
				payloads[topic] = []byte(payload)
				// A device may not forge the bridge's own headers with user
				// properties, and a repeated one is kept.
				props := &paho.PublishProperties{ContentType: "application/json", User: paho.UserProperties{{Key: "fw", Value: "1.2"}, {Key: "case", Value: strconv.Itoa(i)},
					{Key: "mqtt.qos", Value: "forged"}, {Key: ingest.HeaderReason, Value: "forged"}, {Key: "fw", Value: "1.3"}}}
				pub.publish(t, topic, []byte(payload), props)
				if c.reason != "" {
					want++
				} else {
					want += c.records
				}
			}
			got := e.consume(t, want, 60*time.Second)
			perTopic := map[string][]consumed{}
			for _, c := range got {
				perTopic[c.headers[ingest.HeaderMQTTTopic]] = append(perTopic[c.headers[ingest.HeaderMQTTTopic]], c)
			}
			for topic, c := range byTopic {
				recs := perTopic[topic]
				t.Run(c.name, func(t *testing.T) {
					if c.reason != "" {
						if len(recs) != 1 || recs[0].rec.Topic != topics.DLQ {
							t.Fatalf("got %d records (%v), want one dead letter", len(recs), recTopics(recs))
						}
						dl := recs[0].value.(*schemas.DeadLetter)
						if dl.Reason != string(c.reason) || dl.Stage != string(c.stage) {
							t.Fatalf("dead letter %s/%s (%s), want %s/%s", dl.Stage, dl.Reason, dl.Message, c.stage, c.reason)
						}
						h := recs[0].headers
						if h[ingest.HeaderReason] != string(c.reason) || h[ingest.HeaderStage] != string(c.stage) || h[ingest.HeaderSource] != topic {
							t.Errorf("dead letter headers %v", h)
						}
						if dl.Source != topic || dl.Message == "" || dl.ReceivedAt.IsZero() {
							t.Errorf("dead letter %+v", dl)
						}
						orig := payloads[topic]
						if dl.PayloadSize != int64(len(orig)) {
							t.Errorf("payload_size %d, want %d", dl.PayloadSize, len(orig))
						}
						if len(orig) > decode.DefaultMaxPayload {
							if !dl.Truncated || !bytes.Equal(dl.Payload, orig[:decode.DefaultMaxPayload]) {
								t.Errorf("oversized payload not truncated to the limit (truncated=%v, %d bytes)", dl.Truncated, len(dl.Payload))
							}
						} else if dl.Truncated || !bytes.Equal(dl.Payload, orig) {
							t.Errorf("payload not kept verbatim")
						}
						if dl.Headers["mqtt.user.fw"] != "1.2" || dl.Headers["mqtt.user.fw#2"] != "1.3" || dl.ContentType == nil || *dl.ContentType != "application/json" {
							t.Errorf("dead letter lost MQTT properties: %v %v", dl.Headers, dl.ContentType)
						}
						if dl.Headers["mqtt.qos"] != "1" || dl.Headers["mqtt.user.mqtt.qos"] != "forged" || dl.Headers["mqtt.user."+ingest.HeaderReason] != "forged" {
							t.Errorf("dead letter headers forged by user properties: %v", dl.Headers)
						}
						if c.reason == decode.ReasonBadIdentity && c.stage == decode.StageRoute {
							// The malformed id stays in source, never in the
							// identity fields, the key or the headers.
							if strings.HasPrefix(topic, "devices/färm/") {
								if dl.Tenant != nil || h[ingest.HeaderTenant] != "" || dl.DeviceID == nil || *dl.DeviceID != devOf[topic] {
									t.Errorf("malformed tenant carried: tenant %v device %v headers %v", dl.Tenant, dl.DeviceID, h)
								}
							} else if dl.DeviceID != nil || h[ingest.HeaderDevice] != "" || string(recs[0].rec.Key) != topic {
								t.Errorf("malformed device carried: device %v key %q headers %v", dl.DeviceID, recs[0].rec.Key, h)
							}
						}
						if decode.Escape(dl.Message) != dl.Message {
							t.Errorf("dead letter message not escaped: %q", dl.Message)
						}
						return
					}
					if len(recs) != c.records {
						t.Fatalf("got %d records (%v), want %d on %s", len(recs), recTopics(recs), c.records, c.topicTo)
					}
					for _, r := range recs {
						if r.rec.Topic != c.topicTo {
							t.Errorf("record on %s, want %s", r.rec.Topic, c.topicTo)
						}
						dev := devOf[topic]
						wantTenant := "farm1"
						if strings.HasPrefix(topic, "wildfi/") {
							wantTenant = "wildlife"
						}
						if want := wantTenant + "/" + dev; string(r.rec.Key) != want { // identity.Key
							t.Errorf("key %q, want %q", r.rec.Key, want)
						}
						if r.headers[ingest.HeaderTenant] != wantTenant || r.headers[HeaderContentType] != "application/json" {
							t.Errorf("headers %v", r.headers)
						}
						// Every user property, repeated ones too, under the
						// prefix; none under the bridge's own names.
						var user []string
						for _, h := range r.rec.Headers {
							switch {
							case strings.HasPrefix(h.Key, HeaderUserPrefix):
								user = append(user, strings.TrimPrefix(h.Key, HeaderUserPrefix)+"="+string(h.Value))
							case h.Key == "mqtt.qos" || h.Key == ingest.HeaderReason:
								t.Errorf("user property forged header %s", h.Key)
							}
						}
						if got := strings.Join(user, ","); got != "fw=1.2,case="+strconv.Itoa(caseIndex[topic])+",mqtt.qos=forged,drover.reason=forged,fw=1.3" {
							t.Errorf("user property headers %s", got)
						}
						checkIdentity(t, r.value, wantTenant, dev)
						if c.name == "event" {
							sr, ok := r.value.(*schemas.SensorReading)
							if !ok || sr.Metric != "event.tamper" || sr.Value != 1 || sr.Source != "events" || sr.Attrs["severity"] != "warning" ||
								sr.Attrs["message"] != "case opened" || sr.Attrs["zone"] != "b" || sr.TS.UnixMilli() != nowMS {
								t.Errorf("event record %+v", r.value)
							}
						}
					}
				})
			}
		})
	}
}

func recTopics(rs []consumed) []string {
	var out []string
	for _, r := range rs {
		s := r.rec.Topic
		if dl, ok := r.value.(*schemas.DeadLetter); ok {
			s += ":" + dl.Reason + ":" + dl.Message
		}
		out = append(out, s)
	}
	return out
}

func checkIdentity(t *testing.T, v any, tenant, device string) {
	t.Helper()
	var gotT, gotD, id string
	var ingested time.Time
	switch r := v.(type) {
	case *schemas.SensorReading:
		gotT, gotD, id, ingested = r.Tenant, r.DeviceID, r.EventID, r.IngestedAt
	case *schemas.GPSFix:
		gotT, gotD, id, ingested = r.Tenant, r.DeviceID, r.EventID, r.IngestedAt
	case *schemas.MediaObject:
		gotT, gotD, id, ingested = r.Tenant, r.DeviceID, r.EventID, r.IngestedAt
	}
	if gotT != tenant || gotD != device || id == "" || ingested.IsZero() {
		t.Errorf("record identity tenant=%q device=%q id=%q ingested=%v, want %q/%q", gotT, gotD, id, ingested, tenant, device)
	}
}
