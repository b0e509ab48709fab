package simulate

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
)

// benchN is the number of messages per measurement: DROVER_BENCH_N, default 20000.
func benchN(b *testing.B) int {
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("DROVER_BENCH_N=%q: want a positive integer", s)
		}
		return n
	}
	return 20_000
}

// barePublish publishes msgs with QoS 1 through one autopaho connection and
// inFlight goroutines, the ceiling a publisher can reach on this broker.
func barePublish(b *testing.B, broker string, msgs []Message, inFlight int) time.Duration {
	u, _ := url.Parse(broker)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ClientConfig: paho.ClientConfig{ClientID: "bench-bare"},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(msgs); i += inFlight {
				if _, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: msgs[i].Topic, Payload: msgs[i].Payload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	_ = cm.Disconnect(context.Background())
	return d
}

// BenchmarkPublish measures the simulator's sustained publish throughput
// (generation, pacing at an unreachable rate, QoS 1 publishing with
// --in-flight 32) against a real mosquitto, and in the same run the
// ceiling: a bare paho publisher sending the same pre-generated messages
// with the same concurrency. It reports both and their ratio.
func BenchmarkPublish(b *testing.B) {
	n := benchN(b)
	broker := devtest.Mosquitto(b)
	cfg := Config{MQTTURL: broker, Devices: 1000, Rate: MaxRate, Burst: MaxBurst, Count: int64(n), InvalidRatio: 0.05,
		MediaRatio: -1, Seed: 5, Clock: newFakeClock(epoch), SummaryEvery: -1, InFlight: DefaultInFlight}
	g, err := NewGenerator(cfg)
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]Message, 0, n)
	genStart := time.Now()
	for range n {
		m, _ := g.Next(epoch)
		msgs = append(msgs, m)
	}
	genRate := float64(n) / time.Since(genStart).Seconds()
	b.ResetTimer()
	for range b.N {
		bare := float64(n) / barePublish(b, broker, msgs, DefaultInFlight).Seconds()
		start := time.Now()
		sum, err := Run(context.Background(), cfg, devtest.Logger())
		if err != nil {
			b.Fatal(err)
		}
		sim := float64(sum.Total()) / time.Since(start).Seconds()
		if sum.Total() != int64(n) || sum.PublishErrors != 0 {
			b.Fatalf("simulator: %s", sum)
		}
		b.ReportMetric(sim, "sim_msg/s")
		b.ReportMetric(bare, "bare_msg/s")
		b.ReportMetric(sim/bare, "ratio")
		b.ReportMetric(genRate, "gen_msg/s")
		line := fmt.Sprintf("simulate publish, %d QoS 1 messages to mosquitto: simulator %.0f msg/s, bare paho publisher %.0f msg/s, ratio %.2f (generator alone %.0f msg/s)",
			n, sim, bare, sim/bare, genRate)
		b.Log(line)
		fmt.Println(line)
	}
}
