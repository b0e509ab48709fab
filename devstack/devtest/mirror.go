package devtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Mirror copies every record of topics from the cluster at from to the
// cluster at to until the test ends, as MirrorMaker 2 with the identity
// replication policy does: same topic name, partition, key, value, headers
// and timestamp. The topics must exist on both clusters with the same
// partition counts. It returns the number of records copied so far.
func Mirror(t testing.TB, from, to []string, topics ...string) func() int64 {
	t.Helper()
	src, err := kgo.NewClient(kgo.SeedBrokers(from...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("devtest: mirror source: %v", err)
	}
	dst, err := kgo.NewClient(kgo.SeedBrokers(to...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0))
	if err != nil {
		src.Close()
		t.Fatalf("devtest: mirror target: %v", err)
	}
	var copied atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fs := src.PollFetches(ctx)
			fs.EachError(func(topic string, p int32, err error) {
				if ctx.Err() == nil {
					t.Errorf("devtest: mirror: fetch %s/%d: %v", topic, p, err)
				}
			})
			var out []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				out = append(out, &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value,
					Headers: r.Headers, Timestamp: r.Timestamp})
			})
			if len(out) == 0 {
				continue
			}
			if err := dst.ProduceSync(ctx, out...).FirstErr(); err != nil {
				if ctx.Err() == nil {
					t.Errorf("devtest: mirror: produce: %v", err)
				}
				return
			}
			copied.Add(int64(len(out)))
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		src.Close()
		dst.Close()
	})
	return copied.Load
}
