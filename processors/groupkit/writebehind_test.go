package groupkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationWriteBehind runs a counting goka group with its table
// written behind and checks the two promises WriteBehind makes: no input
// offset is committed before the table writes covering it are in Kafka,
// and the changelog gets the latest value per key, not one record per input.
func TestIntegrationWriteBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	const (
		group = "wbtest"
		input = "wb-in"
		table = "wbtest-table"
		keys  = 5
		first = 200
	)
	kc := devtest.Kafka(t, kfake.SeedTopics(2, input, table))
	brokers := kc.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	produce := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := &kgo.Record{Topic: input, Key: []byte(fmt.Sprintf("k%d", i%keys)), Value: []byte("x")}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	graph := goka.DefineGroup(group,
		goka.Input(input, new(codec.String), func(ctx goka.Context, _ interface{}) {
			var n int64
			if v := ctx.Value(); v != nil {
				n = v.(int64)
			}
			ctx.SetValue(n + 1)
		}),
		goka.Persist(new(codec.Int64)),
	)
	k := NewKafka(brokers)
	start := func(flush time.Duration) (*goka.Processor, context.CancelFunc, chan error) {
		t.Helper()
		opts := k.ProcessorOptions(group)
		if flush > 0 {
			opts = append(opts, k.WriteBehindOptions(group, flush)...)
		}
		p, err := goka.NewProcessor(brokers, graph, opts...)
		if err != nil {
			t.Fatal(err)
		}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(pctx) }()
		return p, stop, done
	}
	total := func(p *goka.Processor) int64 {
		var sum int64
		for i := 0; i < keys; i++ {
			v, err := p.Get(fmt.Sprintf("k%d", i))
			if err == nil && v != nil {
				sum += v.(int64)
			}
		}
		return sum
	}
	waitTotal := func(p *goka.Processor, want int64) {
		t.Helper()
		// goka's Get races with partition setup; ask once recovered.
		for !p.Recovered() {
			if ctx.Err() != nil {
				t.Fatal("processor never recovered")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for total(p) != want {
			if ctx.Err() != nil {
				t.Fatalf("counted %d records, want %d", total(p), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	committed := func() int64 {
		t.Helper()
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == input && o.At > 0 {
				sum += o.At
			}
		})
		return sum
	}
	tableRecords := func() int64 {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	stopWait := func(stop context.CancelFunc, done chan error) {
		t.Helper()
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("processor: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("processor did not stop")
		}
	}

	// Phase 1: a flush interval of an hour, so only the stop flushes.
	produce(first)
	p, stop, done := start(time.Hour)
	waitTotal(p, first)
	time.Sleep(2500 * time.Millisecond) // sarama auto-commits every second
	if c := committed(); c != 0 {
		t.Fatalf("%d input offsets committed before any table write was flushed; want 0", c)
	}
	if n := tableRecords(); n != 0 {
		t.Fatalf("%d table records before the first flush; want 0 (held)", n)
	}
	stopWait(stop, done)
	if c := committed(); c != first {
		t.Fatalf("after the stop flush %d input offsets are committed, want %d", c, first)
	}
	if n := tableRecords(); n != keys {
		t.Fatalf("the stop flush wrote %d table records, want %d (the latest value per key)", n, keys)
	}

	// Phase 2: a restart recovers the counts from the table and does not
	// count the committed records again; a short interval then commits as
	// it goes, while the group runs.
	p, stop, done = start(50 * time.Millisecond)
	waitTotal(p, first)
	produce(50)
	waitTotal(p, first+50)
	for committed() != first+50 {
		if ctx.Err() != nil {
			t.Fatalf("committed %d while running, want %d", committed(), first+50)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if got := total(p); got != first+50 {
		t.Fatalf("counted %d after the restart, want %d (records counted twice?)", got, first+50)
	}
	stopWait(stop, done)
}
