package registry

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

const nShards = 64 // power of two

// shard holds a part of the devices by key.
type shard struct {
	mu sync.RWMutex
	m  map[string]*Device
}

// index maps a secondary id (certificate fingerprint, alternative id) to a
// device key.
type index struct {
	mu sync.RWMutex
	m  map[string]string
}

func (x *index) get(k string) (string, bool) {
	x.mu.RLock()
	v, ok := x.m[k]
	x.mu.RUnlock()
	return v, ok
}

// Change is one update the view applied. For a device, Old is nil when it
// was added and New is nil when it was deleted; for a tenant, Tenant is set
// (nil New and Old) and TenantDeleted says whether it was deleted.
type Change struct {
	Key           string
	Old, New      *Device
	Tenant        *Tenant
	TenantDeleted bool
}

// Deactivated reports whether the change took an active device's access
// away: it was suspended, revoked or deleted. Broker adapters disconnect
// the device then.
func (c Change) Deactivated() bool {
	return c.Old != nil && c.Old.Active() && (c.New == nil || !c.New.Active())
}

// View is an in-memory copy of the registry, restored from the compacted
// topic and kept up to date while Run runs. Lookups are safe for concurrent
// use and allocate nothing; the devices they return are immutable snapshots.
type View struct {
	topic string
	kopts []kgo.Opt
	serde *schemas.Serde
	log   *slog.Logger
	reg   prometheus.Registerer
	m     *viewMetrics

	seed    maphash.Seed
	shards  [nShards]shard
	certs   index // fingerprint → key
	alts    index // altKey(kind, value) → key
	tenants struct {
		sync.RWMutex
		m map[string]*Tenant
	}
	labelSets map[string]map[string]string // interned label maps (view goroutine only)

	mu         sync.Mutex
	subs       map[int]func(Change)
	nextSub    int
	ready      chan struct{}
	isReady    bool
	progress   map[int32]int64 // next offset to apply, by partition
	progressCh chan struct{}   // closed and replaced when progress moves
}

// ViewOption configures NewView.
type ViewOption func(*View)

// WithTopic reads the registry from topic, overriding the default
// topics.DevicesRegistry.
func WithTopic(topic string) ViewOption { return func(v *View) { v.topic = topic } }

// WithLogger logs to log, overriding the default slog.Default().
func WithLogger(log *slog.Logger) ViewOption { return func(v *View) { v.log = log } }

// WithRegisterer registers the view's metrics (drover_registry_*) with reg,
// overriding the default of not registering them.
func WithRegisterer(reg prometheus.Registerer) ViewOption {
	return func(v *View) { v.reg = reg }
}

// NewView returns a view that reads the registry with the Kafka connection
// options kopts (seed brokers, TLS, SASL) and decodes it with serde. Call
// Run to fill it.
func NewView(kopts []kgo.Opt, serde *schemas.Serde, opts ...ViewOption) (*View, error) {
	v := &View{
		topic: topics.DevicesRegistry, kopts: kopts, serde: serde, log: slog.Default(),
		seed: maphash.MakeSeed(), subs: map[int]func(Change){}, ready: make(chan struct{}),
		progress: map[int32]int64{}, progressCh: make(chan struct{}),
	}
	v.certs.m = map[string]string{}
	v.alts.m = map[string]string{}
	v.tenants.m = map[string]*Tenant{}
	v.labelSets = map[string]map[string]string{}
	for i := range v.shards {
		v.shards[i].m = map[string]*Device{}
	}
	for _, o := range opts {
		o(v)
	}
	m, err := newViewMetrics(v.reg)
	if err != nil {
		return nil, err
	}
	v.m = m
	return v, nil
}

// Topic returns the registry topic the view reads.
func (v *View) Topic() string { return v.topic }

func (v *View) shardOf(key string) *shard {
	return &v.shards[maphash.String(v.seed, key)&(nShards-1)]
}

// Device returns the device tenant/id, if registered.
func (v *View) Device(tenant, id string) (*Device, bool) {
	if len(tenant) > identity.MaxLen || len(id) > identity.MaxLen {
		return nil, false
	}
	var buf [2*identity.MaxLen + 1]byte
	n := copy(buf[:], tenant)
	n += copy(buf[n:], identity.Separator)
	n += copy(buf[n:], id)
	return v.lookup(buf[:n])
}

// DeviceByKey returns the device with key "tenant/device", if registered.
func (v *View) DeviceByKey(key string) (*Device, bool) {
	if len(key) > 2*identity.MaxLen+1 {
		return nil, false
	}
	var buf [2*identity.MaxLen + 1]byte
	n := copy(buf[:], key)
	return v.lookup(buf[:n])
}

func (v *View) lookup(key []byte) (*Device, bool) {
	// maphash.Bytes(b) equals maphash.String(string(b)).
	s := &v.shards[maphash.Bytes(v.seed, key)&(nShards-1)]
	s.mu.RLock()
	d, ok := s.m[string(key)]
	s.mu.RUnlock()
	return d, ok
}

