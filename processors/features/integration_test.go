package features

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// cluster is an embedded Kafka with drover's topics (few partitions) and a
// registry.
type cluster struct {
	brokers []string
	serde   *schemas.Serde
	cl      *kgo.Client
}

func newCluster(t *testing.T, partitions int32) *cluster {
	t.Helper()
	kc := devtest.Kafka(t, kfake.SeedTopics(partitions, topics.RawSensor, topics.RawGPS, topics.Features, topics.StateLatest, topics.Alerts, topics.DLQ))
	serde, _ := newSerde(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{brokers: kc.ListenAddrs(), serde: serde, cl: cl}
}

func (c *cluster) produce(t *testing.T, topic, key string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := c.serde.Encode(ctx, topic, v)
	if err != nil {
		t.Fatal(err)
	}
	c.produceRaw(t, topic, key, b)
}

func (c *cluster) produceRaw(t *testing.T, topic, key string, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func reading(device, metric string, ts time.Time, v float64) *schemas.SensorReading {
	return &schemas.SensorReading{EventID: fmt.Sprintf("%s-%s-%d", device, metric, ts.UnixMilli()), Tenant: "farm", DeviceID: device,
		TS: ts, IngestedAt: ts, Metric: metric, Value: v, Source: "test", Attrs: map[string]string{}}
}

// collector reads features.events from the start.
type collector struct {
	cl    *kgo.Client
	serde *schemas.Serde
	byID  map[string]*schemas.Feature
	n     int
}

func newCollector(t *testing.T, c *cluster) *collector {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(topics.Features), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &collector{cl: cl, serde: c.serde, byID: map[string]*schemas.Feature{}}
}

// waitFor polls until cond holds on the features seen so far (latest per
// feature id), failing after 60 s.
func (co *collector) waitFor(t *testing.T, what string, cond func(map[string]*schemas.Feature) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !cond(co.byID) {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fs := co.cl.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s; have %d features (%d records)", what, len(co.byID), co.n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var f schemas.Feature
			if _, err := co.serde.Decode(ctx, r.Value, &f); err != nil {
				t.Errorf("decoding feature: %v", err)
				return
			}
			if string(r.Key) != f.DeviceID {
				t.Errorf("feature key %q, device %q", r.Key, f.DeviceID)
			}
			co.n++
			co.byID[f.FeatureID] = &f
		})
	}
}

// runFeatures runs a features processor until the test ends or stop is
// called; stop waits for it to leave.
func runFeatures(t *testing.T, c *cluster, cfg Config, kopts ...func(*groupkit.Kafka)) (p *Processor, stop func()) {
	t.Helper()
	k := groupkit.NewKafka(c.brokers)
	for _, o := range kopts {
		o(&k)
	}
	k.Log = devtest.Logger()
	p, err := New(c.serde, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, k) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("features run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("features processor did not stop within 60s")
		}
	}
	t.Cleanup(stop)
	waitReady(t, p)
	return p, stop
}

func waitReady(t *testing.T, p interface{ Ready(context.Context) error }) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for p.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("processor not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 4)
	clock := &fakeClock{now: t0}
	// raw.sensor and raw.gps are separate topics, so goka may interleave
	// them in any order; a generous lateness makes every record count
	// whatever the interleaving (late ones re-emit the same feature id).
	_, stop := runFeatures(t, c, Config{Clock: clock, TickInterval: 100 * time.Millisecond, Lateness: 5 * time.Minute, IdleTimeout: time.Minute})
	co := newCollector(t, c)

	// A bad record first: it is skipped, the group keeps going.
	c.produceRaw(t, topics.RawSensor, "cow-0", []byte("not avro"))
	devices := []string{"cow-0", "cow-1", "cow-2", "cow-3", "cow-4", "cow-5"}
	for _, d := range devices {
		for i := 0; i < 6; i++ { // 6 readings 10 s apart: one full window
			c.produce(t, topics.RawSensor, d, reading(d, "temperature", t0.Add(time.Duration(i)*10*time.Second), float64(i)))
		}
		c.produce(t, topics.RawGPS, d, &schemas.GPSFix{EventID: d + "g1", Tenant: "farm", DeviceID: d, TS: t0, IngestedAt: t0, Lat: 0, Lon: 0, Source: "t", Attrs: map[string]string{}})
		c.produce(t, topics.RawGPS, d, &schemas.GPSFix{EventID: d + "g2", Tenant: "farm", DeviceID: d, TS: t0.Add(50 * time.Second), IngestedAt: t0, Lat: 0, Lon: 0.001, Source: "t", Attrs: map[string]string{}})
		c.produce(t, topics.RawSensor, d, reading(d, "temperature", t0.Add(time.Minute+15*time.Second), 9))
	}
	co.waitFor(t, "first-window features of every device", func(m map[string]*schemas.Feature) bool {
		for _, d := range devices {
			f := m[FeatureID(d, "temperature", t0, time.Minute)]
			g := m[FeatureID(d, MotionMetric, t0, time.Minute)]
			if f == nil || f.Count != 6 || *f.Mean != 2.5 || g == nil || g.Count != 2 || *g.DistanceM < 111 {
				return false
			}
		}
		return true
	})
	// The second window of every device closes by wall clock: due at
	// lastWall (t0) + max(idle, end+lateness-watermark) = t0+345s.
	clock.Set(t0.Add(10 * time.Minute))
	co.waitFor(t, "idle-closed second windows", func(m map[string]*schemas.Feature) bool {
		for _, d := range devices {
			if f := m[FeatureID(d, "temperature", t0.Add(time.Minute), time.Minute)]; f == nil || f.Count != 1 {
				return false
			}
		}
		return true
	})
	stop()
}

