package bridge

import (
	"context"
	"encoding/json"
	"fmt"
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

// answering is an MQTT v5 device that subscribes to its commands on every
// connection and replies "succeeded" to each (unless hold is set).
type answering struct {
	mu   sync.Mutex
	got  []string // command ids, in arrival order
	hold bool     // receive but do not reply
	cm   *autopaho.ConnectionManager
	stop func()
}

func connectDevice(t testing.TB, mqttURL, key string, clean bool, hold bool) *answering {
	t.Helper()
	u, _ := url.Parse(mqttURL)
	ctx, cancel := context.WithCancel(context.Background())
	d := &answering{hold: hold}
	var cm *autopaho.ConnectionManager
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: clean, SessionExpiryInterval: 3600,
		ConnectTimeout: 10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/" + key + "/commands/+", QoS: 1}}})
		},
		ClientConfig: paho.ClientConfig{ClientID: key, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				var m CommandMessage
				if err := json.Unmarshal(pr.Packet.Payload, &m); err != nil {
					return true, nil
				}
				d.mu.Lock()
				d.got = append(d.got, m.CommandID)
				hold := d.hold
				d.mu.Unlock()
				if !hold {
					// pr.Client, not cm: cm is assigned when NewConnection
					// returns, which may be after the first command arrived.
					go pr.Client.Publish(ctx, &paho.Publish{Topic: pr.Packet.Properties.ResponseTopic, QoS: 1, Payload: []byte(`{"status":"succeeded"}`),
						Properties: &paho.PublishProperties{CorrelationData: pr.Packet.Properties.CorrelationData}})
				}
				return true, nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.cm = cm
	d.stop = func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cm.Disconnect(dctx)
		dc()
		cancel()
		<-cm.Done()
	}
	t.Cleanup(d.stop)
	actx, ac := context.WithTimeout(ctx, 30*time.Second)
	defer ac()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *answering) ids() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

// TestIntegrationCommandsWaitForConnect: on the embedded broker, whose
// hook announces connections, a command for a device that is not
// connected waits in Kafka (queued) and is sent when the device connects;
// one whose deadline passes first expires and is never sent; commands for
// a connected device go at once.
func TestIntegrationCommandsWaitForConnect(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "presence-bridge")
	cfg.Downlink = true
	cfg.ExpiryTick = 100 * time.Millisecond
	runBridge(t, cfg) // Presence defaults to events

	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()
	e.sendCommand(t, pcl, "farm1", "sleepy", "w-1", "ping", time.Minute)
	e.sendCommand(t, pcl, "farm1", "sleepy", "w-short", "ping", 1500*time.Millisecond)
	e.waitStatus(t, "w-1", control.Queued)
	e.waitStatus(t, "w-short", control.Expired)
	if c := e.commandsState(t)["w-short"]; !c.SentAt.IsZero() {
		t.Fatalf("expired command was sent: %+v", c)
	}

	dev := connectDevice(t, mqttURL, "farm1/sleepy", true, false)
	if c := e.waitStatus(t, "w-1", control.Succeeded); c.SentAt.Before(c.QueuedAt) || c.DeliveredAt.IsZero() {
		t.Errorf("w-1 = %+v", c)
	}
	// Connected: the next command goes at once.
	e.sendCommand(t, pcl, "farm1", "sleepy", "w-2", "ping", time.Minute)
	e.waitStatus(t, "w-2", control.Succeeded)
	if got := dev.ids(); strings.Join(got, ",") != "w-1,w-2" {
		t.Errorf("device got %v, want w-1,w-2 (never the expired one)", got)
	}

	// Gone again (its session persists on the broker): the command waits
	// in Kafka, not in the broker session.
	dev.stop()
	time.Sleep(300 * time.Millisecond) // the disconnect event reaches the bridge
	e.sendCommand(t, pcl, "farm1", "sleepy", "w-3", "ping", time.Minute)
	e.waitStatus(t, "w-3", control.Queued)
	time.Sleep(500 * time.Millisecond)
	if c := e.commandsState(t)["w-3"]; c.Status != control.Queued || !c.SentAt.IsZero() {
		t.Fatalf("command for a disconnected device: %+v, want queued, not sent", c)
	}
	dev2 := connectDevice(t, mqttURL, "farm1/sleepy", false, false) // resumes its session
	e.waitStatus(t, "w-3", control.Succeeded)
	if got := dev2.ids(); strings.Join(got, ",") != "w-3" {
		t.Errorf("reconnected device got %v, want w-3", got)
	}
}

