package devstack_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
)

// autoSubscriber connects an autopaho client configured like the bridge's
// (session expiry set, so autopaho sends Request Problem Information = 0;
// Receive Maximum receiveMax), subscribes to filter at QoS 1 and hands
// every received PUBLISH to onMsg.
func autoSubscriber(t *testing.T, mqttURL, id, filter string, receiveMax uint16, onMsg func(*paho.Publish)) {
	t.Helper()
	u, err := url.Parse(mqttURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         300,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(100 * time.Millisecond),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			// What autopaho sends anyway once a session expiry is set;
			// spelled out so the test does not depend on that default.
			cp.Properties.RequestProblemInfo = false
			cp.Properties.ReceiveMaximum = &receiveMax
			return cp, nil
		},
		ClientConfig: paho.ClientConfig{
			ClientID: id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				onMsg(pr.Packet)
				return true, nil
			}},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cm.Disconnect(dctx)
		dc()
		cancel()
		<-cm.Done()
	})
	actx, ac := context.WithTimeout(ctx, 10*time.Second)
	defer ac()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("subscriber %s connect: %v", id, err)
	}
	sa, err := cm.Subscribe(actx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
}

// TestIntegrationMQTTQoS1LoadNoDeadlock is the regression test for two
// mochi bugs patched in third_party/mochi-server (see DROVER.md there): a
// QoS 1 subscriber with a Receive Maximum acks while several QoS 1
// publishers deliver to it. Unpatched mochi deadlocks within a few hundred
// messages (recursive read lock in Inflight.NextImmediate: the subscriber's
// connection, the publishers and Server.Close hang); with only that fixed,
// delivery stops after ~600 messages (send-quota leak for packets queued
// beyond the Receive Maximum).
func TestIntegrationMQTTQoS1LoadNoDeadlock(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const publishers, perPublisher, window = 4, 1250, 16
	const receiveMax = 64 // below the publishers' backlog: mochi queues the rest and sends it from NextImmediate
	const total = publishers * perPublisher
	mqttURL := devtest.MQTT(t)

	var mu sync.Mutex
	seen := make(map[string]bool, total)
	all := make(chan struct{})
	autoSubscriber(t, mqttURL, "load-sub", "load/#", receiveMax, func(p *paho.Publish) {
		mu.Lock()
		defer mu.Unlock()
		if !seen[string(p.Payload)] {
			seen[string(p.Payload)] = true
			if len(seen) == total {
				close(all)
			}
		}
	})
	received := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pubErr := make(chan error, publishers*window)
	for p := 0; p < publishers; p++ {
		c, _ := v5Client(t, mqttURL, fmt.Sprintf("load-pub-%d", p))
		for w := 0; w < window; w++ { // window QoS 1 publishes in flight per publisher
			go func() {
				for i := w; i < perPublisher; i += window {
					_, err := c.Publish(ctx, &paho.Publish{
						Topic:   fmt.Sprintf("load/%d", p),
						QoS:     1,
						Payload: fmt.Appendf(nil, "%d-%d", p, i),
					})
					if err != nil {
						pubErr <- fmt.Errorf("publisher %d, message %d: %w", p, i, err)
						return
					}
				}
			}()
		}
	}
	select {
	case <-all:
	case err := <-pubErr:
		t.Fatalf("%v (subscriber received %d of %d): the broker deadlocked or stalled", err, received(), total)
	case <-ctx.Done():
		t.Fatalf("subscriber received %d of %d messages within 60s: the broker deadlocked or stalled", received(), total)
	}
}

// TestIntegrationMQTTUserPropertiesWithSessionExpiry is the regression test
// for mochi stripping the user properties of delivered PUBLISHes from a
// client that sent Request Problem Information = 0, as autopaho does as
// soon as it sets a session expiry (patched in third_party/mochi-server).
func TestIntegrationMQTTUserPropertiesWithSessionExpiry(t *testing.T) {
	mqttURL := devtest.MQTT(t)
	msgs := make(chan *paho.Publish, 10)
	autoSubscriber(t, mqttURL, "props-sub", "devices/#", 1024, func(p *paho.Publish) { msgs <- p })

	pub, _ := v5Client(t, mqttURL, "props-pub")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, qos := range []byte{0, 1} {
		_, err := pub.Publish(ctx, &paho.Publish{
			Topic:   "devices/t1/d1/sensor",
			QoS:     qos,
			Payload: []byte("{}"),
			Properties: &paho.PublishProperties{
				ContentType: "application/json",
				User:        paho.UserProperties{{Key: "schema", Value: "sensor.v1"}, {Key: "trace", Value: fmt.Sprint(qos)}},
			},
		})
		if err != nil {
			t.Fatalf("publish qos %d: %v", qos, err)
		}
		p := receive(t, msgs)
		if p.Properties == nil {
			t.Fatalf("qos %d: no properties", qos)
		}
		if got := p.Properties.User.Get("schema"); got != "sensor.v1" {
			t.Errorf("qos %d: user property schema = %q, want sensor.v1 (user properties %v)", qos, got, p.Properties.User)
		}
		if got := p.Properties.User.Get("trace"); got != fmt.Sprint(qos) {
			t.Errorf("qos %d: user property trace = %q, want %d", qos, got, qos)
		}
		if p.Properties.ContentType != "application/json" {
			t.Errorf("qos %d: content type = %q", qos, p.Properties.ContentType)
		}
	}
}
