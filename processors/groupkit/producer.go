package groupkit

import (
	"context"
	"fmt"
	"hash"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kgo"
)

// flushTimeout bounds how long Close waits for buffered records.
const flushTimeout = 60 * time.Second

// kgoProducer is a goka.Producer on franz-go: goka hands it every table
// write, loopback and output record. It partitions exactly as goka's own
// sarama producer would (the group's hasher, int32 of Sum32, abs, modulo),
// keeps per-partition order (idempotent producer, acks from all in-sync
// replicas), and resolves each goka Promise with the record's partition
// and offset (goka stores the offset of its table writes).
type kgoProducer struct {
	cl *kgo.Client
}

var _ goka.Producer = (*kgoProducer)(nil)

// kgoCompression maps sarama's producer compression setting to franz-go's:
// the franz-go producer compresses as the sarama configuration says
// (NewKafka: none; franz-go's own default would be snappy, which cost the
// features group about 5% of its CPU for table writes nobody reads back
// during processing).
func kgoCompression(c sarama.CompressionCodec) kgo.CompressionCodec {
	switch c {
	case sarama.CompressionGZIP:
		return kgo.GzipCompression()
	case sarama.CompressionSnappy:
		return kgo.SnappyCompression()
	case sarama.CompressionLZ4:
		return kgo.Lz4Compression()
	case sarama.CompressionZSTD:
		return kgo.ZstdCompression()
	default:
		return kgo.NoCompression()
	}
}

func newKgoProducer(opts []kgo.Opt, clientID string, hasher func() hash.Hash32) (*kgoProducer, error) {
	part := kgo.BasicConsistentPartitioner(func(string) func(*kgo.Record, int) int {
		return func(r *kgo.Record, n int) int {
			h := hasher()
			_, _ = h.Write(r.Key)
			p := int32(h.Sum32()) % int32(n)
			if p < 0 {
				p = -p
			}
			return int(p)
		}
	})
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ClientID(clientID),
		kgo.RecordPartitioner(part),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(100_000),
	)...)
	if err != nil {
		return nil, fmt.Errorf("goka producer (franz-go): %w", err)
	}
	return &kgoProducer{cl: cl}, nil
}

// Emit implements goka.Producer.
func (p *kgoProducer) Emit(topic string, key string, value []byte) *goka.Promise {
	return p.EmitWithHeaders(topic, key, value, nil)
}

// EmitWithHeaders implements goka.Producer.
func (p *kgoProducer) EmitWithHeaders(topic string, key string, value []byte, headers goka.Headers) *goka.Promise {
	promise, finish := goka.NewPromiseWithFinisher()
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: value}
	for k, v := range headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: k, Value: v})
	}
	p.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		if err != nil {
			finish(nil, fmt.Errorf("producing to %s: %w", r.Topic, err))
			return
		}
		finish(&sarama.ProducerMessage{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}, nil)
	})
	return promise
}

// Close flushes buffered records (at most a minute) and closes the client.
func (p *kgoProducer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	err := p.cl.Flush(ctx)
	p.cl.Close()
	if err != nil {
		return fmt.Errorf("goka producer (franz-go): flushing: %w", err)
	}
	return nil
}