// TestIntegrationCommandBridgeKill9 kills the bridge (a subprocess) with
// SIGKILL after the device received a command and before it replied; the
// reply waits in the bridge's broker session and the restarted bridge
// records it: no transition is lost.
func TestIntegrationCommandBridgeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.Mosquitto(t)
	args := []string{
		"--mqtt-url", mqttURL, "--kafka-brokers", strings.Join(e.brokers, ","), "--schema-registry-url", e.regURL,
		"--mqtt-client-id", "kill9-bridge", "--admin-addr", "127.0.0.1:0", "--dev-env=", "--command-presence", "none", "--registry", "off",
	}
	dev := connectDevice(t, mqttURL, "farm1/cow-1", true, true)
	time.Sleep(300 * time.Millisecond) // subscribed
	first := startChild(t, args...)
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()
	e.sendCommand(t, pcl, "farm1", "cow-1", "k-1", "ping", 2*time.Minute)
	e.waitStatus(t, "k-1", control.Delivered)
	waitFor(t, 30*time.Second, "device got k-1", func() bool { return len(dev.ids()) == 1 })
	first.kill9(t)

	// The device replies while no bridge runs: the broker keeps it in the
	// bridge's session.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dev.cm.Publish(ctx, &paho.Publish{Topic: control.ReplyTopic("farm1", "cow-1", "k-1"), QoS: 1,
		Payload: []byte(`{"status":"succeeded","result":42}`), Properties: &paho.PublishProperties{CorrelationData: []byte("k-1")}}); err != nil {
		t.Fatal(err)
	}
	startChild(t, args...)
	c := e.waitStatus(t, "k-1", control.Succeeded)
	if c.QueuedAt.IsZero() || c.SentAt.IsZero() || c.DeliveredAt.IsZero() || c.Result == nil || *c.Result != "42" {
		t.Errorf("after the crash: %+v, want every transition and the result", c)
	}
	if got := dev.ids(); len(got) != 1 {
		t.Errorf("device got %v: the delivered command was sent again", got)
	}
}

// TestIntegrationCommandsKeepOrderPerDevice produces many commands for two
// connected devices in one batch, so one poll of the pipelined downlink
// holds them all (devices in parallel): each device receives its own
// commands in the order they were produced, and every one succeeds.
func TestIntegrationCommandsKeepOrderPerDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "order-cmd-bridge")
	cfg.Downlink = true
	runBridge(t, cfg)
	devs := map[string]*answering{
		"farm1/ord-a": connectDevice(t, mqttURL, "farm1/ord-a", true, false),
		"farm1/ord-b": connectDevice(t, mqttURL, "farm1/ord-b", true, false),
	}
	time.Sleep(500 * time.Millisecond) // the subscriptions reach the broker and its connect events the bridge

	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(50*time.Millisecond))
	mustf(t, err, "client")
	defer pcl.Close()
	const n = 40
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := map[string][]string{}
	var recs []*kgo.Record
	now := time.Now().UTC().Truncate(time.Millisecond)
	exp := now.Add(time.Minute)
	for i := range n {
		for _, key := range []string{"farm1/ord-a", "farm1/ord-b"} {
			dev := strings.TrimPrefix(key, "farm1/")
			id := fmt.Sprintf("%s-%02d", dev, i)
			want[key] = append(want[key], id)
			c := schemas.DeviceCommand{CommandID: id, Tenant: "farm1", DeviceID: dev, Name: "step", Payload: `{"n":1}`,
				CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
			v, err := e.serde.Encode(ctx, topics.Commands, &c)
			mustf(t, err, "encode command")
			recs = append(recs, &kgo.Record{Topic: topics.Commands, Key: []byte(identity.Key("farm1", dev)), Value: v})
		}
	}
	mustf(t, pcl.ProduceSync(ctx, recs...).FirstErr(), "produce commands")
	for key, ids := range want {
		for _, id := range ids {
			e.waitStatus(t, id, control.Succeeded)
		}
		if got := devs[key].ids(); strings.Join(got, ",") != strings.Join(ids, ",") {
			t.Errorf("%s received %v, want %v (production order)", key, got, ids)
		}
	}
}

