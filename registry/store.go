package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Store writes the registry: it checks each change against its View,
// produces the new record (idempotent producer, acks=all: the client's
// defaults) and waits until the view has applied it, so the caller reads its
// own write. A Store serialises its own writes; two writers in different
// processes are not coordinated beyond Kafka's per-key order (the last write
// of a key wins), so run one provisioning service per registry. Safe for
// concurrent use.
type Store struct {
	view  *View
	cl    *kgo.Client
	serde *schemas.Serde
	now   func() time.Time
	actor string
	mu    sync.Mutex
}

// StoreOption configures NewStore.
type StoreOption func(*Store)

// WithActor records actor as the author of every change, overriding the
// default "" (unknown).
func WithActor(actor string) StoreOption { return func(s *Store) { s.actor = actor } }

// WithClock takes the time of changes from now, overriding time.Now.
func WithClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// NewStore returns a Store that checks against view (which must be running)
// and produces with producer, encoding with serde (the registry topic's
// schema must be registered).
func NewStore(view *View, producer *kgo.Client, serde *schemas.Serde, opts ...StoreOption) *Store {
	s := &Store{view: view, cl: producer, serde: serde, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// View returns the view the store checks against.
func (s *Store) View() *View { return s.view }

func (s *Store) clock() time.Time { return time.UnixMilli(s.now().UnixMilli()).UTC() }

// NewDevice describes a device to add.
type NewDevice struct {
	Tenant, ID, Type string
	Labels           map[string]string
	// AltIDs by kind; a DevEUI (kind "deveui") may be written with '-' or
	// ':' separators and in upper case.
	AltIDs         map[string]string
	OfflineTimeout time.Duration
	// Secret is the device's secret when the operator supplies one (see
	// CheckSecret); empty = generate one, unless NoSecret.
	Secret string
	// NoSecret adds a certificate-only device.
	NoSecret bool
	// CertFingerprints of client certificates the device may present, in
	// any form ParseFingerprint accepts.
	CertFingerprints []string
}

// Added is one added device and its secret when the registry generated it
// (shown once: only its hash is stored).
type Added struct {
	Device *Device
	Secret string
}

// Add adds one device; see AddDevices.
func (s *Store) Add(ctx context.Context, nd NewDevice) (Added, error) {
	added, err := s.AddDevices(ctx, []NewDevice{nd}, false)
	if err != nil {
		var be *BatchError
		if errors.As(err, &be) && len(be.Problems) == 1 {
			return Added{}, be.Problems[0].Err
		}
		return Added{}, err
	}
	return added[0], nil
}

// AddDevices adds devices, all or none: every entry is checked first (its
// fields, that its tenant is registered, that neither it nor an
// alternative id or certificate it claims exists in the registry or earlier
// in the batch), and any problem returns a *BatchError naming every
// refused entry, with nothing written. With dryRun nothing is written and
// no secrets are generated either. Otherwise the secrets are generated and
// hashed, the records produced, and the added devices returned in order.
func (s *Store) AddDevices(ctx context.Context, nds []NewDevice, dryRun bool) ([]Added, error) {
	if err := s.view.WaitReady(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	devs, err := s.checkNew(nds, now)
	if err != nil {
		return nil, err
	}
	out := make([]Added, len(devs))
	for i, d := range devs {
		out[i].Device = d
	}
	if dryRun {
		return out, nil
	}
	for i, nd := range nds {
		if err := s.setSecret(out[i].Device, nd, &out[i].Secret); err != nil {
			return nil, err
		}
	}
	recs := make([]*kgo.Record, len(devs))
	for i, d := range devs {
		if recs[i], err = s.record(ctx, d.Key(), deviceRecord(d, now)); err != nil {
			return nil, err
		}
	}
	if err := s.write(ctx, recs); err != nil {
		return nil, err
	}
	return out, nil
}

// checkNew builds and checks the devices of a batch.
func (s *Store) checkNew(nds []NewDevice, now time.Time) ([]*Device, error) {
	var be BatchError
	devs := make([]*Device, len(nds))
	claims := map[string]int{} // key, cert and alt claims of this batch → entry
	for i, nd := range nds {
		d, err := nd.device(now, s.actor)
		if err == nil {
			err = s.checkClaims(d, i, claims)
		}
		if err != nil {
			be.Problems = append(be.Problems, Problem{Index: i, Err: err})
			continue
		}
		devs[i] = d
	}
	if len(be.Problems) > 0 {
		return nil, &be
	}
	return devs, nil
}

// checkClaims refuses a device whose key, certificates or alternative ids
// exist in the view or in an earlier entry of the batch (recorded in
// claims), and a device of an unregistered tenant.
func (s *Store) checkClaims(d *Device, i int, claims map[string]int) error {
	if _, ok := s.view.Tenant(d.Tenant); !ok {
		return Errorf(ErrNotFound, "tenant %s is not registered (add it with: drover tenants add %s)", d.Tenant, d.Tenant)
	}
	if old, ok := s.view.DeviceByKey(d.Key()); ok {
		return Errorf(ErrExists, "device %s already exists (%s, created %s)", d.Key(), old.Status, old.CreatedAt.Format(time.RFC3339))
	}
	check := func(claim, what string, holder *Device, held bool) error {
		if held {
			return Errorf(ErrExists, "%s is already claimed by device %s", what, holder.Key())
		}
		if j, dup := claims[claim]; dup {
			return &DuplicateError{What: what, Entry: j}
		}
		claims[claim] = i
		return nil
	}
	if err := check("key\x00"+d.Key(), "device "+d.Key(), nil, false); err != nil {
		return err
	}
	for _, fp := range d.CertFingerprints {
		holder, held := s.view.DeviceByCert(fp)
		if err := check("cert\x00"+fp, "certificate "+fp, holder, held); err != nil {
			return &FieldError{Field: "cert_fingerprint", Err: err}
		}
	}
	for _, ak := range altKeys(d) {
		kind, value, _ := strings.Cut(ak, "\x00")
		holder, held := s.view.DeviceByAltID(kind, value)
		what := kind + " id " + value
		if kind == altWildFi {
			what = "WildFi device id " + value + " (unique across tenants: its topics carry no tenant)"
		}
		if err := check("alt\x00"+ak, what, holder, held); err != nil {
			return &FieldError{Field: "alt." + kind, Err: err}
		}
	}
	return nil
}

// device builds the validated device nd describes (without its secret).
func (nd NewDevice) device(now time.Time, actor string) (*Device, error) {
	d := &Device{
		Tenant: nd.Tenant, ID: nd.ID, Type: nd.Type, Status: StatusActive, OfflineTimeout: nd.OfflineTimeout,
		Labels: emptyToNil(nd.Labels), Actor: actor, CreatedAt: now, UpdatedAt: now,
	}
	if len(nd.AltIDs) > 0 {
		d.AltIDs = make(map[string]string, len(nd.AltIDs))
		for k, v := range nd.AltIDs {
			if k == AltDevEUI {
				n, err := NormaliseDevEUI(v)
				if err != nil {
					return nil, fieldErr("alt."+k, "%v", err)
				}
				v = n
			}
			d.AltIDs[k] = v
		}
	}
	for _, fp := range nd.CertFingerprints {
		n, err := ParseFingerprint(fp)
		if err != nil {
			return nil, fieldErr("cert_fingerprint", "%q %v", fp, err)
		}
		d.CertFingerprints = append(d.CertFingerprints, n)
	}
	switch {
	case nd.NoSecret && nd.Secret != "":
		return nil, fieldErr("secret", "given for a device without a secret")
	case nd.NoSecret && len(d.CertFingerprints) == 0:
		return nil, fieldErr("secret", "a device without a secret needs a certificate (cert_fingerprint)")
	case nd.Secret != "":
		if err := CheckSecret(nd.Secret); err != nil {
			return nil, fieldErr("secret", "%v", err)
		}
	}
	if err := validateDevice(d); err != nil {
		return nil, err
	}
	return d, nil
}

// setSecret hashes the supplied secret of nd, or generates one into *shown.
func (s *Store) setSecret(d *Device, nd NewDevice, shown *string) error {
	if nd.NoSecret {
		return nil
	}
	secret := nd.Secret
	if secret == "" {
		var err error
		if secret, err = NewSecret(); err != nil {
			return err
		}
		*shown = secret
	}
	h, err := HashSecret(secret)
	if err != nil {
		return err
	}
	d.Secret = h
	return nil
}

// SetStatus moves tenant/id to status to: active ↔ suspended, either →
// revoked. Setting the status a device has is a no-op; leaving revoked is
// ErrConflict.
func (s *Store) SetStatus(ctx context.Context, tenant, id string, to Status) (*Device, error) {
	if _, err := ParseStatus(string(to)); err != nil {
		return nil, err
	}
	return s.update(ctx, tenant, id, func(d *Device) (bool, error) {
		switch {
		case d.Status == to:
			return false, nil
		case d.Status == StatusRevoked:
			return false, Errorf(ErrConflict, "device %s is revoked, which is final (delete it and add it again to re-enrol)", d.Key())
		}
		d.Status = to
		return true, nil
	})
}

// Rotate gives tenant/id a fresh secret and returns it (shown once); the
// old secret stops working wherever the registry is enforced. A revoked
// device cannot be rotated.
func (s *Store) Rotate(ctx context.Context, tenant, id string) (Added, error) {
	secret, err := NewSecret()
	if err != nil {
		return Added{}, err
	}
	h, err := HashSecret(secret)
	if err != nil {
		return Added{}, err
	}
	d, err := s.update(ctx, tenant, id, func(d *Device) (bool, error) {
		if d.Status == StatusRevoked {
			return false, Errorf(ErrConflict, "device %s is revoked", d.Key())
		}
		d.Secret = h
		return true, nil
	})
	if err != nil {
		return Added{}, err
	}
	return Added{Device: d, Secret: secret}, nil
}

// update applies change to a copy of tenant/id and writes it when change
// reports a change.
func (s *Store) update(ctx context.Context, tenant, id string, change func(*Device) (bool, error)) (*Device, error) {
	if err := identity.Validate(tenant, id); err != nil {
		return nil, err
	}
	if err := s.view.WaitReady(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.view.Device(tenant, id)
	if !ok {
		return nil, Errorf(ErrNotFound, "device %s is not registered", identity.Key(tenant, id))
	}
	d := cur.clone()
	changed, err := change(d)
	if err != nil || !changed {
		return cur, err
	}
	now := s.clock()
	d.UpdatedAt, d.Actor = now, s.actor
	if err := validateDevice(d); err != nil {
		return nil, err
	}
	rec, err := s.record(ctx, d.Key(), deviceRecord(d, now))
	if err != nil {
		return nil, err
	}
	if err := s.write(ctx, []*kgo.Record{rec}); err != nil {
		return nil, err
	}
	return d, nil
}

// Delete forgets a revoked device (a tombstone: compaction removes it from
// the topic). Revoke it first: ErrConflict otherwise.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	if err := identity.Validate(tenant, id); err != nil {
		return err
	}
	if err := s.view.WaitReady(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.view.Device(tenant, id)
	switch {
	case !ok:
		return Errorf(ErrNotFound, "device %s is not registered", identity.Key(tenant, id))
	case d.Status != StatusRevoked:
		return Errorf(ErrConflict, "device %s is %s: revoke it before deleting it", d.Key(), d.Status)
	}
	return s.write(ctx, []*kgo.Record{{Topic: s.view.Topic(), Key: []byte(d.Key())}})
}

// AddTenant registers a tenant with its CA certificate (PEM; "" = none).
func (s *Store) AddTenant(ctx context.Context, id, caCertPEM string) (*Tenant, error) {
	if err := s.view.WaitReady(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	t := &Tenant{ID: id, CACertPEM: caCertPEM, Actor: s.actor, CreatedAt: now, UpdatedAt: now}
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	if _, ok := s.view.Tenant(id); ok {
		return nil, Errorf(ErrExists, "tenant %s already exists", id)
	}
	rec, err := s.record(ctx, TenantKey(id), tenantRecord(t, now))
	if err != nil {
		return nil, err
	}
	if err := s.write(ctx, []*kgo.Record{rec}); err != nil {
		return nil, err
	}
	return t, nil
}

func (s *Store) record(ctx context.Context, key string, rec *schemas.RegistryRecord) (*kgo.Record, error) {
	v, err := s.serde.Encode(ctx, s.view.Topic(), rec)
	if err != nil {
		return nil, fmt.Errorf("encoding registry record %s: %w", key, err)
	}
	return &kgo.Record{Topic: s.view.Topic(), Key: []byte(key), Value: v}, nil
}

// write produces recs and waits until the view has applied every one.
func (s *Store) write(ctx context.Context, recs []*kgo.Record) error {
	res := s.cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return fmt.Errorf("writing to %s: %w", s.view.Topic(), err)
	}
	for _, r := range res {
		if err := s.view.WaitFor(ctx, r.Record.Partition, r.Record.Offset); err != nil {
			return err
		}
	}
	return nil
}

// DuplicateError says that an entry of a batch claims what an earlier
// entry (index Entry) claims: its key, a certificate or an alternative id.
type DuplicateError struct {
	What  string
	Entry int
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%s duplicates entry %d of this batch", e.What, e.Entry+1)
}

// Unwrap makes errors.Is(err, ErrExists) true.
func (e *DuplicateError) Unwrap() error { return ErrExists }

// BatchError lists the refused entries of a batch (AddDevices). It unwraps
// to every entry's error, so errors.Is(err, ErrExists) finds a duplicate.
type BatchError struct {
	Problems []Problem
}

// Problem is one refused entry: its index in the batch and why.
type Problem struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of the entries refused, nothing written", len(e.Problems))
	for i, p := range e.Problems {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-i)
			break
		}
		fmt.Fprintf(&b, "; entry %d: %v", p.Index+1, p.Err)
	}
	return b.String()
}

// Unwrap returns every entry's error.
func (e *BatchError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p.Err
	}
	return out
}
