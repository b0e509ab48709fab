package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Decoder decodes a Confluent wire-format value (a *schemas.Serde).
type Decoder interface {
	Decode(ctx context.Context, b []byte, v any) (int, error)
}

// Follow reads commands.status from the start with a client built from
// kopts (no consumer group) and calls fn for each record, in order per
// partition. caughtUp (may be nil) is called once every partition was
// read up to its end offset at the start. Follow returns when ctx ends
// (nil) or on an error; records that do not decode are skipped and
// counted by bad (may be nil).
func Follow(ctx context.Context, kopts []kgo.Opt, dec Decoder, fn func(*schemas.CommandStatus), caughtUp func(), bad func(error)) error {
	return FollowTopic(ctx, kopts, topics.CommandStatus, func(r *kgo.Record) {
		var st schemas.CommandStatus
		if _, err := dec.Decode(ctx, r.Value, &st); err != nil {
			if bad != nil {
				bad(fmt.Errorf("%s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
			}
			return
		}
		fn(&st)
	}, caughtUp, bad)
}

// FollowTopic reads topic from the start with a client built from kopts
// (no consumer group) and calls fn for each record, in order per
// partition. caughtUp (may be nil) is called once every partition was
// read up to its end offset at the start. It returns when ctx ends (nil)
// or on an error; fetch errors are passed to bad (may be nil).
func FollowTopic(ctx context.Context, kopts []kgo.Opt, topic string, fn func(*kgo.Record), caughtUp func(), bad func(error)) error {
	opts := append([]kgo.Opt{}, kopts...)
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("%s consumer: %w", topic, err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	pending := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			pending[o.Partition] = o.Offset
		}
	})
	check := func() {
		if len(pending) == 0 && caughtUp != nil {
			caughtUp()
			caughtUp = nil
		}
	}
	check()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil && bad != nil {
			bad(ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			fn(r)
			if end, ok := pending[r.Partition]; ok && r.Offset+1 >= end {
				delete(pending, r.Partition)
			}
		})
		check()
	}
}

// ReadAll reads commands.status up to its end offsets at the start and
// returns the folded commands by id.
func ReadAll(ctx context.Context, kopts []kgo.Opt, dec Decoder) (map[string]*Command, error) {
	out := map[string]*Command{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := false
	err := Follow(ctx, kopts, dec, func(r *schemas.CommandStatus) {
		c := out[r.CommandID]
		if c == nil {
			c = &Command{}
			out[r.CommandID] = c
		}
		Fold(c, r)
	}, func() { done = true; cancel() }, nil)
	if err != nil {
		return nil, err
	}
	if !done {
		return nil, fmt.Errorf("reading %s: %w", topics.CommandStatus, context.Cause(ctx))
	}
	return out, nil
}
