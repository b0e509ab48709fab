package alerts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/processors/groupkit"
)

// storeSet tracks the local storages of the group table this instance
// owns, so the offline sweep can iterate them. goka opens a storage per
// assigned partition and closes it when the partition is revoked.
type storeSet struct {
	table string
	mu    sync.Mutex
	m     map[*trackedStorage]struct{}
}

type trackedStorage struct {
	storage.Storage
	set       *storeSet
	partition int32
	recovered atomic.Bool
}

func (s *storeSet) wrap(b storage.Builder) storage.Builder {
	return func(topic string, partition int32) (storage.Storage, error) {
		st, err := b(topic, partition)
		if err != nil || topic != s.table {
			return st, err
		}
		ts := &trackedStorage{Storage: st, set: s, partition: partition}
		s.mu.Lock()
		s.m[ts] = struct{}{}
		s.mu.Unlock()
		return ts, nil
	}
}

// MarkRecovered notes that the partition's table is fully restored: only
// then does the sweep trust it.
func (t *trackedStorage) MarkRecovered() error {
	t.recovered.Store(true)
	return t.Storage.MarkRecovered()
}

func (t *trackedStorage) Close() error {
	t.set.mu.Lock()
	delete(t.set.m, t)
	t.set.mu.Unlock()
	return t.Storage.Close()
}

func (s *storeSet) recovered() []*trackedStorage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*trackedStorage, 0, len(s.m))
	for t := range s.m {
		if t.recovered.Load() {
			out = append(out, t)
		}
	}
	return out
}

// loopEmitter returns the emitter of offline ticks, creating it on first
// use (with the same hasher, so a tick lands on its device's partition).
func (p *Processor) loopEmitter() (*goka.Emitter, error) {
	p.emitOnce.Do(func() {
		opts := []goka.EmitterOption{goka.WithEmitterHasher(groupkit.KafkaHasher()), goka.WithEmitterClientID(string(Group) + "-ticks")}
		if tt := p.cfg.tester; tt != nil {
			opts = append(opts, goka.WithEmitterTester(tt))
		} else {
			k := p.kafka()
			// franz-go like every other client (sarama's with
			// SaramaProducer).
			opts = append(opts, goka.WithEmitterProducerBuilder(k.ProducerBuilder()))
		}
		p.emitter, p.emitErr = goka.NewEmitter(p.brokers, Loop, loopCodec{}, opts...)
		if p.emitErr != nil {
			p.emitErr = fmt.Errorf("alerts: tick emitter: %w", p.emitErr)
		}
	})
	return p.emitter, p.emitErr
}

func (p *Processor) finishEmitter() error {
	p.emitOnce.Do(func() { p.emitErr = errors.New("alerts: processor stopped") }) // no emitter after this
	if p.emitter == nil {
		return nil
	}
	return p.emitter.Finish()
}

// Sweep runs one offline check over the group table partitions this
// instance owns: for every device an offline rule is due for at the wall
// clock now, it sends a tick (key = device id) to the loop topic, where the
// device's partition processor checks the rule against the device's
// current state. Partitions still catching up a backlog are skipped (see
// WithCatchUpDelay). It returns the number of ticks sent. Run calls it
// every check interval; tests call it directly.
func (p *Processor) Sweep(ctx context.Context) (int, error) {
	if !p.cfg.rules.hasKind(KindOffline) {
		return 0, nil
	}
	start := time.Now()
	now := p.cfg.clock.Now()
	var sent, visited, skipped int
	var errs []error
	for _, ts := range p.stores.recovered() {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		if p.catchingUp(ts.partition) {
			skipped++
			continue
		}
		it, err := ts.Iterator()
		if err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", ts.partition, err))
			continue
		}
		for it.Next() {
			visited++
			val, err := it.Value()
			if err != nil || val == nil {
				continue
			}
			v, err := (tableCodec{}).Decode(val)
			if err != nil {
				continue
			}
			st := v.(*deviceState)
			if st.DeviceID == "" {
				st.DeviceID = identity.DeviceOf(string(it.Key()))
			}
			if !p.eval.overdue(st, now) {
				continue
			}
			em, err := p.loopEmitter()
			if err != nil {
				it.Release()
				return sent, err
			}
			prom, err := em.Emit(string(it.Key()), &tick{At: now.UTC()})
			if err != nil {
				p.metrics.tickErrors.Inc()
				errs = append(errs, err)
				continue
			}
			prom.Then(func(err error) {
				if err != nil {
					p.metrics.tickErrors.Inc()
					p.log.Warn("offline tick not produced", "err", err)
				}
			})
			sent++
		}
		if err := it.Err(); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", ts.partition, err))
		}
		it.Release()
	}
	p.metrics.ticks.Add(float64(sent))
	p.metrics.sweepDevices.Set(float64(visited))
	p.metrics.sweepSkipped.Set(float64(skipped))
	p.metrics.sweepSeconds.Observe(time.Since(start).Seconds())
	return sent, errors.Join(errs...)
}
