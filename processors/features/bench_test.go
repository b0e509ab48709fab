package features

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// benchN is the number of raw.sensor records (DROVER_BENCH_N, default 1M).
func benchN(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("DROVER_BENCH_N=%q: want a positive integer", s)
		}
		n = v
	}
	return n
}

const (
	benchDevices    = 1000
	benchPartitions = 8
)

// BenchmarkFeaturesThroughput puts N raw.sensor records (1000 devices, one
// reading per device per second) into the embedded Kafka, then measures in
// the same run (1) the features goka group from its first processed
// record to all N processed (the start-up from ready to the first record
// is logged on its own),
// (2) a bare franz-go consumer-group loop decoding the same records with
// the same serde and aggregating the same windows in memory (the same
// aggregator), producing the closed features. It reports both rates and
// their ratio, the process CPU time per record of each (robust against
// other load on a shared machine), a bare loop that also writes every
// device's state to a changelog topic (goka's durability work), and the
// goka group once more writing its table through, per record (from scratch).
func BenchmarkFeaturesThroughput(b *testing.B) {
	n := benchN(b)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		kc := devtest.Kafka(b, kfake.SeedTopics(benchPartitions, topics.RawSensor, topics.RawGPS, topics.Features, "bench-changelog"))
		brokers := kc.ListenAddrs()
		serde, _ := newSerde(b)
		fill(b, brokers, serde, n)
		b.StartTimer()

		gk := benchGoka(b, brokers, serde, n, DefaultTableFlush)
		base := benchBare(b, brokers, serde, n, false)
		withLog := benchBare(b, brokers, serde, n, true)
		// The group again writing its table through (one changelog record
		// per input record, goka's own way), from scratch (group offsets
		// and table deleted), to show what write-behind saves.
		resetGroup(b, brokers)
		through := benchGoka(b, brokers, serde, n, -1)
		// And once more consuming with sarama (the former path), for the
		// same-run comparison of the franz-go adapter (processors/gokakgo).
		resetGroup(b, brokers)
		old := benchGoka(b, brokers, serde, n, DefaultTableFlush, true)
		b.ReportMetric(old.rate, "goka-sarama-rec/s")
		b.ReportMetric(old.cpuPerRec, "goka-sarama-cpu-µs/rec")
		fmt.Printf("features, goka consuming with sarama (former path): %.0f rec/s, %.2f µs CPU per record; with franz-go (gokakgo): %.0f rec/s, %.2f µs\n",
			old.rate, old.cpuPerRec, gk.rate, gk.cpuPerRec)
		if gk.features != base.features || withLog.features != base.features || through.features != base.features || old.features != base.features {
			b.Errorf("the goka group emitted %d features (write-through %d), the bare loops %d and %d: they must agree", gk.features, through.features, base.features, withLog.features)
		}
		ratio := gk.rate / base.rate
		b.ReportMetric(gk.rate, "goka-rec/s")
		b.ReportMetric(base.rate, "franz-go-rec/s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(withLog.rate, "franz-go+changelog-rec/s")
		b.ReportMetric(gk.rate/withLog.rate, "ratio-vs-changelog")
		// CPU time per record (the whole process: consumer, callbacks,
		// producer, GC and the embedded Kafka) is far less sensitive to
		// other load on a shared machine than wall-clock rates; their
		// ratio is what the throughput ratio would be on dedicated cores.
		b.ReportMetric(gk.cpuPerRec, "goka-cpu-µs/rec")
		b.ReportMetric(base.cpuPerRec, "franz-go-cpu-µs/rec")
		b.ReportMetric(base.cpuPerRec/gk.cpuPerRec, "cpu-ratio")
		b.ReportMetric(through.rate, "goka-write-through-rec/s")
		b.ReportMetric(through.cpuPerRec, "goka-write-through-cpu-µs/rec")
		fmt.Printf("features throughput, %d records, %d devices, %d partitions: goka group %.0f rec/s, bare franz-go loop %.0f rec/s, ratio %.2f (target >= 0.5); "+
			"bare loop also writing each device's state to a changelog topic (goka's durability work) %.0f rec/s, goka/that %.2f; "+
			"CPU per record: goka %.2f µs, bare %.2f µs, bare+changelog %.2f µs, cpu ratio %.2f; "+
			"goka writing its table through (per record) %.0f rec/s, %.2f µs CPU per record\n",
			n, benchDevices, benchPartitions, gk.rate, base.rate, ratio, withLog.rate, gk.rate/withLog.rate,
			gk.cpuPerRec, base.cpuPerRec, withLog.cpuPerRec, base.cpuPerRec/gk.cpuPerRec, through.rate, through.cpuPerRec)
	}
}

var benchT0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

// resetGroup deletes the features group's committed offsets and its table
// topic, so the next run starts from scratch.
func resetGroup(b *testing.B, brokers []string) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm := kadm.NewClient(cl)
	if _, err := adm.DeleteGroups(ctx, string(Group)); err != nil {
		b.Fatalf("deleting group %s: %v", Group, err)
	}
	if _, err := adm.DeleteTopics(ctx, string(Table)); err != nil {
		b.Fatalf("deleting %s: %v", Table, err)
	}
}

func fill(b *testing.B, brokers []string, serde *schemas.Serde, n int) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000), kgo.DefaultProduceTopic(topics.RawSensor))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	start := time.Now()
	var failed atomic.Value
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("cow-%04d", i%benchDevices)
		ts := benchT0.Add(time.Duration(i/benchDevices) * time.Second)
		v, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: strconv.Itoa(i), Tenant: "farm", DeviceID: dev, TS: ts, IngestedAt: ts,
			Metric: "temperature", Value: 38 + float64(i%17)/10, Source: "bench", Attrs: map[string]string{}})
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
	b.Logf("filled raw.sensor with %d records in %s", n, time.Since(start).Round(time.Millisecond))
}

