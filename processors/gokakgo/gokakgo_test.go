package gokakgo

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
)

func testConfig() Config {
	return Config{SessionTimeout: 6 * time.Second, RebalanceTimeout: 10 * time.Second, HeartbeatInterval: 500 * time.Millisecond,
		CommitInterval: 100 * time.Millisecond, Log: devtest.Logger()}
}

func produce(t *testing.T, cl *kgo.Client, topic string, n int, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%17)), Value: []byte(fmt.Sprintf("%s%d", prefix, i)),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// ownership is one session's hold on one partition.
type ownership struct {
	member     string
	gen        int32
	start, end time.Time
}

// handler marks every message and records what it saw and when it held
// which partition.
type handler struct {
	name string
	mu   *sync.Mutex
	seen map[string]int // value → times
	own  map[string][]ownership
	bad  []string
	cur  map[string]*ownership
	// batches reads the claim's MessageBatches (as drover's goka does)
	// instead of Messages.
	batches bool
}

func (h *handler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = map[string]*ownership{}
	// goka needs copartitioned claims: the same partitions of every topic.
	var first []int32
	for _, ps := range s.Claims() {
		ps = append([]int32(nil), ps...)
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		if first == nil {
			first = ps
		} else if fmt.Sprint(first) != fmt.Sprint(ps) {
			h.bad = append(h.bad, fmt.Sprintf("claims not copartitioned: %v", s.Claims()))
		}
		for _, p := range ps {
			h.cur[fmt.Sprint(p)] = &ownership{member: h.name, gen: s.GenerationID(), start: time.Now()}
		}
	}
	return nil
}

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	if h.batches {
		bc, ok := c.(interface {
			MessageBatches() <-chan []sarama.ConsumerMessage
		})
		if !ok {
			return fmt.Errorf("claim %T has no MessageBatches", c)
		}
		next := int64(-1)
		for {
			select {
			case batch := <-bc.MessageBatches():
				for i := range batch {
					m := &batch[i]
					if m.Offset <= next {
						h.mu.Lock()
						h.bad = append(h.bad, fmt.Sprintf("%s/%d: offset %d after %d", m.Topic, m.Partition, m.Offset, next))
						h.mu.Unlock()
					}
					next = m.Offset
					h.handle(s, m)
				}
			case <-s.Context().Done():
				return nil
			}
		}
	}
	for m := range c.Messages() {
		h.handle(s, m)
	}
	return nil
}

