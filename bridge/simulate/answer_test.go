package simulate

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationAnswerCommands: with credentials and AnswerCommands, a
// simulated device replies to a command on its Response Topic with the
// Correlation Data (succeeded, or failed for "fail"), and to an MQTT
// v3.1.1-style command (no properties) on the body's reply_topic.
func TestIntegrationAnswerCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	mqttURL := devtest.MQTT(t)
	cfg := Config{MQTTURL: mqttURL, Devices: 2, Rate: 5, WildFiRatio: -1, MediaRatio: -1, SummaryEvery: -1, AnswerCommands: true}
	herd, err := Herd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credentials = map[string]string{}
	for _, d := range herd {
		cfg.Credentials[d.ID] = "secret" // the embedded broker without a registry takes any
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	simDone := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg, devtest.Logger())
		simDone <- err
	}()
	replies := make(chan *paho.Publish, 4)
	u, _ := url.Parse(mqttURL)
	op, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ConnectTimeout: 10 * time.Second, ClientConfig: paho.ClientConfig{ClientID: "operator",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				replies <- pr.Packet
				return true, nil
			}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/demo/+/replies/+", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	dev := DefaultTenant + "/" + herd[0].ID
	send := func(id, name string, v5 bool) *paho.Publish {
		t.Helper()
		reply := "devices/" + dev + "/replies/" + id
		body, _ := json.Marshal(map[string]any{"command_id": id, "name": name, "payload": map[string]int{"n": 1}, "reply_topic": reply})
		pub := &paho.Publish{Topic: "devices/" + dev + "/commands/" + id, QoS: 1, Payload: body}
		if v5 {
			pub.Properties = &paho.PublishProperties{ResponseTopic: reply, CorrelationData: []byte(id)}
		}
		// The simulator subscribes right after connecting: retry until a
		// reply comes.
		for {
			if _, err := op.Publish(ctx, pub); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-replies:
				return r
			case <-time.After(time.Second):
			case <-ctx.Done():
				t.Fatalf("no reply to %s", id)
			}
		}
	}
	r := send("c-1", "set_interval", true)
	if r.Topic != "devices/"+dev+"/replies/c-1" || r.Properties == nil || string(r.Properties.CorrelationData) != "c-1" ||
		string(r.Payload) != `{"result":{"command":"set_interval","params":{"n":1}},"status":"succeeded"}` {
		t.Errorf("reply %s %s %+v", r.Topic, r.Payload, r.Properties)
	}
	if r := send("c-2", "fail", false); r.Topic != "devices/"+dev+"/replies/c-2" || string(r.Payload) != `{"message":"simulated failure","status":"failed"}` {
		t.Errorf("reply to fail: %s %s", r.Topic, r.Payload)
	}
	cancel()
	<-simDone
}

// TestIntegrationFollowShadow: with credentials and FollowShadow, a
// simulated device that gets a shadow delta reports the desired values
// back on its sensor topic: numbers as measurements of that name,
// firmware as the firmware attribute, with the delta's version.
func TestIntegrationFollowShadow(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	mqttURL := devtest.MQTT(t)
	cfg := Config{MQTTURL: mqttURL, Devices: 1, Rate: 1, WildFiRatio: -1, MediaRatio: -1, SummaryEvery: -1, FollowShadow: true}
	herd, err := Herd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credentials = map[string]string{herd[0].ID: "secret"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	simDone := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg, devtest.Logger())
		simDone <- err
	}()
	reports := make(chan *paho.Publish, 64)
	u, _ := url.Parse(mqttURL)
	op, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ConnectTimeout: 10 * time.Second, ClientConfig: paho.ClientConfig{ClientID: "bridge-stand-in",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				reports <- pr.Packet
				return true, nil
			}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := op.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	dev := DefaultTenant + "/" + herd[0].ID
	if _, err := op.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/" + dev + "/sensor", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	delta := []byte(`{"version":4,"state":{"report_interval":"60","firmware":"2.1.0","mode":"eco"},"updated_at":"2026-05-01T12:00:00Z"}`)
	var got struct {
		Measurements map[string]float64 `json:"measurements"`
		Attrs        map[string]string  `json:"attrs"`
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for got.Measurements["shadow_version"] != 4 {
		select {
		case r := <-reports:
			got.Measurements, got.Attrs = nil, nil
			_ = json.Unmarshal(r.Payload, &got)
		case <-tick.C:
			// The simulator subscribes right after connecting: send until
			// a report comes.
			if _, err := op.Publish(ctx, &paho.Publish{Topic: "devices/" + dev + "/shadow/delta", QoS: 1, Payload: delta}); err != nil {
				t.Fatal(err)
			}
		case <-ctx.Done():
			t.Fatal("no shadow report")
		}
	}
	if got.Measurements["report_interval"] != 60 || got.Attrs["firmware"] != "2.1.0" {
		t.Errorf("report %+v, want report_interval 60 and firmware 2.1.0", got)
	}
	if _, ok := got.Measurements["mode"]; ok {
		t.Errorf("report %+v: a non-number is not a measurement", got)
	}
	cancel()
	<-simDone
}