// DeviceByCert returns the device that enrolled the certificate with SHA-256
// fingerprint fp ([Fingerprint] form), if any.
func (v *View) DeviceByCert(fp string) (*Device, bool) {
	key, ok := v.certs.get(fp)
	if !ok {
		return nil, false
	}
	d, ok := v.DeviceByKey(key)
	if !ok || !slices.Contains(d.CertFingerprints, fp) {
		return nil, false
	}
	return d, true
}

// DeviceByAltID returns the device known by value under the alternative-id
// kind (e.g. [AltDevEUI] and a lowercase DevEUI), if any. Every WildFi
// device ([TypeWildFi]) is also found under kind "wildfi" by its device id.
func (v *View) DeviceByAltID(kind, value string) (*Device, bool) {
	key, ok := v.alts.get(altKey(kind, value))
	if !ok {
		return nil, false
	}
	d, ok := v.DeviceByKey(key)
	if !ok || !slices.Contains(altKeys(d), altKey(kind, value)) {
		return nil, false
	}
	return d, true
}

// Tenant returns the tenant id, if registered.
func (v *View) Tenant(id string) (*Tenant, bool) {
	v.tenants.RLock()
	t, ok := v.tenants.m[id]
	v.tenants.RUnlock()
	return t, ok
}

// Devices returns every device, sorted by tenant then id.
func (v *View) Devices() []*Device {
	var out []*Device
	for i := range v.shards {
		s := &v.shards[i]
		s.mu.RLock()
		for _, d := range s.m {
			out = append(out, d)
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b *Device) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Tenants returns every tenant, sorted by id.
func (v *View) Tenants() []*Tenant {
	v.tenants.RLock()
	out := make([]*Tenant, 0, len(v.tenants.m))
	for _, t := range v.tenants.m {
		out = append(out, t)
	}
	v.tenants.RUnlock()
	slices.SortFunc(out, func(a, b *Tenant) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Admit is the check a door makes for every message: nil when tenant/device
// is registered and active. Otherwise the error wraps ErrUnknownDevice (not
// registered, or the view is not ready: check Ready first) or
// ErrDeviceInactive (suspended or revoked; the dead-letter reason is
// device_revoked for both).
func (v *View) Admit(tenant, device string) (*Device, error) {
	d, ok := v.Device(tenant, device)
	switch {
	case !ok:
		return nil, ErrUnknownDevice
	case !d.Active():
		return d, &InactiveError{Key: d.Key(), Status: d.Status}
	}
	return d, nil
}

// ErrUnknownDevice: the device is not in the registry.
var ErrUnknownDevice = errors.New("unknown device")

// ErrDeviceInactive is wrapped by *InactiveError.
var ErrDeviceInactive = errors.New("device not active")

// InactiveError says that a registered device is suspended or revoked.
type InactiveError struct {
	Key    string
	Status Status
}

func (e *InactiveError) Error() string { return fmt.Sprintf("device %s is %s", e.Key, e.Status) }

// Unwrap makes errors.Is(err, ErrDeviceInactive) true.
func (e *InactiveError) Unwrap() error { return ErrDeviceInactive }

// Subscribe calls fn for every change the view applies after it became
// ready, in the order applied, from the view's own goroutine: fn must not
// block (queue the work). Before Ready, read the view instead. It returns a
// function that cancels the subscription.
func (v *View) Subscribe(fn func(Change)) (cancel func()) {
	v.mu.Lock()
	id := v.nextSub
	v.nextSub++
	v.subs[id] = fn
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		delete(v.subs, id)
		v.mu.Unlock()
	}
}

func (v *View) notify(c Change) {
	v.mu.Lock()
	if !v.isReady || len(v.subs) == 0 {
		v.mu.Unlock()
		return
	}
	fns := make([]func(Change), 0, len(v.subs))
	for _, fn := range v.subs {
		fns = append(fns, fn)
	}
	v.mu.Unlock()
	for _, fn := range fns {
		fn(c)
	}
}

// Ready is closed once the view has read the registry up to the end
// offsets it saw when Run started.
func (v *View) Ready() <-chan struct{} { return v.ready }

// WaitReady waits until the view is ready or ctx is done.
func (v *View) WaitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrNotReady, context.Cause(ctx))
	}
}

// IsReady reports whether the view is ready.
func (v *View) IsReady() bool {
	select {
	case <-v.ready:
		return true
	default:
		return false
	}
}

// Check is a readiness check (admin.Check): nil once the view is ready.
func (v *View) Check(context.Context) error {
	if !v.IsReady() {
		return ErrNotReady
	}
	return nil
}

// WaitFor waits until the view has applied the record at offset of
// partition (or a later one), so a writer reads its own write.
func (v *View) WaitFor(ctx context.Context, partition int32, offset int64) error {
	for {
		v.mu.Lock()
		done := v.progress[partition] > offset
		ch := v.progressCh
		v.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the registry view to apply %s/%d@%d: %w", v.topic, partition, offset, context.Cause(ctx))
		}
	}
}

func (v *View) advance(partition int32, next int64) {
	v.mu.Lock()
	if next > v.progress[partition] {
		v.progress[partition] = next
		close(v.progressCh)
		v.progressCh = make(chan struct{})
	}
	v.mu.Unlock()
}
