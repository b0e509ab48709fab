package state

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// BenchmarkStateRestore fills the state group table with one entry per
// device (DROVER_BENCH_DEVICES, default 100k) and measures how long a new
// instance takes from start to ready: (1) with in-memory storage
// (groupkit.MemoryBuilder), which replays the whole table topic from Kafka,
// (2) with --state-dir (LevelDB), which replays only what the local copy
// lacks, and (3) the baseline, goka's own storage.MemoryBuilder, whose
// insert re-sorts all keys (quadratic; set DROVER_BENCH_GOKA_MEMORY=0 to
// skip it). It also reports the first instance's processing rate.
func BenchmarkStateRestore(b *testing.B) {
	n := 100_000
	if s := os.Getenv("DROVER_BENCH_DEVICES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("DROVER_BENCH_DEVICES=%q: want a positive integer", s)
		}
		n = v
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		kc := devtest.Kafka(b, kfake.SeedTopics(8, topics.RawSensor, topics.RawGPS, topics.StateLatest))
		brokers := kc.ListenAddrs()
		serde, _ := newSerde(b)
		benchFill(b, brokers, serde, n)
		dir := b.TempDir()
		b.StartTimer()

		// First instance, with a LevelDB copy: process every device.
		start := time.Now()
		stop, p := benchStart(b, brokers, serde, dir)
		waitCount(b, p.m.records.WithLabelValues(topics.RawSensor), n)
		rate := float64(n) / time.Since(start).Seconds()
		stop()

		// A fresh instance restoring from Kafka (memory storage).
		start = time.Now()
		stop, _ = benchStart(b, brokers, serde, "")
		fromKafka := time.Since(start)
		stop()

		// The same consuming with sarama (the former path) instead of
		// franz-go (processors/gokakgo).
		start = time.Now()
		stop, _ = benchStartStorage(b, brokers, serde, "", nil, true)
		fromKafkaSarama := time.Since(start)
		stop()
		b.ReportMetric(fromKafkaSarama.Seconds(), "restore-kafka-sarama-s")
		fmt.Printf("state restore, %d devices: start-to-ready %.2fs consuming with franz-go (gokakgo) vs %.2fs with sarama\n",
			n, fromKafka.Seconds(), fromKafkaSarama.Seconds())

		// The same with goka's in-memory storage (the former default).
		var gokaMem time.Duration
		if os.Getenv("DROVER_BENCH_GOKA_MEMORY") != "0" {
			start = time.Now()
			stop, _ = benchStartStorage(b, brokers, serde, "", storage.MemoryBuilder())
			gokaMem = time.Since(start)
			stop()
			b.ReportMetric(gokaMem.Seconds(), "restore-goka-memory-s")
			b.ReportMetric(gokaMem.Seconds()/fromKafka.Seconds(), "goka-memory/memory")
			fmt.Printf("state restore, %d devices: start-to-ready %.2fs with groupkit.MemoryBuilder vs %.2fs with goka's storage.MemoryBuilder (%.1fx faster)\n",
				n, fromKafka.Seconds(), gokaMem.Seconds(), gokaMem.Seconds()/fromKafka.Seconds())
		}

		// A fresh instance with the LevelDB copy of the first one.
		start = time.Now()
		stop, _ = benchStart(b, brokers, serde, dir)
		fromDisk := time.Since(start)
		stop()

		b.ReportMetric(rate, "first-run-rec/s")
		b.ReportMetric(fromKafka.Seconds(), "restore-kafka-s")
		b.ReportMetric(fromDisk.Seconds(), "restore-leveldb-s")
		b.ReportMetric(fromKafka.Seconds()/fromDisk.Seconds(), "kafka/leveldb")
		fmt.Printf("state restore, %d devices: start-to-ready %.2fs restoring from Kafka (memory storage), %.2fs with --state-dir (LevelDB), ratio %.1f; first run %.0f rec/s\n",
			n, fromKafka.Seconds(), fromDisk.Seconds(), fromKafka.Seconds()/fromDisk.Seconds(), rate)
	}
}

func benchFill(b *testing.B, brokers []string, serde *schemas.Serde, n int) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000), kgo.DefaultProduceTopic(topics.RawSensor))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	// The state group also reads alerts and desired-state commands.
	if _, err := kadm.NewClient(cl).CreateTopics(ctx, 4, 1, nil, topics.Alerts, topics.Commands); err != nil {
		b.Fatal(err)
	}
	var failed atomic.Value
	t := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("cow-%06d", i)
		v, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: dev, Tenant: "farm", DeviceID: dev, TS: t, IngestedAt: t,
			Metric: "temperature", Value: 38.5, Source: "bench", Attrs: map[string]string{"firmware": "1.0.0"}})
		if err != nil {
			b.Fatal(err)
		}
		cl.Produce(ctx, &kgo.Record{Key: []byte(dev), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// benchStart starts a state processor and returns once it is ready.
func benchStart(b *testing.B, brokers []string, serde *schemas.Serde, dir string) (stop func(), p *Processor) {
	b.Helper()
	return benchStartStorage(b, brokers, serde, dir, nil)
}

// benchStartStorage is benchStart with a storage builder (nil: the default).
func benchStartStorage(b *testing.B, brokers []string, serde *schemas.Serde, dir string, sb storage.Builder, saramaConsumer ...bool) (stop func(), p *Processor) {
	b.Helper()
	p, err := New(serde, Config{Registerer: prometheus.NewRegistry(), TickInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	k := groupkit.NewKafka(brokers)
	k.StorageDir = dir
	k.Storage = sb
	k.SaramaConsumer = len(saramaConsumer) > 0 && saramaConsumer[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, k) }()
	deadline := time.Now().Add(30 * time.Minute)
	for p.Ready(ctx) != nil {
		select {
		case err := <-done:
			b.Fatalf("state run ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatal("not ready within 30 min")
		}
	}
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("state run: %v", err)
		}
	}, p
}

func waitCount(b *testing.B, c prometheus.Counter, n int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Minute)
	for {
		var m dto.Metric
		_ = c.Write(&m)
		if m.GetCounter().GetValue() >= float64(n) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("processed %v of %d in 30 min", m.GetCounter().GetValue(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
