package registry_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// restoreFixture is a Kafka cluster holding a registry of n devices, filled
// once per test process (make bench runs the benchmark -count times).
type restoreFixture struct {
	brokers []string
	serde   *schemas.Serde
	n       int
	err     error
}

var (
	fixtureOnce sync.Once
	fixture     restoreFixture
)

func benchDevices(b *testing.B) int {
	n := 1_000_000
	if s := os.Getenv("DROVER_BENCH_DEVICES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("DROVER_BENCH_DEVICES=%q: want a positive integer", s)
		}
		n = v
	}
	return n
}

// fill writes n devices, each with a secret hash, a type and two labels
// (what a provisioned herd looks like), over 6 partitions like the
// catalogue's topic. The cluster outlives the benchmark (process exit).
func fill(b *testing.B, n int) restoreFixture {
	fixtureOnce.Do(func() {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, topics.DevicesRegistry))
		if err != nil {
			fixture.err = err
			return
		}
		reg, err := devstack.NewRegistry("", devtest.Logger())
		if err != nil {
			fixture.err = err
			return
		}
		srv := httptest.NewServer(reg) // lives for the process, like the cluster
		cl, err := sr.NewClient(sr.URLs(srv.URL))
		if err == nil {
			_, err = schemas.Register(context.Background(), cl, []string{topics.DevicesRegistry})
		}
		if err != nil {
			fixture.err = err
			return
		}
		serde, _ := schemas.NewSerde(cl)
		fixture = restoreFixture{brokers: c.ListenAddrs(), serde: serde, n: n}
		fixture.err = produce(fixture, n)
	})
	if fixture.err != nil {
		b.Fatal(fixture.err)
	}
	return fixture
}

func produce(f restoreFixture, n int) error {
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	h, err := registry.HashSecret("a-secret-for-the-benchmark-0123456789")
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	var failed error
	var mu sync.Mutex
	for i := range n {
		id := fmt.Sprintf("cow-%07d", i)
		v, err := f.serde.Encode(ctx, topics.DevicesRegistry, &schemas.RegistryRecord{
			Kind: registry.KindDevice, Tenant: fmt.Sprintf("farm%d", i%50), DeviceID: id, Status: "active", DeviceType: "collar",
			Labels: map[string]string{"herd": "north", "paddock": strconv.Itoa(i % 200)}, AltIDs: map[string]string{},
			Secret:           &schemas.SecretHash{Algorithm: h.Algorithm, Iterations: int32(h.Iterations), Salt: h.Salt, Hash: h.Hash},
			CertFingerprints: []string{}, CreatedAt: now, UpdatedAt: now, TS: now, IngestedAt: now,
		})
		if err != nil {
			return err
		}
		key := fmt.Sprintf("farm%d/%s", i%50, id)
		cl.Produce(ctx, &kgo.Record{Topic: topics.DevicesRegistry, Key: []byte(key), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return failed
}

// BenchmarkRestore measures how long a registry view takes from start to
// ready over a registry of 1M devices (DROVER_BENCH_DEVICES) on the
// embedded Kafka, next to a bare franz-go consumer reading the same records
// to the same end offsets without decoding them (the baseline).
func BenchmarkRestore(b *testing.B) {
	n := benchDevices(b)
	f := fill(b, n)
	for b.Loop() {
		runtime.GC()
		base := consume(b, f)
		before := heapInUse()
		cpu0 := cpuTime()
		start := time.Now()
		v, stop := startView(b, f)
		restore := time.Since(start)
		cpu := cpuTime() - cpu0
		if got := len(v.Devices()); got != n {
			b.Fatalf("restored %d devices, want %d", got, n)
		}
		heap := heapInUse() - before
		stop()
		b.ReportMetric(restore.Seconds(), "restore-s")
		b.ReportMetric(base.Seconds(), "consume-s")
		b.ReportMetric(restore.Seconds()/base.Seconds(), "restore/consume")
		b.ReportMetric(float64(n)/restore.Seconds(), "devices/s")
		b.ReportMetric(cpu.Seconds(), "restore-cpu-s")
		b.ReportMetric(heap, "view-heap-MB")
		fmt.Printf("registry view restore, %d devices: %.2fs to ready (%.0f devices/s, %.1f CPU s), bare consume %.2fs (ratio %.1f); the view holds %.0f MB of heap\n",
			n, restore.Seconds(), float64(n)/restore.Seconds(), cpu.Seconds(), base.Seconds(), restore.Seconds()/base.Seconds(), heap)
	}
}

func startView(b *testing.B, f restoreFixture) (*registry.View, func()) {
	v, err := registry.NewView([]kgo.Opt{kgo.SeedBrokers(f.brokers...)}, f.serde, registry.WithLogger(devtest.Logger()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	if err := v.WaitReady(wctx); err != nil {
		cancel()
		b.Fatal(err, <-done)
	}
	return v, func() { cancel(); <-done }
}

// consume reads every record of the topic up to its end offsets with a
// bare consumer and returns how long it took.
func consume(b *testing.B, f restoreFixture) time.Duration {
	ctx := context.Background()
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.ConsumeTopics(topics.DevicesRegistry), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics.DevicesRegistry)
	if err != nil {
		b.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset+1 >= left[p.Partition] {
				delete(left, p.Partition)
			}
		})
	}
	return time.Since(start)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse is the heap in use after a garbage collection, in MiB.
func heapInUse() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}
