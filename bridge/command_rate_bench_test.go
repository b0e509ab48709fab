package bridge

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// pace sleeps until the i-th send is due (start + i × interval); a loop
// that fell behind sends at once, so the offered rate holds on average.
func pace(start time.Time, i int, interval time.Duration) {
	if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
		time.Sleep(d)
	}
}

// quantileMS returns the p-quantile of d in milliseconds (d is sorted in place).
func quantileMS(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
}

// BenchmarkCommandRate paces commands at DROVER_BENCH_CMD_RATE per second
// (default 1000) for DROVER_BENCH_CMD_SECONDS (default 5) and measures the
// round trip of each, in one run, two ways:
//
//   - bare: a requester publishes a QoS 1 request with a Response Topic
//     straight to an answering MQTT v5 device on the embedded broker and
//     waits for the reply (no Kafka, no bridge);
//   - drover: the command is produced to commands.devices, the bridge
//     publishes it to the same kind of device on the same broker, the
//     reply comes back through the bridge, and the time ends when the
//     succeeded record is read from commands.status.
//
// It reports p50/p99 of both (bare-*, e2e-*), the lifecycle's own round
// trip (sent → reply, rtt-*) and the rate drover completed (done-cmd/s:
// below the offered rate, the downlink is the bottleneck and the
// latencies are queueing). Run once: -benchtime 1x.
func BenchmarkCommandRate(b *testing.B) {
	rate := devtest.EnvInt("DROVER_BENCH_CMD_RATE", 1000)
	secs := devtest.EnvInt("DROVER_BENCH_CMD_SECONDS", 5)
	n := rate * secs
	interval := time.Second / time.Duration(rate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	e := newEnv(b)
	mqttURL := devtest.MQTT(b)
	connectDevice(b, mqttURL, "farm1/rate-1", true, false)

	// Bare: the same broker, the same answering device.
	var mu sync.Mutex
	started := map[string]time.Time{}
	var bare []time.Duration
	req := newPublisher(b, mqttURL, "requester", func(p *paho.Publish) {
		id := string(p.Properties.CorrelationData)
		mu.Lock()
		if s, ok := started[id]; ok {
			bare = append(bare, time.Since(s))
			delete(started, id)
		}
		mu.Unlock()
	})
	if _, err := req.cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/farm1/rate-1/replies/+", QoS: 1}}}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	b.ResetTimer()
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		pace(t0, i, interval)
		id := "bare-" + strconv.Itoa(i)
		body := []byte(`{"command_id":"` + id + `","name":"ping","payload":{}}`)
		mu.Lock()
		started[id] = time.Now()
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = req.cm.Publish(ctx, &paho.Publish{Topic: "devices/farm1/rate-1/commands/" + id, QoS: 1, Payload: body,
				Properties: &paho.PublishProperties{ResponseTopic: control.ReplyTopic("farm1", "rate-1", id), CorrelationData: []byte(id)}})
		}()
	}
	wg.Wait()
	for deadline := time.Now().Add(time.Minute); ; {
		mu.Lock()
		left := len(started)
		mu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Drover: commands.devices → bridge → device → bridge → commands.status.
	cfg := e.config(mqttURL, "rate-bridge")
	cfg.Downlink = true
	br, _ := runBridge(b, cfg)
	time.Sleep(2 * time.Second) // the downlink joined its group, the device's presence is known
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer pcl.Close()
	st, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topics.CommandStatus), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sent := map[string]time.Time{}
	var e2e, rtt []time.Duration
	folded := map[string]*control.Command{}
	readDone := make(chan struct{})
	var lastDone time.Time
	go func() {
		defer close(readDone)
		for len(e2e) < n && ctx.Err() == nil {
			fs := st.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var s schemas.CommandStatus
				if _, err := e.serde.Decode(ctx, r.Value, &s); err != nil {
					return
				}
				c := folded[s.CommandID]
				if c == nil {
					c = &control.Command{}
					folded[s.CommandID] = c
				}
				control.Fold(c, &s)
				if c.Status == control.Succeeded && !c.EndedAt.IsZero() {
					mu.Lock()
					if t0, ok := sent[s.CommandID]; ok {
						e2e = append(e2e, now.Sub(t0))
						rtt = append(rtt, c.RoundTrip())
						delete(sent, s.CommandID)
						lastDone = now
					}
					mu.Unlock()
				}
			})
		}
	}()
	first := time.Now()
	for i := range n {
		pace(first, i, interval)
		id := "rate-" + strconv.Itoa(i)
		now := time.Now().UTC().Truncate(time.Millisecond)
		exp := now.Add(5 * time.Minute)
		c := schemas.DeviceCommand{CommandID: id, Tenant: "farm1", DeviceID: "rate-1", Name: "ping", Payload: `{}`, CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
		v, err := e.serde.Encode(ctx, topics.Commands, &c)
		if err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		sent[id] = time.Now()
		mu.Unlock()
		pcl.Produce(ctx, &kgo.Record{Topic: topics.Commands, Key: []byte("farm1/rate-1"), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	offered := time.Since(first)
	select {
	case <-readDone:
	case <-time.After(time.Duration(devtest.EnvInt("DROVER_BENCH_CMD_WAIT_S", 180)) * time.Second):
	}
	cancel()
	<-readDone
	mu.Lock()
	for id := range sent {
		if c := folded[id]; c != nil {
			b.Logf("not done: %s status %s sends %d delivered %v", id, c.Status, c.Sends, !c.DeliveredAt.IsZero())
		} else {
			b.Logf("not done: %s: no status record", id)
		}
	}
	mu.Unlock()
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	done := len(e2e)
	b.ReportMetric(float64(rate), "offered-cmd/s")
	b.ReportMetric(float64(n)/offered.Seconds(), "sent-cmd/s")
	if done > 0 {
		b.ReportMetric(float64(done)/lastDone.Sub(first).Seconds(), "done-cmd/s")
	}
	b.ReportMetric(float64(done), "done")
	b.ReportMetric(float64(len(bare)), "bare-done")
	// A reconnect of the bridge's MQTT session during the run is a fault
	// (the broker dropped it), not load: it must stay 0.
	b.ReportMetric(float64(br.connections.Load()-1), "reconnects")
	b.ReportMetric(quantileMS(bare, 0.5), "bare-p50-ms")
	b.ReportMetric(quantileMS(bare, 0.99), "bare-p99-ms")
	b.ReportMetric(quantileMS(e2e, 0.5), "e2e-p50-ms")
	b.ReportMetric(quantileMS(e2e, 0.99), "e2e-p99-ms")
	b.ReportMetric(quantileMS(rtt, 0.5), "rtt-p50-ms")
	b.ReportMetric(quantileMS(rtt, 0.99), "rtt-p99-ms")
}
