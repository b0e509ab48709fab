package bridge

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/sparkplug"
	"github.com/drover-iot/drover/ingest/sparkplug/spb"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// spbPayload is a Sparkplug B payload at now with seq (-1 = none, NDEATH).
func spbPayload(t *testing.T, now time.Time, seq int, ms ...*spb.Payload_Metric) []byte {
	t.Helper()
	p := &spb.Payload{Timestamp: proto.Uint64(uint64(now.UnixMilli())), Metrics: ms}
	if seq >= 0 {
		p.Seq = proto.Uint64(uint64(seq))
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func spbDouble(name string, alias uint64, v float64) *spb.Payload_Metric {
	m := &spb.Payload_Metric{Alias: proto.Uint64(alias), Value: &spb.Payload_Metric_DoubleValue{DoubleValue: v}}
	if name != "" {
		m.Name, m.Datatype = proto.String(name), proto.Uint32(sparkplug.TypeDouble)
	}
	return m
}

func spbBdSeq(v uint64) *spb.Payload_Metric {
	return &spb.Payload_Metric{Name: proto.String(sparkplug.BdSeqMetric), Datatype: proto.Uint32(sparkplug.TypeUInt64),
		Value: &spb.Payload_Metric_LongValue{LongValue: v}}
}

// TestIntegrationSparkplug publishes a Sparkplug B edge node's life with
// paho on the embedded broker: the bridge subscribes to spBv1.0/# (from the
// routes table), refuses DATA before BIRTH as a dead letter, resolves
// aliases through the birth certificates, names devices behind the edge
// {edge}:{device}, and turns DDEATH and NDEATH into offline readings keyed
// by the device that went offline.
func TestIntegrationSparkplug(t *testing.T) {
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	runBridge(t, e.config(mqttURL, "bridge-spb"))
	pub := newPublisher(t, mqttURL, "edge-1", nil)
	now := time.Now()
	const node, dev = "spBv1.0/plant1/%s/edge-1", "spBv1.0/plant1/%s/edge-1/pump-2"
	at := func(pattern, typ string) string { return fmt.Sprintf(pattern, typ) }

	pub.publish(t, at(node, "NDATA"), spbPayload(t, now, 7, spbDouble("", 1, 20)), nil)
	pub.publish(t, at(node, "NBIRTH"), spbPayload(t, now, 0, spbBdSeq(3), spbDouble("Temperature", 1, 21.5)), nil)
	pub.publish(t, at(node, "NDATA"), spbPayload(t, now, 1, spbDouble("", 1, 22)), nil)
	pub.publish(t, at(dev, "DBIRTH"), spbPayload(t, now, 2, spbDouble("Pressure", 2, 2.5)), nil)
	pub.publish(t, at(dev, "DDATA"), spbPayload(t, now, 3, spbDouble("", 2, 2.75)), nil)
	pub.publish(t, at(dev, "DDEATH"), spbPayload(t, now, 4), nil)
	pub.publish(t, at(node, "NDEATH"), spbPayload(t, now, -1, spbBdSeq(3)), nil)

	got := e.consume(t, 7, 60*time.Second)
	type reading struct {
		key, device, metric string
		value               float64
	}
	var readings []reading
	var letters []*schemas.DeadLetter
	for _, c := range got {
		switch v := c.value.(type) {
		case *schemas.SensorReading:
			if c.rec.Topic != topics.RawSensor || c.headers[ingest.HeaderTenant] != "plant1" || v.Tenant != "plant1" || v.Source != sparkplug.Source {
				t.Errorf("reading %+v on %s headers %v", v, c.rec.Topic, c.headers)
			}
			readings = append(readings, reading{string(c.rec.Key), v.DeviceID, v.Metric, v.Value})
		case *schemas.DeadLetter:
			letters = append(letters, v)
		default:
			t.Errorf("unexpected %T on %s", v, c.rec.Topic)
		}
	}
	if len(letters) != 1 || letters[0].Reason != string(sparkplug.ReasonNoBirth) || letters[0].Source != at(node, "NDATA") ||
		letters[0].DeviceID == nil || *letters[0].DeviceID != "edge-1" {
		t.Fatalf("dead letters %+v, want one %s for the NDATA before NBIRTH", letters, sparkplug.ReasonNoBirth)
	}
	// Per device in publish order (one Kafka key, one partition).
	want := map[string][]reading{
		"plant1/edge-1": {
			{"plant1/edge-1", "edge-1", "Temperature", 21.5},
			{"plant1/edge-1", "edge-1", "Temperature", 22},
			{"plant1/edge-1", "edge-1", decode.MetricOffline, 1},
		},
		"plant1/edge-1:pump-2": {
			{"plant1/edge-1:pump-2", "edge-1:pump-2", "Pressure", 2.5},
			{"plant1/edge-1:pump-2", "edge-1:pump-2", "Pressure", 2.75},
			{"plant1/edge-1:pump-2", "edge-1:pump-2", decode.MetricOffline, 1},
		},
	}
	byKey := map[string][]reading{}
	for _, r := range readings {
		byKey[r.key] = append(byKey[r.key], r)
	}
	for k, w := range want {
		if !slices.Equal(byKey[k], w) {
			t.Errorf("readings of %s = %+v, want %+v", k, byKey[k], w)
		}
	}
	if len(readings) != 6 {
		t.Errorf("%d readings, want 6: %+v", len(readings), readings)
	}
}
