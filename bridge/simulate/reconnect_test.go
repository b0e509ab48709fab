package simulate

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationBrokerRestart stops the broker mid-run and starts a new one
// on the same address: the simulator reconnects by itself and goes on
// publishing; messages caught in the outage are retried, and whatever
// could not be delivered is counted, never silently dropped.
func TestIntegrationBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	srv, err := devstack.NewMQTT(l, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	broker := "tcp://" + addr
	sub1 := subscribe(t, broker)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan Summary, 1)
	go func() {
		s, err := Run(ctx, Config{MQTTURL: broker, Devices: 10, Rate: 100, Connections: 2, MediaRatio: -1, SummaryEvery: -1}, devtest.Logger())
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	waitFor(t, "traffic before the restart", 60*time.Second, func() bool { return sub1.count() >= 50 })
	_ = srv.Close()
	before := sub1.count() // sub1 reconnects to the new broker later and counts on

	var l2 net.Listener
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l2, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv2, err := devstack.NewMQTT(l2, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	sub2 := subscribe(t, broker)
	waitFor(t, "traffic after the restart", 60*time.Second, func() bool { return sub2.count() >= 50 })
	cancel()
	select {
	case s := <-done:
		if s.Total() < int64(before+sub2.count()) || s.PublishErrors != 0 {
			t.Fatalf("summary %s, but %d arrived before the restart and %d after", s, before, sub2.count())
		}
	case <-time.After(DrainTimeout + 30*time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
