package alerts

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// benchN returns DROVER_BENCH_N, or def.
func benchN(b *testing.B, def int) int {
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("DROVER_BENCH_N=%q: want a positive integer", s)
		}
		return n
	}
	return def
}

// benchStack is kfake with 4 partitions per topic plus the registry.
func benchStack(b *testing.B, extra ...string) ([]string, *schemas.Serde, *kgo.Client) {
	b.Helper()
	c := devtest.Kafka(b, kfake.SeedTopics(4, append([]string{topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DLQ}, extra...)...))
	serde, err := schemas.NewSerde(testRegistry(b))
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Close)
	return c.ListenAddrs(), serde, cl
}

func produceAll(b *testing.B, cl *kgo.Client, recs []*kgo.Record) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := 0; i < len(recs); i += 10000 {
		if err := cl.ProduceSync(ctx, recs[i:min(i+10000, len(recs))]...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAlertsThroughput: N raw.sensor records (1000 devices, messages
// of three readings, temperatures around the fever threshold, default
// rules) already in Kafka; records/s
// through the alerts group until caught up, against a bare franz-go
// consumer loop that decodes and evaluates the same rules in memory (no
// group table). DROVER_BENCH_N scales N (default 300000).
func BenchmarkAlertsThroughput(b *testing.B) {
	n := benchN(b, 300_000)
	brokers, serde, cl := benchStack(b)
	now := time.Now()
	base := now.Add(-40 * time.Minute)
	ctx := context.Background()
	// Collars send messages of three readings (temperature, activity,
	// battery; one event and ingest time each), 1000 devices, a message
	// per device every 12 s of event time.
	recs := make([]*kgo.Record, 0, n)
	metrics := []string{"temperature", "activity", "battery"}
	for i := range n {
		msg := i / 3
		dev := fmt.Sprintf("cow-%04d", msg%1000)
		round := msg / 1000
		v := 38.5 + float64(round%20)/10 // temperature 38.5 … 40.4: fevers start, never last
		if msg%1000%10 == 0 {
			v = 40.2 // every tenth cow has a fever: it fires after 10 min
		}
		metric := metrics[i%3]
		if metric != "temperature" {
			v = 60
		}
		ts := base.Add(time.Duration(round) * 12 * time.Second)
		r := &schemas.SensorReading{Tenant: "farm-a", DeviceID: dev, TS: ts, IngestedAt: ts.Add(time.Second),
			Metric: metric, Value: v, Source: "bench"}
		val, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topics.RawSensor, Key: []byte(dev), Value: val})
	}
	produceAll(b, cl, recs)

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The goka group (a fresh group id per iteration would need a new
		// group name; one iteration is one measurement, as make bench runs).
		reg := prometheus.NewRegistry()
		p, err := NewProcessor(brokers, WithSerde(serde), WithRegisterer(reg), WithLogger(devtest.Logger()))
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- p.Run(rctx) }()
		var first time.Duration // until the first record was processed: group join, table restore
		for {
			c := counterValue(p.metrics.records.WithLabelValues(topics.RawSensor))
			if c > 0 && first == 0 {
				first = time.Since(start)
			}
			if c >= float64(n) {
				break
			}
			select {
			case err := <-done:
				b.Fatalf("processor ended: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		gokaDur := time.Since(start)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		// The baseline: a bare franz-go loop doing the same evaluation.
		start = time.Now()
		c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.RawSensor), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		ev := &evaluator{rules: DefaultRules(), horizon: DefaultHorizon}
		states := map[string]*deviceState{}
		seen, fired := 0, 0
		for seen < n {
			fs := c.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				seen++
				var rd schemas.SensorReading
				if _, err := serde.Decode(ctx, r.Value, &rd); err != nil {
					b.Fatal(err)
				}
				st := states[string(r.Key)]
				if st == nil {
					st = &deviceState{}
					states[string(r.Key)] = st
				}
				fired += len(ev.sensor(st, &rd, time.Now()))
			})
		}
		c.Close()
		baseDur := time.Since(start)

		gokaRate := float64(n) / gokaDur.Seconds()
		baseRate := float64(n) / baseDur.Seconds()
		b.ReportMetric(gokaRate, "records/s")
		b.ReportMetric(baseRate, "baseline-records/s")
		b.ReportMetric(gokaRate/baseRate, "ratio")
		steady := float64(n) / (gokaDur - first).Seconds()
		b.ReportMetric(steady, "after-start-records/s")
		b.Logf("alerts group: %d records in %s = %.0f records/s (start-up %s, then %.0f records/s); bare franz-go loop: %s = %.0f records/s (%d lifecycle events); ratio %.2f",
			n, gokaDur.Round(time.Millisecond), gokaRate, first.Round(time.Millisecond), steady, baseDur.Round(time.Millisecond), baseRate, fired, gokaRate/baseRate)
	}
}

// BenchmarkAlertsRestore: the group table holds D device states (default
// 100000, DROVER_BENCH_N); time from start until the processor has
// restored it and is ready, against a bare franz-go loop that reads the
// table topic and decodes every state into a map.
func BenchmarkAlertsRestore(b *testing.B) {
	d := benchN(b, 100_000)
	brokers, serde, cl := benchStack(b, string(Table))
	seen := t0
	recs := make([]*kgo.Record, 0, d)
	for i := range d {
		dev := fmt.Sprintf("tracker-%06d", i)
		st := &deviceState{Tenant: "farm-a", DeviceID: dev, LastHeard: seen, LastTS: seen,
			Samples: map[string]sample{"temperature": {V: 38.6, TS: seen}, "battery": {V: 80, TS: seen}},
			Offsets: map[string]int64{topics.RawSensor + "/0": int64(i)}}
		v, err := (tableCodec{}).Encode(st)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: string(Table), Key: []byte(dev), Value: v})
	}
	produceAll(b, cl, recs)
	ctx := context.Background()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := NewProcessor(brokers, WithSerde(serde), WithLogger(devtest.Logger()), WithClock(&fakeClock{now: seen}))
		if err != nil {
			b.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- p.Run(rctx) }()
		for p.Ready(ctx) != nil {
			select {
			case err := <-done:
				b.Fatalf("processor ended: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		restore := time.Since(start)
		// One sweep over the restored table (nobody is overdue: a pure scan).
		sweepStart := time.Now()
		if _, err := p.Sweep(ctx); err != nil {
			b.Fatal(err)
		}
		sweep := time.Since(sweepStart)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}

		start = time.Now()
		c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(string(Table)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		m := make(map[string]*deviceState, d)
		for len(m) < d {
			c.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				st, err := (tableCodec{}).Decode(r.Value)
				if err != nil {
					b.Fatal(err)
				}
				m[string(r.Key)] = st.(*deviceState)
			})
		}
		c.Close()
		base := time.Since(start)

		b.ReportMetric(restore.Seconds(), "restore-s")
		b.ReportMetric(base.Seconds(), "baseline-s")
		b.ReportMetric(base.Seconds()/restore.Seconds(), "ratio")
		b.ReportMetric(sweep.Seconds(), "sweep-s")
		b.Logf("alerts table restore of %d devices: %s (ready); bare franz-go read+decode: %s; ratio (baseline/restore) %.2f; one offline sweep over all devices: %s",
			d, restore.Round(time.Millisecond), base.Round(time.Millisecond), base.Seconds()/restore.Seconds(), sweep.Round(time.Millisecond))
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
