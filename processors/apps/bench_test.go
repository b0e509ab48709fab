package apps

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// benchN is the number of source records (DROVER_BENCH_N, default 200k).
func benchN(b *testing.B, def int) int {
	n := def
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("DROVER_BENCH_N=%q: want a positive integer", s)
		}
		n = v
	}
	return n
}

const benchPartitions = 8

var benchT0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

const benchFilterApps = `
apps:
  - name: bench-filter
    source: {topics: [raw.sensor]}
    query: |
      SELECT device_id, value AS celsius, round(value * 9 / 5 + 32, 1) AS fahrenheit
      FROM raw.sensor
      WHERE metric = 'temperature' AND value > 38.5
    target: apps.bench-filter
`

// benchEnv is an embedded Kafka with the benchmark's topics and a registry
// with drover's schemas and the app's target schema.
func benchEnv(b *testing.B, yaml string, extra ...string) ([]string, *App, *schemas.Serde) {
	b.Helper()
	as, err := Parse("bench.yaml", []byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	kc := devtest.Kafka(b, kfake.SeedTopics(benchPartitions, append([]string{topics.RawSensor, topics.RawGPS, as[0].Target, "apps.bench-bare"}, extra...)...))
	_, url := devtest.Registry(b)
	_, reg := devtest.Schemas(b, url)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m := map[string]string{as[0].Target: schemas.AppRecordSchema(), "apps.bench-bare": schemas.AppRecordSchema()}
	if _, err := schemas.Register(ctx, reg, []string{as[0].Target, "apps.bench-bare"}, schemas.WithSchemas(m)); err != nil {
		b.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg, schemas.WithSchemas(m))
	if err != nil {
		b.Fatal(err)
	}
	return kc.ListenAddrs(), as[0], serde
}

// produceAll writes recs (topic, key, value) and waits for every ack.
func produceAll(b *testing.B, brokers []string, recs func(yield func(*kgo.Record))) int {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var failed atomic.Value
	n := 0
	recs(func(r *kgo.Record) {
		n++
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	})
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type phase struct {
	rate, cpuPerRec float64
	out             int
}

// runApp runs app's goka group until it has read n records and returns
// its rate from its first record, and how many it wrote.
func runApp(b *testing.B, brokers []string, app *App, serde *schemas.Serde, n int, after ...func(*Processor)) phase {
	b.Helper()
	reg := prometheus.NewRegistry()
	p := New(app, serde, Config{Registerer: reg, TickInterval: time.Hour, Clock: groupkit.ClockFunc(func() time.Time { return benchT0 })})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, groupkit.NewKafka(brokers)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("app run: %v", err)
		}
	}()
	value := func(o string) float64 { return metricValue(b, reg, app.Name, o) }
	deadline := time.Now().Add(30 * time.Minute)
	for value("in") == 0 {
		if time.Now().After(deadline) {
			b.Fatal("no record processed in 30 min")
		}
		time.Sleep(time.Millisecond)
	}
	start, cpu0 := time.Now(), cpuTime()
	for value("in") < float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("app read %v of %d records in 30 min", value("in"), n)
		}
		select {
		case err := <-done:
			b.Fatalf("app run ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	for _, f := range after {
		f(p)
	}
	return phase{rate: float64(n) / el.Seconds(), cpuPerRec: float64(cpu.Microseconds()) / float64(n), out: int(value("out"))}
}

func metricValue(b *testing.B, reg *prometheus.Registry, app, outcome string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var a, o string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "app":
					a = l.GetValue()
				case "outcome":
					o = l.GetValue()
				}
			}
			if mf.GetName() == "drover_app_records_total" && a == app && o == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// BenchmarkFilterApp puts N raw.sensor records (1000 devices, half of
// them temperatures, about half of those above 38.5) into the embedded
// Kafka, then measures in the same run (1) the filter app's goka group
// (decode with the writer schema, WHERE, projection, AppRecord encode,
// produce), from its first record to its N-th, and (2) a bare franz-go
// consumer-group loop doing the same decode, the same compiled query and
// the same encode and produce. It reports both rates, their ratio and the
// process CPU time per record of each.
func BenchmarkFilterApp(b *testing.B) {
	n := benchN(b, 200_000)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		brokers, app, serde := benchEnv(b, benchFilterApps)
		ctx := context.Background()
		produceAll(b, brokers, func(yield func(*kgo.Record)) {
			for i := range n {
				dev := fmt.Sprintf("farm/cow-%04d", i%1000)
				metric := "temperature"
				if i%2 == 1 {
					metric = "humidity"
				}
				ts := benchT0.Add(time.Duration(i/1000) * time.Second)
				v, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: strconv.Itoa(i), Tenant: "farm", DeviceID: dev[5:], TS: ts, IngestedAt: ts,
					Metric: metric, Value: 38 + float64(i%11)/10, Source: "bench", Attrs: map[string]string{}})
				if err != nil {
					b.Fatal(err)
				}
				yield(&kgo.Record{Topic: topics.RawSensor, Key: []byte(dev), Value: v})
			}
		})
		b.StartTimer()
		gk := runApp(b, brokers, app, serde, n)
		base := bareFilter(b, brokers, app, serde, n)
		if gk.out != base.out || gk.out == 0 {
			b.Errorf("the app wrote %d records, the bare loop %d: they must agree", gk.out, base.out)
		}
		b.ReportMetric(gk.rate, "app-rec/s")
		b.ReportMetric(base.rate, "franz-go-rec/s")
		b.ReportMetric(gk.rate/base.rate, "ratio")
		b.ReportMetric(gk.cpuPerRec, "app-cpu-µs/rec")
		b.ReportMetric(base.cpuPerRec, "franz-go-cpu-µs/rec")
		b.ReportMetric(base.cpuPerRec/gk.cpuPerRec, "cpu-ratio")
		fmt.Printf("filter app, %d records, %d written: goka group %.0f rec/s (%.2f µs CPU/rec), bare franz-go loop %.0f rec/s (%.2f µs CPU/rec), ratio %.2f, cpu ratio %.2f\n",
			n, gk.out, gk.rate, gk.cpuPerRec, base.rate, base.cpuPerRec, gk.rate/base.rate, base.cpuPerRec/gk.cpuPerRec)
	}
}