// phase is one measured run: records/s, process CPU µs per record (see
// cpuTime), features emitted.
type phase struct {
	rate, cpuPerRec float64
	features        int
}

// cpuTime is the CPU time (user + system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchGoka runs the features group over the n records with the given
// table flush interval (Config.TableFlush; negative writes through).
func benchGoka(b *testing.B, brokers []string, serde *schemas.Serde, n int, flush time.Duration, saramaConsumer ...bool) phase {
	b.Helper()
	p, err := New(serde, Config{Registerer: prometheus.NewRegistry(), TickInterval: -1, TableFlush: flush, Clock: groupkit.ClockFunc(func() time.Time { return benchT0 })})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	k := groupkit.NewKafka(brokers)
	k.SaramaConsumer = len(saramaConsumer) > 0 && saramaConsumer[0]
	go func() { done <- p.Run(ctx, k) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("features run: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Minute)
	for p.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			b.Fatal("not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Like the bare loop, whose clock starts when its first fetch returns
	// (after its group join), the group's clock starts at its first
	// processed record; the start-up (consumer group join, first fetch) is
	// reported on its own.
	ready := time.Now()
	processed := p.m.records.WithLabelValues(topics.RawSensor)
	for counter(processed) == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no record processed in 30 min")
		}
		select {
		case err := <-done:
			b.Fatalf("features run ended: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	stopProfile := profilePhase(b)
	start, cpu0 := time.Now(), cpuTime()
	startup := start.Sub(ready)
	for counter(processed) < float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("goka group processed %v of %d records in 30 min", counter(processed), n)
		}
		select {
		case err := <-done:
			b.Fatalf("features run ended: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	stopProfile()
	emittedN := int(counter(p.m.emitted.WithLabelValues(string(reasonClose))))
	b.Logf("goka features group: %d records in %s after the first record (%s from ready, start-up %s: %.0f rec/s from ready), %d features emitted",
		n, el.Round(time.Millisecond), (el + startup).Round(time.Millisecond), startup.Round(time.Millisecond), float64(n)/(el+startup).Seconds(), emittedN)
	return phase{rate: float64(n) / el.Seconds(), cpuPerRec: float64(cpu.Microseconds()) / float64(n), features: emittedN}
}

// profiled is set once the first goka phase was profiled.
var profiled atomic.Bool

// profilePhase starts, for the first goka phase of the process (the
// default path: the franz-go adapter, write-behind), a CPU profile of the
// whole process (group, embedded Kafka, GC) into the file named by
// DROVER_BENCH_CPUPROFILE, from the first processed record to the last;
// the split in processors/README.md comes from it. It returns the stop
// function (a no-op when not profiling).
func profilePhase(b *testing.B) func() {
	path := os.Getenv("DROVER_BENCH_CPUPROFILE")
	if path == "" || !profiled.CompareAndSwap(false, true) {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	// 1 kHz instead of pprof's 100 Hz: the group uses little CPU per
	// second on a loaded machine, and 100 Hz leaves too few samples for a
	// split (StartCPUProfile then warns that the rate is already set).
	runtime.SetCPUProfileRate(1000)
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}

func counter(c prometheus.Counter) float64 {
	var m dtoMetric
	_ = c.Write(&m.Metric)
	return m.GetCounter().GetValue()
}

// benchBare is the franz-go baseline: a consumer-group loop with the same
// decoding and window code. With changelog it also writes each device's
// encoded state to a topic after every record, as goka does for its table.
func benchBare(b *testing.B, brokers []string, serde *schemas.Serde, n int, changelog bool) phase {
	b.Helper()
	group := "bench-bare"
	if changelog {
		group = "bench-bare-changelog"
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics.RawSensor),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(20*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	cfg := Config{}.withDefaults()
	agg := newAggregator(cfg)
	devices := map[string]*deviceState{}
	ctx := context.Background()
	now := benchT0.UnixMilli()
	var (
		seen, emittedN int
		start          time.Time
		out            []emitted
		oc             []outcome
		r              schemas.SensorReading
		cpu0           time.Duration
	)
	for seen < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		if start.IsZero() {
			start, cpu0 = time.Now(), cpuTime()
		}
		fs.EachRecord(func(rec *kgo.Record) {
			seen++
			r = schemas.SensorReading{}
			if _, err := serde.DecodeTopic(ctx, topics.RawSensor, rec.Value, &r); err != nil {
				b.Fatal(err)
			}
			d := devices[string(rec.Key)]
			if d == nil {
				d = &deviceState{}
				devices[string(rec.Key)] = d
			}
			d.Tenant = r.Tenant
			out, oc = agg.addValue(d, string(rec.Key), r.Metric, r.TS.UnixMilli(), r.Value, now, out[:0], oc[:0])
			if changelog {
				st, err := stateCodec.Encode(d)
				if err != nil {
					b.Fatal(err)
				}
				cl.Produce(ctx, &kgo.Record{Topic: "bench-changelog", Key: rec.Key, Value: st}, func(_ *kgo.Record, err error) {
					if err != nil {
						b.Error(err)
					}
				})
			}
			for _, e := range out {
				v, err := serde.Encode(ctx, topics.Features, e.f)
				if err != nil {
					b.Fatal(err)
				}
				cl.Produce(ctx, &kgo.Record{Topic: topics.Features, Key: rec.Key, Value: v}, nil)
				emittedN++
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.Logf("bare franz-go loop (changelog %v): %d records in %s, %d features emitted", changelog, seen, el.Round(time.Millisecond), emittedN)
	return phase{rate: float64(seen) / el.Seconds(), cpuPerRec: float64(cpu.Microseconds()) / float64(seen), features: emittedN}
}