// handle checks, counts and marks one message.
func (h *handler) handle(s sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) {
	if len(m.Headers) != 1 || string(m.Headers[0].Key) != "h" || string(m.Headers[0].Value) != "v" {
		h.mu.Lock()
		h.bad = append(h.bad, fmt.Sprintf("headers of %s/%d@%d: %v", m.Topic, m.Partition, m.Offset, m.Headers))
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.seen[string(m.Value)]++
	h.mu.Unlock()
	s.MarkMessage(m, "")
}

func (h *handler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, o := range h.cur {
		o.end = time.Now()
		h.own[p] = append(h.own[p], *o)
	}
	h.cur = nil
	return nil
}

// runMember runs goka's loop (Consume until ctx ends) on a group.
func runMember(ctx context.Context, g sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler) chan error {
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, topics, h); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// TestIntegrationGroupRebalance runs two members of a group on two
// copartitioned topics: a second member joins and later the first leaves
// while records keep arriving. Every record is handled (at least once),
// every claim is copartitioned, no partition is held by two sessions at
// once (a session ends, Cleanup included, before another member gets its
// partitions), and at the end the committed offsets are the end offsets.
func TestIntegrationGroupRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	const group = "gk-rebalance"
	topics := []string{"in-a", "in-b"}
	kc := devtest.Kafka(t, kfake.SeedTopics(4, topics...))
	brokers := kc.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var mu sync.Mutex
	seen, own := map[string]int{}, map[string][]ownership{}
	ha := &handler{name: "a", mu: &mu, seen: seen, own: own}
	// b takes whole batches (MessageBatches), as drover's patched goka
	// does; a reads one message at a time, as upstream goka does.
	hb := &handler{name: "b", mu: &mu, seen: seen, own: own, batches: true}

	produce(t, cl, "in-a", 200, "a-first-")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, stopA := context.WithCancel(ctx)
	ga := NewConsumerGroup(testConfig(), brokers, group, "a")
	doneA := runMember(actx, ga, topics, ha)
	waitSeen := func(n int) {
		t.Helper()
		for {
			mu.Lock()
			got := len(seen)
			mu.Unlock()
			if got >= n {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("saw %d distinct records, want %d", got, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitSeen(200)

	gb := NewConsumerGroup(testConfig(), brokers, group, "b")
	doneB := runMember(ctx, gb, topics, hb)
	produce(t, cl, "in-b", 300, "b-")
	waitSeen(500)
	// Both hold partitions now (or will, once the rebalance settled).
	for {
		mu.Lock()
		nb := len(hb.cur)
		mu.Unlock()
		if nb > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("member b never got partitions")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// a leaves; b takes everything.
	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("member a: %v", err)
	}
	ga.Close()
	produce(t, cl, "in-a", 200, "a-last-")
	waitSeen(700)
	cancel()
	if err := <-doneB; err != nil {
		t.Fatalf("member b: %v", err)
	}
	gb.Close()

	mu.Lock()
	defer mu.Unlock()
	for _, b := range append(ha.bad, hb.bad...) {
		t.Error(b)
	}
	for p, os := range own {
		sort.Slice(os, func(i, j int) bool { return os[i].start.Before(os[j].start) })
		for i := 1; i < len(os); i++ {
			if os[i].start.Before(os[i-1].end) && os[i].member != os[i-1].member {
				t.Errorf("partition %s held by %s (gen %d) from %s while %s (gen %d) held it until %s",
					p, os[i].member, os[i].gen, os[i].start.Format(time.StampMicro), os[i-1].member, os[i-1].gen, os[i-1].end.Format(time.StampMicro))
			}
		}
	}
	if len(own) != 4 {
		t.Errorf("ownership of %d partitions recorded, want 4", len(own))
	}
	// Committed = end offsets: every handled record was marked and
	// committed before its partition moved.
	adm := kadm.NewClient(cl)
	actx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	ends, err := adm.ListEndOffsets(actx2, topics...)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(actx2, group)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if !ok || c.At != o.Offset {
			t.Errorf("%s/%d: committed %v, end offset %d", o.Topic, o.Partition, c.At, o.Offset)
		}
	})
}

// TestIntegrationPartitionConsumer: records arrive in order from the
// requested offset, AsyncClose closes both channels, the partition can be
// consumed again from another offset, and high watermarks are reported.
func TestIntegrationPartitionConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t, kfake.SeedTopics(2, "tbl"))
	brokers := kc.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < 50; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tbl", Partition: 1, Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := NewConsumer(testConfig(), brokers, "view")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func(from int64, n int) {
		t.Helper()
		pc, err := c.ConsumePartition("tbl", 1, from)
		if err != nil {
			t.Fatal(err)
		}
		want := from
		if from == sarama.OffsetOldest {
			want = 0
		}
		for i := 0; i < n; i++ {
			select {
			case m := <-pc.Messages():
				if m.Offset != want || string(m.Value) != fmt.Sprint(want) {
					t.Fatalf("got offset %d value %s, want %d", m.Offset, m.Value, want)
				}
				want++
			case err := <-pc.Errors():
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("no record at offset %d", want)
			}
		}
		if hwm := pc.HighWaterMarkOffset(); hwm != 50 {
			t.Errorf("partition high watermark %d, want 50", hwm)
		}
		if hwm := c.HighWaterMarks()["tbl"][1]; hwm != 50 {
			t.Errorf("consumer high watermark %d, want 50", hwm)
		}
		pc.AsyncClose()
		for range pc.Messages() {
		}
		for range pc.Errors() {
		}
	}
	read(sarama.OffsetOldest, 50)
	read(30, 20)
	if _, err := c.ConsumePartition("tbl", 0, -7); err == nil {
		t.Fatal("offset -7 accepted")
	}
}

// TestIntegrationTopicManager creates goka's tables and streams with kadm
// and answers offsets like goka's sarama topic manager.
func TestIntegrationTopicManager(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t)
	brokers := kc.ListenAddrs()
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication, tmc.Stream.Replication = 1, 1
	tm, err := NewTopicManager(testConfig(), brokers, "tm", tmc)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if err := tm.EnsureTableExists("g-table", 3); err != nil {
		t.Fatal(err)
	}
	if err := tm.EnsureStreamExists("g-loop", 3); err != nil {
		t.Fatal(err)
	}
	if err := tm.EnsureTableExists("g-table", 3); err != nil { // exists: fine
		t.Fatal(err)
	}
	ps, err := tm.Partitions("g-table")
	if err != nil || len(ps) != 3 {
		t.Fatalf("partitions %v, %v", ps, err)
	}
	if _, err := tm.Partitions("nope"); err == nil {
		t.Fatal("missing topic has partitions")
	}
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, "g-table", "g-loop")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rc {
		want := map[string]string{"g-table": "compact", "g-loop": "delete"}[r.Name]
		for _, c := range r.Configs {
			if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != want) {
				t.Errorf("%s: cleanup.policy %v, want %s", r.Name, c.Value, want)
			}
		}
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "g-table", Partition: 0, Key: []byte("x"), Value: []byte("y")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var p int32 = -1
	for _, part := range []int32{0, 1, 2} {
		if o, _ := tm.GetOffset("g-table", part, sarama.OffsetNewest); o == 1 {
			p = part
		}
	}
	if p < 0 {
		t.Fatal("no partition has end offset 1")
	}
	if o, err := tm.GetOffset("g-table", p, sarama.OffsetOldest); err != nil || o != 0 {
		t.Fatalf("oldest %d, %v", o, err)
	}
}
