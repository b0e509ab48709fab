package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Run reads the registry topic from the start of every partition (no
// consumer group) and applies each record, until ctx is done; it returns nil
// then. The view becomes ready once it has applied every record below the
// end offsets listed when Run started. A record that does not decode, or
// decodes into a malformed entry, is skipped, logged and counted
// (drover_registry_records_total{result="undecodable"|"invalid"}); a schema
// registry that cannot be reached is retried, not skipped. A missing topic
// is an error.
func (v *View) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(cloneOpts(v.kopts),
		kgo.ConsumeTopics(v.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("registry view: kafka client: %w", err)
	}
	defer cl.Close()
	start := time.Now()
	targets, err := v.waitTargets(ctx, kadm.NewClient(cl))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	v.presize(targets)
	v.maybeReady(targets, start)
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				v.log.Warn("registry view: fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				v.apply(ctx, r)
			}
			if n := len(p.Records); n > 0 {
				v.advance(p.Partition, p.Records[n-1].Offset+1)
			}
		})
		v.maybeReady(targets, start)
	}
}

func cloneOpts(o []kgo.Opt) []kgo.Opt { return append([]kgo.Opt(nil), o...) }

// waitTargets lists the targets, retrying while Kafka cannot answer (not
// up yet, no leader): only a missing topic is final.
func (v *View) waitTargets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	backoff := 200 * time.Millisecond
	for {
		t, err := v.targets(ctx, adm)
		if err == nil || errors.Is(err, errNoTopic) || ctx.Err() != nil {
			return t, err
		}
		v.log.Warn("registry view: cannot list the registry's offsets yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

var errNoTopic = errors.New("topic does not exist (create it: drover topics apply)")

// targets lists, per partition, the end offset the view must reach to be
// ready; partitions that are empty (start == end) are left out and their
// progress starts at the end.
func (v *View) targets(ctx context.Context, adm *kadm.Client) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, v.topic)
	if err != nil {
		return nil, fmt.Errorf("registry view: listing end offsets of %s: %w", v.topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, v.topic)
	if err != nil {
		return nil, fmt.Errorf("registry view: listing start offsets of %s: %w", v.topic, err)
	}
	if err := ends.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("registry view: %s: %w", v.topic, errNoTopic)
		}
		return nil, fmt.Errorf("registry view: end offsets of %s: %w", v.topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			out[o.Partition] = o.Offset
		}
	})
	if len(ends) == 0 {
		return nil, fmt.Errorf("registry view: %s: %w", v.topic, errNoTopic)
	}
	return out, nil
}

// presize sizes the empty device shards for the records to restore (an
// upper bound: compaction and tombstones leave fewer devices), so the
// restore does not grow and rehash them again and again. End offsets of a
// compacted topic overcount (every update had one), hence the cap.
func (v *View) presize(targets map[int32]int64) {
	var n int64
	for _, end := range targets {
		n += end
	}
	per := int(min(n/nShards, 1<<16)) // at most 4M devices ahead
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.Lock()
		if len(s.m) == 0 && per > 0 {
			s.m = make(map[string]*Device, per)
		}
		s.mu.Unlock()
	}
}

func (v *View) maybeReady(targets map[int32]int64, start time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.isReady {
		return
	}
	for p, end := range targets {
		if v.progress[p] < end {
			return
		}
	}
	v.isReady = true
	close(v.ready)
	v.m.ready.Set(1)
	v.m.restore.Set(time.Since(start).Seconds())
	v.log.Info("registry view ready", "topic", v.topic, "devices", v.count(), "restore", time.Since(start).Round(time.Millisecond))
}

func (v *View) count() int {
	n := 0
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// apply applies one record: a tombstone deletes its key, a device or tenant
// record replaces the entry of its key.
func (v *View) apply(ctx context.Context, r *kgo.Record) {
	if r.Attrs.IsControl() {
		return
	}
	key := string(r.Key)
	if r.Value == nil {
		v.m.result[resultDeleted].Inc()
		if strings.Contains(key, identity.Separator) {
			v.removeDevice(key)
		} else {
			v.removeTenant(key)
		}
		return
	}
	rec, err := v.decode(ctx, r)
	if err != nil {
		if ctx.Err() == nil {
			v.m.result[resultUndecodable].Inc()
			v.log.Warn("registry view: skipping a record that does not decode", "partition", r.Partition, "offset", r.Offset, "key", fmt.Sprintf("%q", key), "err", err)
		}
		return
	}
	if err := v.applyRecord(key, rec); err != nil {
		v.m.result[resultInvalid].Inc()
		v.log.Warn("registry view: skipping an invalid record", "partition", r.Partition, "offset", r.Offset, "key", fmt.Sprintf("%q", key), "err", err)
		return
	}
	v.m.result[resultApplied].Inc()
}

func (v *View) applyRecord(key string, rec *schemas.RegistryRecord) error {
	switch rec.Kind {
	case KindDevice:
		d, err := deviceFromRecord(key, rec)
		if err != nil {
			return err
		}
		v.intern(d)
		v.putDevice(key, d)
	case KindTenant:
		t, err := tenantFromRecord(key, rec)
		if err != nil {
			return err
		}
		v.tenants.Lock()
		v.tenants.m[t.ID] = t
		n := len(v.tenants.m)
		v.tenants.Unlock()
		v.m.tenants.Set(float64(n))
		v.notify(Change{Key: key, Tenant: t})
	default:
		return fmt.Errorf("unknown kind %q (want %s or %s)", rec.Kind, KindDevice, KindTenant)
	}
	return nil
}

// decode decodes a record value. Values that are not the wire format, name
// a schema id the registry does not know, or do not decode are permanent
// failures; anything else (the schema registry unreachable) is retried with
// back-off until ctx is done.
func (v *View) decode(ctx context.Context, r *kgo.Record) (*schemas.RegistryRecord, error) {
	backoff := 100 * time.Millisecond
	for {
		var rec schemas.RegistryRecord
		_, err := v.serde.Decode(ctx, r.Value, &rec)
		if err == nil {
			return &rec, nil
		}
		var use *schemas.UnknownSchemaError
		var de *schemas.DecodeError
		if errors.Is(err, schemas.ErrNotWireFormat) || errors.As(err, &use) || errors.As(err, &de) || ctx.Err() != nil {
			return nil, err
		}
		v.log.Warn("registry view: cannot decode yet, retrying", "partition", r.Partition, "offset", r.Offset, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
