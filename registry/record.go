package registry

import (
	"fmt"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Entry kinds of a registry record.
const (
	KindDevice = "device"
	KindTenant = "tenant"
)

// TenantKey returns the record key of a tenant entry: the tenant id alone
// (a device key always has a "/", so the two never collide).
func TenantKey(tenant string) string { return tenant }

// deviceRecord is the wire form of d, written at now.
func deviceRecord(d *Device, now time.Time) *schemas.RegistryRecord {
	r := &schemas.RegistryRecord{
		Kind: KindDevice, Tenant: d.Tenant, DeviceID: d.ID, Status: string(d.Status), DeviceType: d.Type,
		Labels: nonNil(d.Labels), AltIDs: nonNil(d.AltIDs), CertFingerprints: d.CertFingerprints,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, TS: d.UpdatedAt, IngestedAt: now,
	}
	if r.CertFingerprints == nil {
		r.CertFingerprints = []string{}
	}
	if d.OfflineTimeout > 0 {
		ms := d.OfflineTimeout.Milliseconds()
		r.OfflineTimeoutMS = &ms
	}
	if d.Secret != nil {
		r.Secret = &schemas.SecretHash{Algorithm: d.Secret.Algorithm, Iterations: int32(d.Secret.Iterations), Salt: d.Secret.Salt, Hash: d.Secret.Hash}
	}
	if d.Actor != "" {
		r.Actor = &d.Actor
	}
	return r
}

// tenantRecord is the wire form of t, written at now.
func tenantRecord(t *Tenant, now time.Time) *schemas.RegistryRecord {
	r := &schemas.RegistryRecord{
		Kind: KindTenant, Tenant: t.ID, Status: string(StatusActive), Labels: map[string]string{}, AltIDs: map[string]string{},
		CertFingerprints: []string{}, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, TS: t.UpdatedAt, IngestedAt: now,
	}
	if t.CACertPEM != "" {
		r.CACertPEM = &t.CACertPEM
	}
	if t.Actor != "" {
		r.Actor = &t.Actor
	}
	return r
}

// deviceFromRecord turns a decoded record of key into a validated device.
// A record whose tenant or id disagrees with its key is refused: the key is
// what compaction keeps, so a mismatch would leave two truths.
func deviceFromRecord(key string, r *schemas.RegistryRecord) (*Device, error) {
	if want := identity.Key(r.Tenant, r.DeviceID); key != want {
		return nil, fmt.Errorf("key %q does not match the record's tenant/device_id %q", key, want)
	}
	d := &Device{
		Tenant: r.Tenant, ID: r.DeviceID, Type: r.DeviceType, Status: Status(r.Status),
		Labels: emptyToNil(r.Labels), AltIDs: emptyToNil(r.AltIDs),
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if len(r.CertFingerprints) > 0 {
		d.CertFingerprints = r.CertFingerprints
	}
	if r.OfflineTimeoutMS != nil {
		d.OfflineTimeout = time.Duration(*r.OfflineTimeoutMS) * time.Millisecond
	}
	if s := r.Secret; s != nil {
		d.Secret = &SecretHash{Algorithm: s.Algorithm, Iterations: int(s.Iterations), Salt: s.Salt, Hash: s.Hash}
		if d.Secret.Algorithm == SecretAlgorithm {
			d.Secret.Algorithm = SecretAlgorithm // share one string across a million devices
		}
	}
	if r.Actor != nil {
		d.Actor = *r.Actor
	}
	if err := validateDevice(d); err != nil {
		return nil, err
	}
	return d, nil
}

// tenantFromRecord turns a decoded tenant record of key into a tenant.
func tenantFromRecord(key string, r *schemas.RegistryRecord) (*Tenant, error) {
	if key != TenantKey(r.Tenant) {
		return nil, fmt.Errorf("key %q does not match the tenant record's tenant %q", key, r.Tenant)
	}
	t := &Tenant{ID: r.Tenant, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if r.CACertPEM != nil {
		t.CACertPEM = *r.CACertPEM
	}
	if r.Actor != nil {
		t.Actor = *r.Actor
	}
	if err := validateTenant(t); err != nil {
		return nil, err
	}
	return t, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func emptyToNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}
