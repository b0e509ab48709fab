package gokakgo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConsumerBuilder returns goka's partition-consumer builder on kgo
// (goka.WithConsumerSaramaBuilder and goka.WithViewConsumerSaramaBuilder
// take it).
func ConsumerBuilder(cfg Config) func(brokers []string, clientID string) (sarama.Consumer, error) {
	return func(brokers []string, clientID string) (sarama.Consumer, error) {
		return NewConsumer(cfg, brokers, clientID)
	}
}

// Consumer is sarama.Consumer on one kgo client consuming partitions
// directly; see the package documentation.
type Consumer struct {
	cfg    Config
	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	pcs  map[string]map[int32]*partitionConsumer
	hwms map[string]map[int32]int64
}

var _ sarama.Consumer = (*Consumer)(nil)

// NewConsumer starts a client (no partitions yet) and its poll loop.
func NewConsumer(cfg Config, brokers []string, clientID string) (*Consumer, error) {
	opts := cfg.baseOpts(brokers, clientID, "tables")
	// Direct consumption with no partition yet: partitions come with
	// ConsumePartition.
	opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{}),
		// goka adds the partitions of a table one by one, from one
		// goroutine each; every AddConsumePartitions asks for a metadata
		// update, and kgo spaces those by MetadataMinAge (5 s by default):
		// all but the first partition waited 5 s before their first fetch
		// (100k devices restored in 5 s instead of 1).
		kgo.MetadataMinAge(100*time.Millisecond))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("gokakgo: consumer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{cfg: cfg, cl: cl, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		pcs: map[string]map[int32]*partitionConsumer{}, hwms: map[string]map[int32]int64{}}
	go c.poll()
	return c, nil
}

// Client returns the underlying kgo client.
func (c *Consumer) Client() *kgo.Client { return c.cl }

func (c *Consumer) poll() {
	defer close(c.done)
	for {
		fs := c.cl.PollRecords(c.ctx, c.cfg.maxPoll())
		if c.ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			if pc := c.get(t, p); pc != nil {
				pc.report(err)
			}
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			c.mu.Lock()
			if c.hwms[p.Topic] == nil {
				c.hwms[p.Topic] = map[int32]int64{}
			}
			c.hwms[p.Topic][p.Partition] = p.HighWatermark
			c.mu.Unlock()
			pc := c.get(p.Topic, p.Partition)
			if pc == nil || len(p.Records) == 0 {
				return
			}
			pc.hwm.Store(p.HighWatermark)
			pc.deliver(c.ctx, toMessages(p.Records))
		})
	}
}

func (c *Consumer) get(topic string, partition int32) *partitionConsumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pcs[topic][partition]
}

// Topics lists the cluster's topics.
func (c *Consumer) Topics() ([]string, error) {
	ctx, cancel := context.WithTimeout(c.ctx, requestTimeout)
	defer cancel()
	td, err := kadm.NewClient(c.cl).ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	return td.Names(), nil
}

// Partitions lists topic's partitions.
func (c *Consumer) Partitions(topic string) ([]int32, error) {
	return partitions(c.ctx, c.cl, topic)
}

// ConsumePartition starts consuming topic/partition at offset (or
// sarama.OffsetOldest / OffsetNewest).
func (c *Consumer) ConsumePartition(topic string, partition int32, offset int64) (sarama.PartitionConsumer, error) {
	var at kgo.Offset
	switch offset {
	case sarama.OffsetOldest:
		at = kgo.NewOffset().AtStart()
	case sarama.OffsetNewest:
		at = kgo.NewOffset().AtEnd()
	default:
		if offset < 0 {
			return nil, fmt.Errorf("gokakgo: %s/%d: invalid offset %d", topic, partition, offset)
		}
		at = kgo.NewOffset().At(offset)
	}
	pc := &partitionConsumer{c: c, topic: topic, partition: partition, next: offset,
		msgs: make(chan *sarama.ConsumerMessage, c.cfg.bufferSize()), errs: make(chan *sarama.ConsumerError, 16),
		batches: make(chan []sarama.ConsumerMessage, batchQueue), closing: make(chan struct{}), pumped: make(chan struct{})}
	c.mu.Lock()
	if c.pcs[topic][partition] != nil {
		c.mu.Unlock()
		return nil, sarama.ConfigurationError(fmt.Sprintf("gokakgo: %s/%d is already consumed", topic, partition))
	}
	if c.pcs[topic] == nil {
		c.pcs[topic] = map[int32]*partitionConsumer{}
	}
	c.pcs[topic][partition] = pc
	c.mu.Unlock()
	go pc.pump(c.ctx)
	c.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: at}})
	return pc, nil
}

func (c *Consumer) remove(pc *partitionConsumer) {
	c.mu.Lock()
	if c.pcs[pc.topic][pc.partition] == pc {
		delete(c.pcs[pc.topic], pc.partition)
	}
	c.mu.Unlock()
	c.cl.RemoveConsumePartitions(map[string][]int32{pc.topic: {pc.partition}})
}

