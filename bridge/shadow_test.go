package bridge

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// listener is an MQTT v5 device that subscribes to its commands and its
// shadow delta on every connection and records what arrives (it does not
// reply).
type listener struct {
	mu   sync.Mutex
	msgs []*paho.Publish
	stop func()
}

func connectListener(t *testing.T, mqttURL, key string) *listener {
	t.Helper()
	u, _ := url.Parse(mqttURL)
	ctx, cancel := context.WithCancel(context.Background())
	l := &listener{}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true, ConnectTimeout: 10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
				{Topic: "devices/" + key + "/commands/+", QoS: 1}, {Topic: "devices/" + key + "/shadow/delta", QoS: 1}}})
		},
		ClientConfig: paho.ClientConfig{ClientID: key, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				l.mu.Lock()
				l.msgs = append(l.msgs, pr.Packet)
				l.mu.Unlock()
				return true, nil
			}}},
	})
	mustf(t, err, "connect %s", key)
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
			_ = cm.Disconnect(dctx)
			dc()
			cancel()
			<-cm.Done()
		})
	}
	t.Cleanup(l.stop)
	actx, ac := context.WithTimeout(ctx, 30*time.Second)
	defer ac()
	mustf(t, cm.AwaitConnection(actx), "connect %s", key)
	return l
}

// on returns the messages received on topics ending in suffix.
func (l *listener) on(suffix string) []*paho.Publish {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*paho.Publish
	for _, m := range l.msgs {
		if strings.HasSuffix(m.Topic, suffix) {
			out = append(out, m)
		}
	}
	return out
}

func (l *listener) deltas(t *testing.T) []ShadowDelta {
	var out []ShadowDelta
	for _, m := range l.on("/shadow/delta") {
		var d ShadowDelta
		mustf(t, json.Unmarshal(m.Payload, &d), "delta %s", m.Payload)
		out = append(out, d)
	}
	return out
}

// produceState writes a state.latest record as the state processor does.
func (e *env) produceState(t *testing.T, cl *kgo.Client, ds schemas.DeviceState) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	ds.TS, ds.LastSeen, ds.IngestedAt, ds.UpdatedAt = now, now, now, now
	if ds.Metrics == nil {
		ds.Metrics = map[string]float64{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := e.serde.Encode(ctx, topics.StateLatest, &ds)
	mustf(t, err, "encode state")
	mustf(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topics.StateLatest, Key: []byte(identity.Key(ds.Tenant, ds.DeviceID)), Value: v}).FirstErr(), "produce state")
}

// TestIntegrationShadowDelta: a device's pending delta (desired keys whose
// reported value differs, from state.latest) reaches it on
// devices/{tenant}/{device}/shadow/delta when it connects and when its
// desired state changes, and not once the reported value matches; a
// "desired" command on commands.devices is never sent as a command.
func TestIntegrationShadowDelta(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "shadow-bridge")
	cfg.Downlink, cfg.ShadowDeltas = true, true
	runBridge(t, cfg)
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()

	// Set while the device is offline: nothing is sent until it connects.
	e.sendCommand(t, pcl, "farm1", "cow-9", "d-1", control.DesiredCommand, time.Minute)
	e.produceState(t, pcl, schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-9", Desired: map[string]string{"interval": "30"}, Version: 1,
		Metrics: map[string]float64{"interval": 60}})
	time.Sleep(time.Second) // the bridge read both
	dev := connectListener(t, mqttURL, "farm1/cow-9")
	waitFor(t, 30*time.Second, "delta on connect", func() bool { return len(dev.deltas(t)) == 1 })
	if d := dev.deltas(t)[0]; d.Version != 1 || len(d.State) != 1 || d.State["interval"] != "30" {
		t.Errorf("delta on connect = %+v, want version 1, interval 30", d)
	}

	// Desired changes while connected: the new delta goes at once.
	e.produceState(t, pcl, schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-9", Desired: map[string]string{"interval": "30", "mode": "eco"}, Version: 2,
		Metrics: map[string]float64{"interval": 60}})
	waitFor(t, 30*time.Second, "delta on change", func() bool { return len(dev.deltas(t)) == 2 })
	if d := dev.deltas(t)[1]; d.Version != 2 || d.State["mode"] != "eco" || d.State["interval"] != "30" {
		t.Errorf("delta on change = %+v", d)
	}
	// A reading that changes nothing desired sends nothing.
	e.produceState(t, pcl, schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-9", Desired: map[string]string{"interval": "30", "mode": "eco"}, Version: 2,
		Metrics: map[string]float64{"interval": 60, "temp": 38}})

	// The device reports the desired values: the delta clears, and a
	// reconnect brings none.
	e.produceState(t, pcl, schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-9", Desired: map[string]string{"interval": "30"}, Version: 3,
		Metrics: map[string]float64{"interval": 30}})
	time.Sleep(time.Second)
	dev.stop()
	time.Sleep(300 * time.Millisecond)
	dev2 := connectListener(t, mqttURL, "farm1/cow-9")
	time.Sleep(2 * time.Second)
	if got := dev.deltas(t); len(got) != 2 {
		t.Errorf("first connection got %d deltas, want 2: %+v", len(got), got)
	}
	if got := dev2.deltas(t); len(got) != 0 {
		t.Errorf("after the delta cleared, a reconnect got %+v", got)
	}
	// Never as a command.
	for _, l := range []*listener{dev, dev2} {
		if got := l.on("/commands/d-1"); len(got) != 0 {
			t.Errorf("the desired-state command was sent as a command: %s", got[0].Payload)
		}
	}
	if c := e.commandsState(t)["d-1"]; c != nil {
		t.Errorf("desired-state update has a command lifecycle: %+v", c)
	}
}

// TestIntegrationCommandsOneReplicaSends: two bridge replicas (one
// downlink group) see the same connect event and the same open commands;
// a waiting command reaches its device once.
func TestIntegrationCommandsOneReplicaSends(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	for _, id := range []string{"replica-a", "replica-b"} {
		cfg := e.config(mqttURL, id)
		cfg.Downlink, cfg.ShadowDeltas = true, true
		runBridge(t, cfg)
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()
	time.Sleep(2 * time.Second) // both replicas joined the downlink group
	ids := []string{"r-1", "r-2", "r-3"}
	for _, id := range ids {
		e.sendCommand(t, pcl, "farm1", "cow-5", id, "ping", time.Minute)
	}
	e.produceState(t, pcl, schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-5", Desired: map[string]string{"mode": "eco"}, Version: 1})
	for _, id := range ids {
		e.waitStatus(t, id, control.Queued)
	}
	time.Sleep(time.Second)
	dev := connectListener(t, mqttURL, "farm1/cow-5")
	for _, id := range ids {
		e.waitStatus(t, id, control.Delivered)
	}
	waitFor(t, 30*time.Second, "delta", func() bool { return len(dev.deltas(t)) >= 1 })
	time.Sleep(2 * time.Second) // a second replica's copies would be here by now
	for _, id := range ids {
		if got := dev.on("/commands/" + id); len(got) != 1 {
			t.Errorf("command %s arrived %d times, want once", id, len(got))
		}
	}
	if got := dev.deltas(t); len(got) != 1 {
		t.Errorf("delta arrived %d times, want once", len(got))
	}
}