// bareFilter is the franz-go baseline of the filter app.
func bareFilter(b *testing.B, brokers []string, app *App, serde *schemas.Serde, n int) phase {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("bench-bare"), kgo.ConsumeTopics(app.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var (
		seen, out int
		start     time.Time
		cpu0      time.Duration
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
			_, v, err := serde.DecodeAny(ctx, rec.Value)
			if err != nil {
				b.Fatal(err)
			}
			r, oc, _ := app.apply(Source{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: string(rec.Key), Value: v.(map[string]any)})
			if oc != emitted {
				return
			}
			enc, err := serde.Encode(ctx, "apps.bench-bare", r)
			if err != nil {
				b.Fatal(err)
			}
			cl.Produce(ctx, &kgo.Record{Topic: "apps.bench-bare", Key: rec.Key, Value: enc}, nil)
			out++
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	el, cpu := time.Since(start), cpuTime()-cpu0
	return phase{rate: float64(seen) / el.Seconds(), cpuPerRec: float64(cpu.Microseconds()) / float64(seen), out: out}
}

// BenchmarkJoin puts, for K keys (DROVER_BENCH_KEYS, default 10k), a GPS
// fix every 10 s and a temperature reading every 5 s over 2 minutes of
// event time into the embedded Kafka and runs the gps-temperature join
// app's goka group over them: records/s from its first record, and the
// size of every key's state in the group table (buffered readings,
// waiting fixes, watermarks; encoded as stored) per 10k keys.
func BenchmarkJoin(b *testing.B) {
	keys := 10_000
	if s := os.Getenv("DROVER_BENCH_KEYS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("DROVER_BENCH_KEYS=%q: want a positive integer", s)
		}
		keys = v
	}
	const seconds = 120
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		brokers, app, serde := benchEnv(b, `
apps:
  - name: bench-join
    source: {topics: [raw.gps, raw.sensor]}
    query: SELECT * FROM * WHERE metric = 'temperature' OR lat IS NOT NULL
    join: {right: raw.sensor, tolerance: 30s, lateness: 10s, interpolate: [value]}
    target: apps.bench-join
`)
		ctx := context.Background()
		n := produceAll(b, brokers, func(yield func(*kgo.Record)) {
			for s := 0; s < seconds; s += 5 {
				ts := benchT0.Add(time.Duration(s) * time.Second)
				for k := range keys {
					dev := fmt.Sprintf("cow-%05d", k)
					key := []byte("farm/" + dev)
					v, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: fmt.Sprint("t", k, "-", s), Tenant: "farm", DeviceID: dev,
						TS: ts, IngestedAt: ts, Metric: "temperature", Value: 38 + float64(s%7)/10, Source: "bench", Attrs: map[string]string{}})
					if err != nil {
						b.Fatal(err)
					}
					yield(&kgo.Record{Topic: topics.RawSensor, Key: key, Value: v})
					if s%10 == 0 {
						g, err := serde.Encode(ctx, topics.RawGPS, &schemas.GPSFix{EventID: fmt.Sprint("g", k, "-", s), Tenant: "farm", DeviceID: dev,
							TS: ts.Add(2 * time.Second), IngestedAt: ts, Lat: 47, Lon: 8, Source: "bench", Attrs: map[string]string{}})
						if err != nil {
							b.Fatal(err)
						}
						yield(&kgo.Record{Topic: topics.RawGPS, Key: key, Value: g})
					}
				}
			}
		})
		b.StartTimer()
		var stateBytes, maxRight int
		gk := runApp(b, brokers, app, serde, n, func(p *Processor) {
			// The state of every key, as the group table holds it.
			for k := range keys {
				v, err := p.Proc.Load().Get(fmt.Sprintf("farm/cow-%05d", k))
				if err != nil {
					b.Fatal(err)
				}
				st, ok := v.(*joinState)
				if !ok {
					b.Fatalf("key %d has no join state (%T)", k, v)
				}
				enc, err := joinCodec{}.Encode(st)
				if err != nil {
					b.Fatal(err)
				}
				stateBytes += len(enc)
				maxRight = max(maxRight, len(st.Right))
			}
		})
		if gk.out == 0 {
			b.Error("the join wrote nothing")
		}
		perTenK := float64(stateBytes) / (1 << 20) * 10_000 / float64(keys)
		b.ReportMetric(gk.rate, "join-rec/s")
		b.ReportMetric(gk.cpuPerRec, "join-cpu-µs/rec")
		b.ReportMetric(perTenK, "state-MiB/10k-keys")
		fmt.Printf("join app, %d keys, %d records (fixes every 10 s, readings every 5 s), %d joined: %.0f rec/s, %.2f µs CPU/rec; group-table state %.2f MiB per 10k keys (at most %d readings buffered per key)\n",
			keys, n, gk.out, gk.rate, gk.cpuPerRec, perTenK, maxRight)
	}
}