// HighWaterMarks returns the high watermark of every partition fetched.
func (c *Consumer) HighWaterMarks() map[string]map[int32]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[int32]int64, len(c.hwms))
	for t, ps := range c.hwms {
		out[t] = make(map[int32]int64, len(ps))
		for p, h := range ps {
			out[t][p] = h
		}
	}
	return out
}

// Close closes every partition consumer and the client.
func (c *Consumer) Close() error {
	c.mu.Lock()
	var pcs []*partitionConsumer
	for _, ps := range c.pcs {
		for _, pc := range ps {
			pcs = append(pcs, pc)
		}
	}
	c.mu.Unlock()
	for _, pc := range pcs {
		pc.AsyncClose()
	}
	c.cancel()
	c.cl.Close()
	<-c.done
	for _, pc := range pcs {
		pc.finish()
	}
	return nil
}

// Pause stops fetching partitions.
func (c *Consumer) Pause(tps map[string][]int32) { c.cl.PauseFetchPartitions(tps) }

// Resume resumes partitions.
func (c *Consumer) Resume(tps map[string][]int32) { c.cl.ResumeFetchPartitions(tps) }

// PauseAll pauses every partition consumed.
func (c *Consumer) PauseAll() {
	c.mu.Lock()
	tps := map[string][]int32{}
	for t, ps := range c.pcs {
		for p := range ps {
			tps[t] = append(tps[t], p)
		}
	}
	c.mu.Unlock()
	c.cl.PauseFetchPartitions(tps)
}

// ResumeAll resumes every paused partition.
func (c *Consumer) ResumeAll() { c.cl.ResumeFetchPartitions(c.cl.PauseFetchPartitions(nil)) }

// partitionConsumer is sarama.PartitionConsumer on a Consumer.
type partitionConsumer struct {
	c          *Consumer
	topic      string
	partition  int32
	hwm        atomicInt64
	msgs       chan *sarama.ConsumerMessage
	errs       chan *sarama.ConsumerError
	batches    chan []sarama.ConsumerMessage
	closing    chan struct{}
	pumped     chan struct{} // closed when pump returned
	closeOnce  sync.Once
	finishOnce sync.Once
	mu         sync.Mutex // guards shut and the errs channel's closing
	next       int64      // next offset expected (negative: any); the pump's
	paused     atomic.Bool
	shut       bool
}

var _ sarama.PartitionConsumer = (*partitionConsumer)(nil)

// deliver queues a fetched batch for the partition's pump (the poll loop
// does not wait for one slow partition while the others have room).
func (pc *partitionConsumer) deliver(ctx context.Context, msgs []sarama.ConsumerMessage) {
	select {
	case pc.batches <- msgs:
	case <-pc.closing:
	case <-ctx.Done():
	}
}

// pump hands the queued batches to goka in order, dropping offsets it has
// already delivered (a partition removed and added again).
func (pc *partitionConsumer) pump(ctx context.Context) {
	defer close(pc.pumped)
	for {
		select {
		case msgs := <-pc.batches:
			for i := range msgs {
				if pc.next >= 0 && msgs[i].Offset < pc.next {
					continue
				}
				select {
				case pc.msgs <- &msgs[i]:
					pc.next = msgs[i].Offset + 1
				case <-pc.closing:
					return
				case <-ctx.Done():
					return
				}
			}
		case <-pc.closing:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (pc *partitionConsumer) report(err error) {
	var ke *kerr.Error
	if errors.As(err, &ke) && ke.Retriable {
		return // kgo retries these itself
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.shut {
		return
	}
	select {
	case pc.errs <- &sarama.ConsumerError{Topic: pc.topic, Partition: pc.partition, Err: err}:
	default:
	}
}

// AsyncClose stops the partition; Messages and Errors close soon after.
func (pc *partitionConsumer) AsyncClose() {
	pc.closeOnce.Do(func() {
		close(pc.closing)
		pc.c.remove(pc)
		go pc.finish()
	})
}

// finish closes the channels once the pump returned.
func (pc *partitionConsumer) finish() {
	pc.finishOnce.Do(func() {
		<-pc.pumped
		pc.mu.Lock()
		pc.shut = true
		close(pc.msgs)
		close(pc.errs)
		pc.mu.Unlock()
	})
}

// Close stops the partition and returns its pending errors.
func (pc *partitionConsumer) Close() error {
	pc.AsyncClose()
	var errs sarama.ConsumerErrors
	for range pc.msgs {
	}
	for err := range pc.errs {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

func (pc *partitionConsumer) Messages() <-chan *sarama.ConsumerMessage { return pc.msgs }
func (pc *partitionConsumer) Errors() <-chan *sarama.ConsumerError     { return pc.errs }
func (pc *partitionConsumer) HighWaterMarkOffset() int64               { return pc.hwm.Load() }

func (pc *partitionConsumer) Pause() {
	pc.c.cl.PauseFetchPartitions(map[string][]int32{pc.topic: {pc.partition}})
	pc.paused.Store(true)
}

func (pc *partitionConsumer) Resume() {
	pc.c.cl.ResumeFetchPartitions(map[string][]int32{pc.topic: {pc.partition}})
	pc.paused.Store(false)
}

func (pc *partitionConsumer) IsPaused() bool { return pc.paused.Load() }
