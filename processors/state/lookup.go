package state

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Lookup reads device's latest state from the compacted state.latest
// topic: it reads the one partition the device's key maps to (Kafka's
// default partitioner, which the state group also uses) from its start to
// its current end and keeps the device's last record. kopts connect to
// the cluster (cli.Conn.KafkaOpts). The error wraps ErrNotFound when the
// device has no record (or its last record is a tombstone).
func Lookup(ctx context.Context, kopts []kgo.Opt, serde *schemas.Serde, device string) (*schemas.DeviceState, error) {
	topic := topics.StateLatest
	admCl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	adm := kadm.NewClient(admCl)
	defer adm.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	parts := ends[topic]
	if len(parts) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions (does it exist?)", topic)
	}
	p := groupkit.Partition(device, int32(len(parts)))
	end, ok := parts[p]
	if !ok || end.Err != nil {
		return nil, fmt.Errorf("end offset of %s/%d unknown", topic, p)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	start, _ := starts.Lookup(topic, p)
	if end.Offset <= start.Offset {
		return nil, fmt.Errorf("%w: %s (%s/%d is empty)", ErrNotFound, device, topic, p)
	}
	cl, err := kgo.NewClient(append(kopts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {p: kgo.NewOffset().At(start.Offset)},
	}))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	var last []byte
	found := false
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, p, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("reading %s/%d: %w", topic, p, ferr)
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == device {
				last, found = r.Value, true
			}
			if r.Offset >= end.Offset-1 {
				done = true
			}
		})
		if done {
			break
		}
	}
	if !found || last == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, device)
	}
	var ds schemas.DeviceState
	if _, err := serde.DecodeTopic(ctx, topic, last, &ds); err != nil {
		return nil, fmt.Errorf("decoding state of %s: %w", device, err)
	}
	return &ds, nil
}
