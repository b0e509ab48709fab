package bridge

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// owner is which devices this replica sends to: those whose key maps to a
// partition of the commands topic the downlink's consumer group assigned
// to it. Every replica knows every open command (commands.status) and
// every connect (the broker's events are not shared), so without it each
// replica would send a waiting command when its device connects. Safe for
// concurrent use.
type owner struct {
	mu       sync.Mutex
	parts    int // partitions of the commands topic; 0 = unknown
	assigned map[int32]bool
	part     kgo.TopicPartitioner
}

func newOwner(topic string) *owner {
	return &owner{assigned: map[int32]bool{}, part: kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

// partition is the commands partition of a device key: Kafka's default
// partitioner (murmur2 of the key), which producers of commands.devices
// use with the same key.
func (o *owner) partition(key string, n int) int32 {
	return int32(o.part.Partition(&kgo.Record{Key: []byte(key)}, n))
}

// owns reports whether key's partition is assigned to this replica.
func (o *owner) owns(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parts == 0 {
		return false
	}
	return o.assigned[o.partition(key, o.parts)]
}

// learnParts reads the commands topic's partition count (retrying until
// it is known or ctx ends).
func (o *owner) learnParts(ctx context.Context, cl *kgo.Client, topic string) error {
	for {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err == nil && len(ends[topic]) > 0 {
			o.setParts(len(ends[topic]))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (o *owner) setParts(n int) {
	o.mu.Lock()
	o.parts = n
	o.mu.Unlock()
}

func (o *owner) assign(ps []int32) {
	o.mu.Lock()
	for _, p := range ps {
		o.assigned[p] = true
	}
	o.mu.Unlock()
}

func (o *owner) revoke(ps []int32) {
	o.mu.Lock()
	for _, p := range ps {
		delete(o.assigned, p)
	}
	o.mu.Unlock()
}

// owns reports whether this replica sends to the device (always, without
// the downlink's group: a single bridge).
func (b *Bridge) owns(key string) bool {
	if b.owner == nil {
		return true
	}
	return b.owner.owns(key)
}

// ownerOpts are the downlink consumer's options that keep b.owner in step
// with the group's assignment; a newly assigned partition's connected
// devices get their waiting commands and deltas at once.
func (b *Bridge) ownerOpts() []kgo.Opt {
	topic := b.cfg.CommandsTopic
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			b.owner.assign(m[topic])
			b.kickOwned(m[topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { b.owner.revoke(m[topic]) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) { b.owner.revoke(m[topic]) }),
	}
}

// kickOwned asks the flusher to serve the connected devices of newly
// assigned partitions.
func (b *Bridge) kickOwned(ps []int32) {
	if b.presence == nil || len(ps) == 0 {
		return
	}
	b.owner.mu.Lock()
	n := b.owner.parts
	b.owner.mu.Unlock()
	if n == 0 {
		return
	}
	in := map[int32]bool{}
	for _, p := range ps {
		in[p] = true
	}
	for _, key := range b.presence.onlineKeys() {
		if in[b.owner.partition(key, n)] {
			select {
			case b.presence.kick <- key:
			default:
			}
		}
	}
}
