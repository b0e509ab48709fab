package devstack

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
)

// flowBroker starts the embedded broker with a small in-flight limit.
func flowBroker(t *testing.T, maxInflight int, maxWait time.Duration) (*mqtt.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := newMQTT(l, nil, maxInflight, maxWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, l.Addr().String()
}

// sessionClient connects an MQTT 5 client with a persistent session
// (clean start off) whose messages are counted.
func sessionClient(t *testing.T, addr, id string, got *atomic.Int64) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(paho.PublishReceived) (bool, error) {
				if got != nil {
					got.Add(1)
				}
				return true, nil
			},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func subscribe(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
}

func publish(c *paho.Client, topic string, i int, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(i))})
	return err
}

func waitCount(t *testing.T, n *atomic.Int64, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // and nothing more arrives
	if got := n.Load(); got != want {
		t.Fatalf("received %d messages, want %d", got, want)
	}
}

// TestIntegrationMQTTFullSessionRefusesInsteadOfDropping fills an offline
// subscriber's session to the in-flight limit: further QoS 1 publishes
// wait, then are refused with PUBACK 0x97, and the broker drops nothing it
// acknowledged — the subscriber gets exactly the accepted messages when it
// comes back. (Upstream mochi acknowledged them all and dropped the rest.)
func TestIntegrationMQTTFullSessionRefusesInsteadOfDropping(t *testing.T) {
	srv, addr := flowBroker(t, 64, 200*time.Millisecond)
	var got atomic.Int64
	sub := sessionClient(t, addr, "bridge", &got)
	subscribe(t, sub, "devices/#")
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub := sessionClient(t, addr, "device", nil)
	accepted, refused := 0, 0
	for i := 0; i < 70; i++ {
		if err := publish(pub, "devices/t/d/sensor", i, 5*time.Second); err != nil {
			refused++
			continue
		}
		accepted++
	}
	limit := 64 - flowMargin(64)
	if accepted != limit || refused != 70-limit {
		t.Fatalf("accepted %d, refused %d; want %d accepted (the limit) and the rest refused", accepted, refused, limit)
	}
	if d := atomic.LoadInt64(&srv.Info.InflightDropped); d != 0 {
		t.Fatalf("the broker dropped %d acknowledged messages", d)
	}
	sessionClient(t, addr, "bridge", &got)
	waitCount(t, &got, int64(accepted))
}

// TestIntegrationMQTTFullSessionHoldsPublisher: a publish held back for a
// full subscriber completes once the subscriber drains its session.
func TestIntegrationMQTTFullSessionHoldsPublisher(t *testing.T) {
	_, addr := flowBroker(t, 64, 20*time.Second)
	var got atomic.Int64
	sub := sessionClient(t, addr, "bridge", &got)
	subscribe(t, sub, "devices/#")
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub := sessionClient(t, addr, "device", nil)
	limit := 64 - flowMargin(64)
	for i := 0; i < limit; i++ {
		if err := publish(pub, "devices/t/d/sensor", i, 5*time.Second); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- publish(pub, "devices/t/d/sensor", limit, 20*time.Second) }()
	select {
	case err := <-done:
		t.Fatalf("publish beyond the limit returned (%v) while the subscriber was full", err)
	case <-time.After(500 * time.Millisecond):
	}
	sessionClient(t, addr, "bridge", &got)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("held publish: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("held publish did not complete after the subscriber drained")
	}
	waitCount(t, &got, int64(limit+1))
}

// TestIntegrationMQTTSharedPrefersConnected: with one member of a shared
// group gone (its session kept), every message goes to the connected one
// and none waits in the gone member's session.
func TestIntegrationMQTTSharedPrefersConnected(t *testing.T) {
	_, addr := flowBroker(t, 1024, time.Second)
	var gotA, gotB atomic.Int64
	a := sessionClient(t, addr, "bridge-a", &gotA)
	b := sessionClient(t, addr, "bridge-b", &gotB)
	subscribe(t, a, "$share/bridge/devices/#")
	subscribe(t, b, "$share/bridge/devices/#")
	if err := a.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pub := sessionClient(t, addr, "device", nil)
	const n = 50
	for i := 0; i < n; i++ {
		if err := publish(pub, fmt.Sprintf("devices/t/d%d/sensor", i), i, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, &gotB, n)
	sessionClient(t, addr, "bridge-a", &gotA)
	waitCount(t, &gotA, 0)
}