// TestIntegrationFeaturesRestart stops the group mid-window and starts a
// new instance: the open windows come back from the group table and the
// features are complete. The second instance produces with goka's sarama
// producer (the fallback), the first with the default franz-go one.
func TestIntegrationFeaturesRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 2)
	clock := &fakeClock{now: t0}
	cfg := Config{Clock: clock, TickInterval: -1}
	_, stop := runFeatures(t, c, cfg)
	co := newCollector(t, c)
	for i := 0; i < 3; i++ {
		c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", t0.Add(time.Duration(i)*10*time.Second), float64(i)))
	}
	// A first window elsewhere proves the first instance processed input.
	c.produce(t, topics.RawSensor, "cow-9", reading("cow-9", "temperature", t0, 1))
	c.produce(t, topics.RawSensor, "cow-9", reading("cow-9", "temperature", t0.Add(2*time.Minute), 1))
	co.waitFor(t, "cow-9's window", func(m map[string]*schemas.Feature) bool {
		return m[FeatureID("cow-9", "temperature", t0, time.Minute)] != nil
	})
	stop()

	_, stop2 := runFeatures(t, c, cfg, func(k *groupkit.Kafka) { k.SaramaProducer = true })
	for i := 3; i < 6; i++ {
		c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", t0.Add(time.Duration(i)*10*time.Second), float64(i)))
	}
	c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", t0.Add(2*time.Minute), 0))
	co.waitFor(t, "cow-1's window across the restart", func(m map[string]*schemas.Feature) bool {
		f := m[FeatureID("cow-1", "temperature", t0, time.Minute)]
		return f != nil && f.Count == 6 && *f.First == 0 && *f.Last == 5
	})
	stop2()
}

// TestIntegrationFeaturesRebalance runs one instance, starts a second one
// mid-stream (the partitions are split between them), stops the first
// (its partitions move back): every window is complete, none counted a
// record twice.
func TestIntegrationFeaturesRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 4)
	clock := &fakeClock{now: t0}
	cfg := Config{Clock: clock, TickInterval: -1}
	_, stopA := runFeatures(t, c, cfg)
	co := newCollector(t, c)
	const devices, minutes = 16, 6
	send := func(from, to int) {
		for m := from; m < to; m++ {
			for d := 0; d < devices; d++ {
				dev := fmt.Sprintf("cow-%02d", d)
				for i := 0; i < 4; i++ {
					c.produce(t, topics.RawSensor, dev, reading(dev, "temperature", t0.Add(time.Duration(m)*time.Minute+time.Duration(i)*15*time.Second), float64(i)))
				}
			}
		}
	}
	send(0, 2)
	_, stopB := runFeatures(t, c, cfg)
	send(2, 4)
	stopA()
	send(4, minutes)
	co.waitFor(t, "every closed window complete", func(m map[string]*schemas.Feature) bool {
		for d := 0; d < devices; d++ {
			for w := 0; w < minutes-1; w++ {
				f := m[FeatureID(fmt.Sprintf("cow-%02d", d), "temperature", t0.Add(time.Duration(w)*time.Minute), time.Minute)]
				if f == nil || f.Count < 4 {
					return false
				}
				if f.Count > 4 {
					t.Fatalf("window %v of cow-%02d counted %d records, want 4", f.WindowStart, d, f.Count)
				}
			}
		}
		return true
	})
	stopB()
}
