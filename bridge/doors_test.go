package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationBridgeSharedBadInputs drives the MQTT door with the table
// of bad inputs the HTTP and CoAP doors and the ingest core are tested
// with (ingesttest.BadInputs): each case, published as a real MQTT message
// on devices/{tenant}/{device}/{channel}, gets exactly one dead letter with
// the table's reason and drover.door mqtt, and a valid reading lands on
// raw.sensor with drover.door mqtt — the bridge and the other doors share
// one ingest path, so they answer alike.
func TestIntegrationBridgeSharedBadInputs(t *testing.T) {
	ie := ingesttest.New(t)
	ie.Devices(t)
	e := &env{brokers: ie.Brokers, kafka: ie.Cluster, serde: registerSchemas(t, ie.RegistryURL), regURL: ie.RegistryURL}
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "bridge-shared-cases")
	cfg.Admission = startAdmission(t, e, ingest.RegistryEnforce, nil)
	runBridge(t, cfg)
	pub := newPublisher(t, mqttURL, "pub-shared-cases", nil)

	// A case is told by its topic and payload (several share a topic).
	type sent struct {
		ingesttest.Case
		topic string
		n     int // dead letters seen
	}
	cases := ingesttest.BadInputs()
	var want []*sent
	for _, tc := range cases {
		dev := tc.Device
		if dev == "" {
			dev = ingesttest.Registered
		}
		s := &sent{Case: tc, topic: "devices/" + ingesttest.Tenant + "/" + dev + "/" + tc.Channel}
		want = append(want, s)
		pub.publish(t, s.topic, []byte(tc.Payload), nil)
	}
	good := "devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor"
	pub.publish(t, good, fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":38.6}`, time.Now().UnixMilli()), nil)

	got := e.consume(t, len(cases)+1, 60*time.Second)
	for _, c := range got {
		src := c.headers[ingest.HeaderMQTTTopic]
		if c.headers[ingest.HeaderDoor] != Door {
			t.Errorf("%s record of %s: header %s = %q, want %q", c.rec.Topic, src, ingest.HeaderDoor, c.headers[ingest.HeaderDoor], Door)
		}
		dl, ok := c.value.(*schemas.DeadLetter)
		if !ok {
			if src != good || c.rec.Topic != topics.RawSensor {
				t.Errorf("%s: a %s record, want a dead letter", src, c.rec.Topic)
			}
			continue
		}
		var tc *sent
		for _, s := range want {
			if s.topic == dl.Source && int64(len(s.Payload)) == dl.PayloadSize && strings.HasPrefix(s.Payload, string(dl.Payload)) {
				tc = s
			}
		}
		switch {
		case tc == nil:
			t.Errorf("dead letter for %s (%s, %d bytes): no such case", dl.Source, dl.Reason, dl.PayloadSize)
		case dl.Reason != string(tc.Reason):
			t.Errorf("%s (%s): dead letter reason %s (%s), want %s", tc.Name, dl.Source, dl.Reason, dl.Message, tc.Reason)
			tc.n++
		default:
			tc.n++
		}
	}
	for _, s := range want {
		if s.n != 1 {
			t.Errorf("%s (%s): %d dead letters, want 1", s.Name, s.topic, s.n)
		}
	}
}
