package smoke

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// record is one Kafka record of interest, decoded.
type record struct {
	Topic   string
	Key     string
	Headers map[string]string
	Value   any // *schemas.SensorReading, *schemas.GPSFix, ...
	Err     error
}

// collector consumes the watched topics from the offsets they had before
// the run published anything, decodes every record and keeps those whose
// keep func says so.
type collector struct {
	cl    *kgo.Client
	serde *schemas.Serde
	keep  func(r *record) bool

	mu   sync.Mutex
	recs map[string][]*record
	errs []error
}

// watched are the topics the smoke run reads.
func watched() []string {
	ts := []string{topics.RawSensor, topics.RawGPS, topics.DLQ, topics.Features, topics.Alerts, topics.StateLatest}
	for _, k := range mediaKinds {
		t, _ := topics.MediaTopic(k)
		ts = append(ts, t)
	}
	return ts
}

var mediaKinds = []string{"image2d", "image3d", "video2d", "video3d"}

func newValue(topic string) any {
	switch topic {
	case topics.RawSensor:
		return new(schemas.SensorReading)
	case topics.RawGPS:
		return new(schemas.GPSFix)
	case topics.DLQ:
		return new(schemas.DeadLetter)
	case topics.Features:
		return new(schemas.Feature)
	case topics.Alerts:
		return new(schemas.Alert)
	case topics.StateLatest:
		return new(schemas.DeviceState)
	}
	return new(schemas.MediaObject)
}

// startCollector lists the end offsets of the watched topics and starts
// consuming from there.
func startCollector(ctx context.Context, brokers []string, serde *schemas.Serde, keep func(*record) bool) (*collector, error) {
	seed, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	adm := kadm.NewClient(seed)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	ends, err := adm.ListEndOffsets(lctx, watched()...)
	cancel()
	seed.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka %v: listing end offsets of %v: %w", brokers, watched(), err)
	}
	start := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if start[o.Topic] == nil {
			start[o.Topic] = map[int32]kgo.Offset{}
		}
		start[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(start),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	c := &collector{cl: cl, serde: serde, keep: keep, recs: map[string][]*record{}}
	go c.run(ctx)
	return c, nil
}

func (c *collector) run(ctx context.Context) {
	for {
		fs := c.cl.PollFetches(ctx)
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			c.mu.Lock()
			if len(c.errs) < 20 {
				c.errs = append(c.errs, fmt.Errorf("fetch %s/%d: %w", t, p, err))
			}
			c.mu.Unlock()
		})
		fs.EachRecord(func(kr *kgo.Record) {
			r := &record{Topic: kr.Topic, Key: string(kr.Key), Headers: map[string]string{}}
			for _, h := range kr.Headers {
				r.Headers[h.Key] = string(h.Value)
			}
			if kr.Value == nil { // a tombstone (state.latest is compacted)
				return
			}
			v := newValue(kr.Topic)
			if _, err := c.serde.DecodeTopic(ctx, kr.Topic, kr.Value, v); err != nil {
				r.Err = err
			}
			r.Value = v
			if !c.keep(r) {
				return
			}
			c.mu.Lock()
			c.recs[kr.Topic] = append(c.recs[kr.Topic], r)
			c.mu.Unlock()
		})
	}
}

// snapshot returns the records kept so far on topic.
func (c *collector) snapshot(topic string) []*record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*record(nil), c.recs[topic]...)
}

func (c *collector) close() { c.cl.Close() }
