package timescale

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// benchReadings returns n readings of 50 devices spread over about three
// days (so several partitions or chunks are written).
func benchReadings(n int) []schemas.SensorReading {
	out := make([]schemas.SensorReading, n)
	for i := range out {
		dev := "cow-" + strconv.Itoa(i%50)
		ts := day0.Add(time.Duration(i) * 250 * time.Millisecond)
		out[i] = schemas.SensorReading{EventID: strconv.Itoa(i), Tenant: "farm", DeviceID: dev, TS: ts, IngestedAt: ts,
			Metric: "temperature", Value: 38 + float64(i%20)/10, Unit: ptr("Cel"), Source: "sensor"}
	}
	return out
}

// migratedFresh migrates a fresh database and creates the partitions the
// readings fall in (so neither side of the comparison pays for them).
func migratedFresh(b testing.TB, rows []schemas.SensorReading) (string, Layout) {
	url, layout := migratedDB(b)
	if !layout.Timescale {
		c := connect(b, url)
		seen := map[time.Time]bool{}
		for i := range rows {
			d := rows[i].TS.UTC().Truncate(24 * time.Hour)
			if !seen[d] {
				seen[d] = true
				if err := createPartition(context.Background(), c, TableSensorReadings, d); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return url, layout
}

// BenchmarkSinkThroughput: N sensor records already in Kafka; rows/s into
// sensor_readings until the group has committed them all, against raw pgx
// CopyFrom of the same rows into an identical empty table (a fresh
// sensor_readings), same run. DROVER_BENCH_N scales N (default 1,000,000).
func BenchmarkSinkThroughput(b *testing.B) {
	n := devtest.EnvInt("DROVER_BENCH_N", 1_000_000)
	rows := benchReadings(n)
	env := newKafkaEnv(b, 6)
	start := time.Now()
	const chunk = 10000
	for lo := 0; lo < n; lo += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for i := lo; i < min(lo+chunk, n); i++ {
			recs = append(recs, env.record(b, topics.RawSensor, rows[i].DeviceID, rows[i]))
		}
		env.produce(b, recs...)
	}
	b.Logf("produced %d records in %s", n, time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		// Baseline: one raw COPY of the same rows into an empty
		// sensor_readings, measured before and after the sink (the machine
		// is shared: the mean of both evens out load that comes and goes).
		before := rawCopy(b, rows)

		// The sink, from an empty group to caught up.
		b.StopTimer()
		sinkURL, _ := migratedFresh(b, rows)
		group := fmt.Sprintf("bench-%d", iter)
		b.StartTimer()
		t1 := time.Now()
		rs := startSink(b, env, sinkURL, func(c *Config) {
			c.Group, c.Topics, c.BatchSize, c.FlushInterval = group, []string{topics.RawSensor}, devtest.EnvInt("DROVER_BENCH_BATCH", 5000), time.Second
		})
		waitRows(b, rs, n)
		waitFor(b, 60*time.Second, "offsets committed", func() (bool, string) { return groupCaughtUp(b, env, group) })
		took := time.Since(t1)
		b.StopTimer()
		after := rawCopy(b, rows)
		base := (before + after) / 2
		var hm dto.Metric
		_ = rs.sink.m.batchTime.(prometheus.Metric).Write(&hm)
		b.Logf("sink: %d batches (%d direct COPY, %d staged), %.2fs in database writes", hm.Histogram.GetSampleCount(),
			rs.sink.writer.Paths.Direct.Load(), rs.sink.writer.Paths.Staged.Load(), hm.Histogram.GetSampleSum())
		if err := rs.stop(); err != nil {
			b.Fatal(err)
		}
		sc := connect(b, sinkURL)
		if got := count(b, sc, "SELECT count(*) FROM sensor_readings"); got != int64(n) {
			b.Fatalf("sink wrote %d rows, want %d", got, n)
		}
		// Replay: a new group re-reads everything; every key exists, so every
		// batch takes the staging path and writes nothing.
		replayGroup := group + "-replay"
		t2 := time.Now()
		replay := startSink(b, env, sinkURL, func(c *Config) {
			c.Group, c.Topics, c.BatchSize, c.FlushInterval = replayGroup, []string{topics.RawSensor}, devtest.EnvInt("DROVER_BENCH_BATCH", 5000), time.Second
		})
		waitFor(b, 10*time.Minute, "replay caught up", func() (bool, string) { return groupCaughtUp(b, env, replayGroup) })
		replayTook := time.Since(t2)
		if err := replay.stop(); err != nil {
			b.Fatal(err)
		}
		if got := count(b, sc, "SELECT count(*) FROM sensor_readings"); got != int64(n) {
			b.Fatalf("after replay %d rows, want %d", got, n)
		}
		replayRate := float64(n) / replayTook.Seconds()
		b.ReportMetric(replayRate, "replay_records/s")
		sinkRate, baseRate := float64(n)/took.Seconds(), float64(n)/base.Seconds()
		b.ReportMetric(sinkRate, "sink_rows/s")
		b.ReportMetric(baseRate, "copy_rows/s")
		b.ReportMetric(sinkRate/baseRate, "ratio")
		msg := fmt.Sprintf("sink throughput: %d rows: sink %.0f rows/s (%s incl. startup) vs raw CopyFrom %.0f rows/s (mean of %s before and %s after): ratio %.2f (target >= 0.7)",
			n, sinkRate, took.Round(time.Millisecond), baseRate, before.Round(time.Millisecond), after.Round(time.Millisecond), sinkRate/baseRate)
		b.Log(msg)
		fmt.Println(msg)
		msg = fmt.Sprintf("sink replay: %d duplicate records re-read by a new group in %s: %.0f records/s (staging path, nothing written)",
			n, replayTook.Round(time.Millisecond), replayRate)
		b.Log(msg)
		fmt.Println(msg)
		b.StartTimer()
	}
}

// BenchmarkSinkLag: a steady DROVER_BENCH_RATE records/s (default 10,000)
// for DROVER_BENCH_SECONDS (default 20); end-to-end lag from produce to the
// row being in the database, against the lag of a bare Kafka consumer (no
// database) under the same load, same run.
func BenchmarkSinkLag(b *testing.B) {
	rate := devtest.EnvInt("DROVER_BENCH_RATE", 10_000)
	secs := devtest.EnvInt("DROVER_BENCH_SECONDS", 20)
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		env := newKafkaEnv(b, 6)
		dbURL, _ := migratedDB(b)
		b.StartTimer()

		// Baseline: a bare consumer, produce → fetched.
		bare := bareConsumerLag(b, env, rate, max(secs/4, 3))

		// Production defaults: batches of 5000 records or 1s
		// (DROVER_BENCH_BATCH, DROVER_BENCH_FLUSH_MS).
		flush := time.Duration(devtest.EnvInt("DROVER_BENCH_FLUSH_MS", 1000)) * time.Millisecond
		rs := startSink(b, env, dbURL, func(c *Config) {
			c.Topics, c.BatchSize, c.FlushInterval = []string{topics.RawSensor}, devtest.EnvInt("DROVER_BENCH_BATCH", 5000), flush
		})
		waitReady(b, rs)
		n := steadyProduce(b, env, rate, secs, func(i int, now time.Time) *kgo.Record {
			dev := "cow-" + strconv.Itoa(i%50)
			return env.record(b, topics.RawSensor, dev, schemas.SensorReading{EventID: strconv.Itoa(i), Tenant: "farm", DeviceID: dev,
				TS: day0.Add(time.Duration(i) * time.Millisecond), IngestedAt: now, Metric: "temperature", Value: 38, Source: "sensor"})
		})
		waitRows(b, rs, n)
		b.StopTimer()
		if err := rs.stop(); err != nil {
			b.Fatal(err)
		}
		// written_at is the writing transaction's start; ingested_at the produce time.
		c := connect(b, dbURL)
		var p50, p99, pmax float64
		if err := c.QueryRow(context.Background(), `SELECT
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at)),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM written_at - ingested_at)),
			max(extract(epoch FROM written_at - ingested_at))::float8
			FROM sensor_readings`).Scan(&p50, &p99, &pmax); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(p50*1000, "sink_p50_ms")
		b.ReportMetric(p99*1000, "sink_p99_ms")
		b.ReportMetric(bare[1]*1000, "kafka_p99_ms")
		b.ReportMetric(p99/bare[1], "p99_ratio")
		msg := fmt.Sprintf("sink lag at %d records/s for %ds (%d rows, batch %d, flush %s): produce→row p50 %.0f ms, p99 %.0f ms, max %.0f ms; bare Kafka consumer p50 %.0f ms, p99 %.0f ms; p99 ratio %.1f",
			rate, secs, n, rs.sink.cfg.BatchSize, flush, p50*1000, p99*1000, pmax*1000, bare[0]*1000, bare[1]*1000, p99/bare[1])
		b.Log(msg)
		fmt.Println(msg)
		b.StartTimer()
	}
}

// steadyProduce produces rate records/s for secs seconds in 10ms ticks and
// returns how many it produced.
func steadyProduce(b *testing.B, env *kafkaEnv, rate, secs int, rec func(i int, now time.Time) *kgo.Record) int {
	perTick := max(rate/100, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(time.Duration(secs) * time.Second)
	i := 0
	var wg sync.WaitGroup
	var failed error
	var mu sync.Mutex
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for range perTick {
			r := rec(i, time.Now())
			i++
			wg.Add(1)
			env.producer.Produce(context.Background(), r, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
	return i
}

// bareConsumerLag returns p50 and p99 seconds from produce to fetch for a
// plain consumer group on a topic of its own.
func bareConsumerLag(b *testing.B, env *kafkaEnv, rate, secs int) [2]float64 {
	const topic = "bench.bare"
	if _, err := kadm.NewClient(env.producer).CreateTopic(context.Background(), 6, 1, nil, topic); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.brokers...), kgo.ConsumerGroup("bare"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var mu sync.Mutex
	var lags []float64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			f := cl.PollFetches(ctx)
			now := time.Now()
			f.EachRecord(func(r *kgo.Record) {
				ts, err := time.Parse(time.RFC3339Nano, string(r.Value))
				if err == nil {
					mu.Lock()
					lags = append(lags, now.Sub(ts).Seconds())
					mu.Unlock()
				}
			})
		}
	}()
	n := steadyProduce(b, env, rate, secs, func(i int, now time.Time) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 50)), Value: []byte(now.Format(time.RFC3339Nano))}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := len(lags)
		mu.Unlock()
		if got >= n {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(lags) == 0 {
		b.Fatal("bare consumer received nothing")
	}
	slices.Sort(lags)
	return [2]float64{lags[len(lags)/2], lags[len(lags)*99/100]}
}

// waitRows waits (up to 10 minutes) until the sink has written n readings.
func waitRows(b *testing.B, rs *runningSink, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for metricValue(rs.sink.m.rows.WithLabelValues(TableSensorReadings)) < float64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("sink wrote %v of %d rows within 10 minutes", metricValue(rs.sink.m.rows.WithLabelValues(TableSensorReadings)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawCopy copies rows into the sensor_readings of a fresh database with one
// pgx CopyFrom and returns how long the copy took.
func rawCopy(b *testing.B, rows []schemas.SensorReading) time.Duration {
	b.StopTimer()
	url, _ := migratedFresh(b, rows)
	c := connect(b, url)
	b.StartTimer()
	t0 := time.Now()
	copied, err := c.CopyFrom(context.Background(), pgx.Identifier{TableSensorReadings}, readingCols,
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) { return readingRow(&rows[i]), nil }))
	took := time.Since(t0)
	b.StopTimer()
	if err != nil || copied != int64(len(rows)) {
		b.Fatalf("baseline copy: %d rows, %v", copied, err)
	}
	c.Close(context.Background())
	b.StartTimer()
	return took
}
