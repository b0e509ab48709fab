package bridge

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// statusLog reads commands.status to its end and returns each command's
// statuses in the order they were written (a command's records share a
// key, so a partition: this is the order every reader sees).
func (e *env) statusLog(t testing.TB) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[string][]string{}
	done := false
	err := control.Follow(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.serde, func(r *schemas.CommandStatus) {
		out[r.CommandID] = append(out[r.CommandID], r.Status)
	}, func() { done = true; cancel() }, nil)
	mustf(t, err, "read %s", topics.CommandStatus)
	if !done {
		t.Fatalf("%s not read to its end within 20s", topics.CommandStatus)
	}
	return out
}

// TestIntegrationCommandReplyBeforeDelivered: the device answers a command
// before the bridge has handled the broker's PUBACK for it (the bridge is
// held after the PUBACK until the reply's succeeded record is in Kafka and
// folded), so succeeded is written before delivered. The command still
// ends succeeded for every reader (the first terminal record wins, a later
// delivered only fills in its time), the reply is acknowledged, the
// downlink commits the command's offset, and the next command goes
// through.
func TestIntegrationCommandReplyBeforeDelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	connectDevice(t, mqttURL, "farm1/quick-1", true, false)
	cfg := e.config(mqttURL, "early-reply-bridge")
	cfg.Downlink = true
	var held atomic.Bool
	b, _ := runBridgeSetup(t, cfg, func(b *Bridge) {
		b.testPuback = func(id string) {
			if id != "early-1" {
				return
			}
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if c, ok := b.tracker.Get(id); ok && c.Status == control.Succeeded {
					held.Store(true)
					return
				}
			}
		}
	})
	time.Sleep(500 * time.Millisecond) // the device's connect events reach the bridge

	pcl := mustClient(t, e.brokers)
	e.sendCommand(t, pcl, "farm1", "quick-1", "early-1", "ping", time.Minute)
	e.waitStatus(t, "early-1", control.Succeeded)
	waitFor(t, 30*time.Second, "early-1's delivered record", func() bool { return !e.commandsState(t)["early-1"].DeliveredAt.IsZero() })
	if !held.Load() {
		t.Fatal("the reply was not recorded while the bridge held the PUBACK: the race was not exercised")
	}
	if got := strings.Join(e.statusLog(t)["early-1"], ","); got != "queued,sent,succeeded,delivered" {
		t.Errorf("early-1's records: %s, want queued,sent,succeeded,delivered", got)
	}
	c := e.commandsState(t)["early-1"]
	if c.Status != control.Succeeded || c.SentAt.IsZero() || c.DeliveredAt.IsZero() || c.RoundTrip() <= 0 {
		t.Errorf("early-1 folded: %+v, want succeeded with its send and delivery times", c)
	}
	if tc, _ := b.tracker.Get("early-1"); tc.Status != control.Succeeded || tc.DeliveredAt.IsZero() {
		t.Errorf("the bridge's tracker: %+v, want succeeded and delivered", tc)
	}
	waitFor(t, 10*time.Second, "the reply acknowledged", func() bool { return b.infl.Load() == 0 })
	waitFor(t, 10*time.Second, "early-1's offset committed", func() bool {
		return committed(t, pcl, DefaultCommandsGroup, topics.Commands) == e.endOffsets(t, pcl, topics.Commands)
	})

	e.sendCommand(t, pcl, "farm1", "quick-1", "early-2", "ping", time.Minute)
	e.waitStatus(t, "early-2", control.Succeeded)
}

// TestIntegrationCommandReplyDuplicateWhileWriting: a device answers a
// command twice (succeeded, then failed), the second time while the first
// reply's record is acknowledged by Kafka but not yet folded by the bridge
// (held by a hook). Neither MQTT message is acknowledged before that; then
// both are, the duplicate writes nothing and the first reply wins.
func TestIntegrationCommandReplyDuplicateWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	dev := connectDevice(t, mqttURL, "farm1/twice-1", true, true) // hold: the test replies
	cfg := e.config(mqttURL, "dup-reply-bridge")
	cfg.Downlink = true
	release := make(chan struct{})
	var holding atomic.Bool
	var replies atomic.Int32 // replies the bridge received
	b, _ := runBridgeSetup(t, cfg, func(b *Bridge) {
		b.testOnReceive = func(p *paho.Publish) {
			if p.Topic == control.ReplyTopic("farm1", "twice-1", "dup-1") {
				replies.Add(1)
			}
		}
		b.testStatusAcked = func(r *schemas.CommandStatus) {
			if r.CommandID == "dup-1" && control.Status(r.Status).Terminal() && holding.CompareAndSwap(false, true) {
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
			}
		}
	})
	time.Sleep(500 * time.Millisecond)

	pcl := mustClient(t, e.brokers)
	e.sendCommand(t, pcl, "farm1", "twice-1", "dup-1", "ping", time.Minute)
	e.waitStatus(t, "dup-1", control.Delivered)
	waitFor(t, 10*time.Second, "the device got dup-1", func() bool { return len(dev.ids()) == 1 })
	reply := func(body string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := dev.cm.Publish(ctx, &paho.Publish{Topic: control.ReplyTopic("farm1", "twice-1", "dup-1"), QoS: 1,
			Payload: []byte(body), Properties: &paho.PublishProperties{CorrelationData: []byte("dup-1")}}); err != nil {
			t.Fatal(err)
		}
	}
	reply(`{"status":"succeeded","result":1}`)
	waitFor(t, 10*time.Second, "the first reply's record acknowledged by Kafka", holding.Load)
	reply(`{"status":"failed","message":"second answer"}`)
	waitFor(t, 10*time.Second, "both replies received", func() bool { return replies.Load() == 2 })
	time.Sleep(300 * time.Millisecond) // a duplicate acknowledged too early would be by now
	if n := b.infl.Load(); n != 2 {
		t.Errorf("%d replies in flight while the first one's record is not folded, want 2 (neither acknowledged)", n)
	}
	close(release)
	waitFor(t, 10*time.Second, "both replies acknowledged", func() bool { return b.infl.Load() == 0 })

	c := e.waitStatus(t, "dup-1", control.Succeeded)
	if c.Result == nil || *c.Result != "1" || c.Message != nil {
		t.Errorf("dup-1 = %+v, want the first reply's result", c)
	}
	if got := strings.Join(e.statusLog(t)["dup-1"], ","); got != "queued,sent,delivered,succeeded" {
		t.Errorf("dup-1's records: %s, want one terminal record (queued,sent,delivered,succeeded)", got)
	}
	if d, a := counterValue(t, b.m.replies.WithLabelValues("duplicate")), counterValue(t, b.m.replies.WithLabelValues("applied")); d != 1 || a != 1 {
		t.Errorf("replies: %v applied, %v duplicate; want 1 and 1", a, d)
	}
}
