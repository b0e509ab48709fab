package bridge

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// ShadowDelta is the JSON document the downlink publishes on
// devices/{tenant}/{device}/shadow/delta: the desired keys whose reported
// value differs (State), and the desired state's version.
type ShadowDelta struct {
	Version   int64             `json:"version"`
	State     map[string]string `json:"state"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// shadows holds the pending delta of every device that has one, from
// state.latest. Safe for concurrent use.
type shadows struct {
	mu     sync.Mutex
	m      map[string]ShadowDelta // device key → pending delta (non-empty)
	caught atomic.Bool            // state.latest was read to its end
}

func newShadows() *shadows { return &shadows{m: map[string]ShadowDelta{}} }

// apply folds one state record and reports whether the device's desired
// state changed (a newer version) and leaves a delta to send.
func (s *shadows) apply(key string, ds *schemas.DeviceState) (ShadowDelta, bool) {
	d := control.Delta(ds)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[key]
	if len(d) == 0 {
		delete(s.m, key) // cleared: the device reports what is desired
		return ShadowDelta{}, false
	}
	nd := ShadowDelta{Version: ds.Version, State: d, UpdatedAt: ds.UpdatedAt.UTC()}
	s.m[key] = nd
	return nd, !had || ds.Version > old.Version
}

// get returns the device's pending delta, if it has one.
func (s *shadows) get(key string) (ShadowDelta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.m[key]
	return d, ok
}

// followShadows keeps b.shadows up to date from state.latest until ctx
// ends, and sends a device's delta when its desired state changes (once
// the topic was read to its end: the restore sends nothing; a device gets
// its pending delta when it connects).
func (b *Bridge) followShadows(ctx context.Context, cm *autopaho.ConnectionManager) {
	for ctx.Err() == nil {
		err := control.FollowTopic(ctx, b.cfg.KafkaOpts, topics.StateLatest, func(r *kgo.Record) {
			var ds schemas.DeviceState
			if r.Value == nil {
				return
			}
			if _, err := b.cfg.Serde.Decode(ctx, r.Value, &ds); err != nil {
				b.log.Debug("state.latest: record skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			key := identity.Key(ds.Tenant, ds.DeviceID)
			if string(r.Key) != "" {
				key = string(r.Key)
			}
			d, changed := b.shadows.apply(key, &ds)
			if !changed || !b.shadows.caught.Load() {
				return
			}
			if b.presence != nil && !b.presence.online(key) {
				return // sent when the device connects
			}
			if !b.owns(key) {
				return // another replica's device
			}
			_ = b.sendDelta(ctx, cm, key, d)
		}, func() {
			b.shadows.caught.Store(true)
			b.log.Info("shadow deltas restored from state.latest")
		}, func(err error) { b.log.Warn("state.latest: fetch error", "err", err) })
		if err != nil {
			b.log.Warn("following state.latest; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// sendDelta publishes a device's pending delta with QoS 1 (retrying while
// the broker refuses, up to 5 attempts; a device that misses it gets it on
// its next connect). It fails only when ctx ends.
func (b *Bridge) sendDelta(ctx context.Context, cm *autopaho.ConnectionManager, key string, d ShadowDelta) error {
	tenant, device, err := identity.ParseKey(key)
	if err != nil {
		return nil
	}
	body, _ := json.Marshal(d)
	pub := &paho.Publish{Topic: control.ShadowDeltaTopic(tenant, device), QoS: 1, Payload: body,
		Properties: &paho.PublishProperties{ContentType: "application/json",
			User: paho.UserProperties{{Key: "version", Value: strconv.FormatInt(d.Version, 10)}}}}
	for attempt := 0; attempt < 5; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cm.Publish(pctx, pub)
		cancel()
		if err == nil && (resp == nil || resp.ReasonCode < 0x80) {
			b.m.deltas.WithLabelValues("published").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Warn("shadow delta not published; retrying", "topic", pub.Topic, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	b.m.deltas.WithLabelValues("failed").Inc()
	return nil
}
