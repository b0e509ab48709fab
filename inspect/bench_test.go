package inspect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/topics"
)

// benchN is the number of records of the tail benchmark: DROVER_BENCH_N,
// default 1,000,000.
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

// BenchmarkTailJSON decodes and prints N Avro records of raw.sensor as JSON
// lines to /dev/null with drover tail, and in the same run reads the same
// records raw with kcat (-o beginning -e), printing both times and the
// ratio (target: drover < 2 × kcat).
func BenchmarkTailJSON(b *testing.B) {
	n := benchN(b)
	s := newStack(b, topics.RawSensor)
	ctx := context.Background()

	// Produce N readings across the three partitions, in big batches.
	prod, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.brokers, ",")...), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(50_000), kgo.ProducerLinger(5*time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	errs := make(chan error, 1)
	for i := range n {
		ts := base.Add(time.Duration(i) * time.Millisecond)
		dev := "collar-" + strconv.Itoa(i%500)
		v, err := s.serde.Encode(ctx, topics.RawSensor, sensor(dev, "temperature", 20+float64(i%200)/10, ts))
		if err != nil {
			b.Fatal(err)
		}
		prod.Produce(ctx, &kgo.Record{Topic: topics.RawSensor, Partition: int32(i % 3), Key: []byte(dev), Value: v, Timestamp: ts}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	prod.Close()
	select {
	case err := <-errs:
		b.Fatalf("produce: %v", err)
	default:
	}
	b.Logf("produced %d records in %s", n, time.Since(start).Round(time.Millisecond))

	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	kcat, kcatErr := exec.LookPath("kcat")

	b.ResetTimer()
	for b.Loop() {
		// drover tail, decoding every record to JSON.
		cmd := TailCommand(&cli.Conn{})
		var errOut strings.Builder
		cmd.SetOut(devNull)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append([]string{topics.RawSensor, "--from", "earliest", "--to", "latest", "--format", "json"}, s.connArgs()...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		t0 := time.Now()
		if err := cmd.Execute(); err != nil {
			b.Fatal(err)
		}
		drover := time.Since(t0)
		if want := fmt.Sprintf("%d shown, 0 skipped by filters, 0 undecodable", n); !strings.Contains(errOut.String(), want) {
			b.Fatalf("drover tail: %q, want %q", errOut.String(), want)
		}
		b.ReportMetric(drover.Seconds(), "drover_s")
		b.ReportMetric(float64(n)/drover.Seconds(), "drover_rec/s")

		if kcatErr != nil {
			b.Logf("kcat not found (%v): install the Debian package kcat for the baseline", kcatErr)
			fmt.Printf("tail %d records: drover %s (%.0f rec/s); kcat baseline unavailable\n", n, drover.Round(time.Millisecond), float64(n)/drover.Seconds())
			continue
		}
		// kcat, raw bytes, same records.
		kc := exec.Command(kcat, "-C", "-b", s.brokers, "-t", topics.RawSensor, "-o", "beginning", "-e", "-q")
		kc.Stdout = devNull
		var kerr strings.Builder
		kc.Stderr = &kerr
		t0 = time.Now()
		if err := kc.Run(); err != nil {
			b.Fatalf("kcat: %v: %s", err, kerr.String())
		}
		kt := time.Since(t0)
		ratio := drover.Seconds() / kt.Seconds()
		b.ReportMetric(kt.Seconds(), "kcat_s")
		b.ReportMetric(ratio, "drover/kcat")
		fmt.Printf("tail %d records: drover (Avro → JSON) %s, kcat (raw) %s, ratio %.2f (target < 2)\n",
			n, drover.Round(time.Millisecond), kt.Round(time.Millisecond), ratio)
	}
}