// TestIntegrationCommandsExpireOnce: two bridge replicas (one downlink
// group) follow every command on commands.status, but a command is
// expired by the replica that sends to its device alone. Replica a never
// ticks (an hour), replica b every 50 ms: past their deadlines, b's
// devices' commands are expired and a's stay queued (without the
// ownership check b expired them all, and with both ticking each replica
// could write its own expired record); once a stops, b owns every
// partition and expires the rest. Every command ends with exactly one
// expired record.
func TestIntegrationCommandsExpireOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	start := func(id string, tick time.Duration) (*Bridge, func()) {
		cfg := e.config(mqttURL, id)
		cfg.Downlink = true
		cfg.ExpiryTick = tick
		return runBridge(t, cfg) // Presence defaults to events: the devices are offline
	}
	owned := func(b *Bridge) int {
		b.owner.mu.Lock()
		defer b.owner.mu.Unlock()
		if b.owner.parts == 0 {
			return 0
		}
		return len(b.owner.assigned)
	}
	a, stopA := start("expiry-a", time.Hour)
	waitFor(t, 30*time.Second, "replica a owns every partition", func() bool { return owned(a) == 4 })
	b, _ := start("expiry-b", 50*time.Millisecond)
	waitFor(t, 30*time.Second, "the partitions shared", func() bool { na, nb := owned(a), owned(b); return na > 0 && nb > 0 && na+nb == 4 })

	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()
	const n = 24
	ofA := map[string]bool{}
	for i := range n {
		dev := fmt.Sprintf("away-%d", i)
		ofA[fmt.Sprintf("x-%d", i)] = a.owns(identity.Key("farm1", dev))
		e.sendCommand(t, pcl, "farm1", dev, fmt.Sprintf("x-%d", i), "ping", 1500*time.Millisecond)
	}
	na := 0
	for _, mine := range ofA {
		if mine {
			na++
		}
	}
	if na == 0 || na == n {
		t.Fatalf("replica a sends to %d of the %d devices; the test needs both replicas to own some", na, n)
	}
	for id, mine := range ofA {
		if !mine {
			e.waitStatus(t, id, control.Expired)
		}
	}
	time.Sleep(time.Second) // twenty more ticks of b
	st := e.commandsState(t)
	for id, mine := range ofA {
		if mine && st[id].Status != control.Queued {
			t.Errorf("command %s (replica a's device) is %s, want queued: replica b expired a command it does not send", id, st[id].Status)
		}
	}

	stopA()
	for id := range ofA {
		e.waitStatus(t, id, control.Expired)
	}
	time.Sleep(500 * time.Millisecond)
	log := e.statusLog(t)
	expired := map[string]int{}
	for id, statuses := range log {
		for _, st := range statuses {
			if st == string(control.Expired) {
				expired[id]++
			}
		}
	}
	for id := range ofA {
		if expired[id] != 1 {
			t.Errorf("command %s has %d expired records, want 1", id, expired[id])
		}
	}
}
