package bridge

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// sendCommand produces one command on commands.devices.
func (e *env) sendCommand(t *testing.T, cl *kgo.Client, tenant, device, id, name string, deadline time.Duration) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	exp := now.Add(deadline)
	c := schemas.DeviceCommand{CommandID: id, Tenant: tenant, DeviceID: device, Name: name, Payload: `{"n":1}`,
		CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := e.serde.Encode(ctx, topics.Commands, &c)
	mustf(t, err, "encode command")
	mustf(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Commands, Key: []byte(identity.Key(tenant, device)), Value: v}).FirstErr(), "produce command")
}

// commandsState reads commands.status and folds it.
func (e *env) commandsState(t *testing.T) map[string]*control.Command {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	all, err := control.ReadAll(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.serde)
	mustf(t, err, "read commands.status")
	return all
}

func (e *env) waitStatus(t *testing.T, id string, want control.Status) *control.Command {
	t.Helper()
	var c *control.Command
	waitFor(t, 30*time.Second, "command "+id+" "+string(want), func() bool {
		c = e.commandsState(t)[id]
		return c != nil && c.Status == want
	})
	return c
}

// TestIntegrationCommandLifecycle runs commands through the bridge and a
// real Mosquitto to an MQTT v5 device (paho, replying with Response Topic
// and Correlation Data) and an MQTT v3.1.1 device (mosquitto_sub and
// mosquitto_pub, replying on the documented topic): succeeded, failed,
// a duplicate reply that changes nothing, a late reply recorded but not
// applied, and a reply for another device's command refused.
func TestIntegrationCommandLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for _, bin := range []string{"mosquitto_sub", "mosquitto_pub"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required (scripts/deps installs mosquitto-clients): %v", bin, err)
		}
	}
	e := newEnv(t)
	mqttURL := devtest.Mosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The v5 device answers each command by its name: ok → succeeded,
	// fail → failed, slow → after 2s; dup → twice.
	var mu sync.Mutex
	var got []*paho.Publish
	var dev *publisher
	dev = newPublisher(t, mqttURL, "farm1/cow-9", func(p *paho.Publish) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
		var msg CommandMessage
		if err := json.Unmarshal(p.Payload, &msg); err != nil {
			t.Errorf("command body: %v", err)
			return
		}
		if p.Properties == nil || p.Properties.ResponseTopic == "" || string(p.Properties.CorrelationData) != msg.CommandID {
			t.Errorf("command %s without response topic or correlation data: %+v", msg.CommandID, p.Properties)
			return
		}
		reply := func(body string) {
			dev.publish(t, p.Properties.ResponseTopic, []byte(body), &paho.PublishProperties{CorrelationData: p.Properties.CorrelationData})
		}
		go func() {
			switch msg.Name {
			case "ok":
				reply(`{"status":"succeeded","result":{"interval":60}}`)
			case "fail":
				reply(`{"status":"failed","message":"battery too low"}`)
			case "dup":
				reply(`{"status":"succeeded"}`)
				reply(`{"status":"failed","message":"second answer"}`)
			case "slow":
				time.Sleep(2500 * time.Millisecond)
				reply(`{"status":"succeeded"}`)
			}
		}()
	})
	if _, err := dev.cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: CommandTopic("farm1", "cow-9"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	// The v3.1.1 device: mosquitto_sub prints the first command it gets.
	host, port := hostPort(t, mqttURL)
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-V", "mqttv311", "-h", host, "-p", port, "-q", "1",
		"-i", "farm1/goat-1", "-t", "devices/farm1/goat-1/commands/+", "-C", "1", "-v")
	var subOut strings.Builder
	sub.Stdout = &subOut
	mustf(t, sub.Start(), "mosquitto_sub")
	time.Sleep(500 * time.Millisecond) // let it subscribe

	cfg := e.config(mqttURL, "cmd-bridge")
	cfg.Downlink = true
	cfg.Presence = PresenceNone // Mosquitto has no client-connected events
	cfg.ExpiryTick = 100 * time.Millisecond
	runBridge(t, cfg)

	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	mustf(t, err, "client")
	defer pcl.Close()
	e.sendCommand(t, pcl, "farm1", "cow-9", "c-ok", "ok", time.Minute)
	e.sendCommand(t, pcl, "farm1", "cow-9", "c-fail", "fail", time.Minute)
	e.sendCommand(t, pcl, "farm1", "cow-9", "c-dup", "dup", time.Minute)
	e.sendCommand(t, pcl, "farm1", "cow-9", "c-slow", "slow", time.Second)
	e.sendCommand(t, pcl, "farm1", "goat-1", "c-v3", "beep", time.Minute)

	ok := e.waitStatus(t, "c-ok", control.Succeeded)
	if ok.Result == nil || *ok.Result != `{"interval":60}` || ok.SentAt.IsZero() || ok.DeliveredAt.IsZero() || ok.QueuedAt.IsZero() || ok.RoundTrip() <= 0 {
		t.Errorf("c-ok = %+v, want queued, sent, delivered, succeeded with the result", ok)
	}
	if f := e.waitStatus(t, "c-fail", control.Failed); f.Message == nil || *f.Message != "battery too low" {
		t.Errorf("c-fail = %+v", f)
	}
	e.waitStatus(t, "c-dup", control.Succeeded)
	slow := e.waitStatus(t, "c-slow", control.Expired)
	waitFor(t, 30*time.Second, "late reply recorded", func() bool {
		s := e.commandsState(t)["c-slow"]
		return !s.LateReplyAt.IsZero()
	})
	if s := e.commandsState(t)["c-slow"]; s.Status != control.Expired || s.EndedAt != slow.EndedAt {
		t.Errorf("late reply was applied: %+v", s)
	}

	// The v3.1.1 device got its command on .../commands/{id}, with the
	// reply topic in the body, and replies with mosquitto_pub.
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v (%s)", err, subOut.String())
	}
	topic, body, _ := strings.Cut(strings.TrimSpace(subOut.String()), " ")
	var msg CommandMessage
	mustf(t, json.Unmarshal([]byte(body), &msg), "v3.1.1 command body %q", body)
	if topic != "devices/farm1/goat-1/commands/c-v3" || msg.ReplyTopic != "devices/farm1/goat-1/replies/c-v3" {
		t.Fatalf("v3.1.1 device got %s %+v", topic, msg)
	}
	pub := exec.CommandContext(ctx, "mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-q", "1",
		"-i", "farm1/goat-1", "-t", msg.ReplyTopic, "-m", `{"status":"succeeded","result":"beeped"}`)
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	if v3 := e.waitStatus(t, "c-v3", control.Succeeded); v3.Result == nil || *v3.Result != `"beeped"` {
		t.Errorf("c-v3 = %+v", v3)
	}

	// Another device replying to cow-9's command is refused, and so is a
	// reply to a command nobody sent; c-ok stays as it was.
	other := newPublisher(t, mqttURL, "farm1/cow-2", nil)
	other.publish(t, "devices/farm1/cow-2/replies/c-ok", []byte(`{"status":"failed"}`), nil)
	other.publish(t, "devices/farm1/cow-2/replies/nope", []byte(`{"status":"failed"}`), nil)
	reasons := map[string]bool{}
	for _, c := range e.consume(t, 2, 30*time.Second) {
		if d, ok := c.value.(*schemas.DeadLetter); ok {
			reasons[d.Reason] = true
		}
	}
	if !reasons[string(ReasonReplyWrongDevice)] || !reasons[string(ReasonReplyUnknown)] {
		t.Errorf("dead letters %v, want %s and %s", reasons, ReasonReplyWrongDevice, ReasonReplyUnknown)
	}
	final := e.commandsState(t)
	if c := final["c-ok"]; c.Status != control.Succeeded {
		t.Errorf("c-ok after a foreign reply: %+v", c)
	}
	if c := final["c-dup"]; c.Status != control.Succeeded || c.Result != nil {
		t.Errorf("c-dup after the duplicate reply: %+v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Errorf("v5 device got %d commands, want 4", len(got))
	}
}

func hostPort(t *testing.T, mqttURL string) (string, string) {
	t.Helper()
	rest := strings.TrimPrefix(mqttURL, "tcp://")
	rest = strings.TrimPrefix(rest, "mqtt://")
	h, p, ok := strings.Cut(rest, ":")
	if !ok {
		t.Fatalf("mqtt url %q has no port", mqttURL)
	}
	return h, p
}
