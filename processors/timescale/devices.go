package timescale

import (
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// TableDevices is the registry's devices (migration 0009).
const TableDevices = "devices"

// Registry record kinds and statuses (registry/README.md, "The topic and
// its records"); package registry owns them, the sink only reads them.
const (
	registryKindDevice = "device"
	registryKindTenant = "tenant"
)

var registryStatuses = []string{"active", "suspended", "revoked"}

// Device is one row of devices: a device of the registry as an analyst may
// see it. Of its credential only whether it has a secret and how many
// certificates it has enrolled are kept — never the secret's hash or
// salt, nor the fingerprints.
type Device struct {
	Tenant, DeviceID string
	Status           string // active, suspended or revoked
	Type             string
	Labels           map[string]string
	AltIDs           map[string]string
	OfflineTimeout   time.Duration // 0: the offline rule's default
	HasSecret        bool
	Certificates     int32
	CreatedAt        time.Time
	UpdatedAt        time.Time
	IngestedAt       time.Time
}

// errTenantEntry is a devices.registry record of a tenant: nothing for the
// devices table (counted as skipped).
var errTenantEntry = errors.New("registry tenant entry")

// deviceFromRecord checks a devices.registry record with key key and
// returns its row; errTenantEntry for a tenant's entry.
func (d *decoder) deviceFromRecord(key string, v *schemas.RegistryRecord) (Device, error) {
	switch v.Kind {
	case registryKindTenant:
		return Device{}, errTenantEntry
	case registryKindDevice:
	default:
		return Device{}, invalidf("registry record kind %q is neither device nor tenant", cleanText(v.Kind))
	}
	if err := identity.Validate(v.Tenant, v.DeviceID); err != nil {
		return Device{}, invalidf("registry device: %v", err)
	}
	if want := identity.Key(v.Tenant, v.DeviceID); key != want {
		return Device{}, invalidf("registry record key %q is not %s", cleanText(key), want)
	}
	if !slices.Contains(registryStatuses, v.Status) {
		return Device{}, invalidf("registry device status %q is not active, suspended or revoked", cleanText(v.Status))
	}
	if err := errors.Join(d.eventTime(v.UpdatedAt), text("device_type", v.DeviceType, false), attrs(v.Labels), attrs(v.AltIDs)); err != nil {
		return Device{}, err
	}
	row := Device{
		Tenant: v.Tenant, DeviceID: v.DeviceID, Status: v.Status, Type: v.DeviceType,
		Labels: v.Labels, AltIDs: v.AltIDs,
		HasSecret: v.Secret != nil, Certificates: int32(len(v.CertFingerprints)),
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, IngestedAt: v.IngestedAt,
	}
	if v.OfflineTimeoutMS != nil {
		if *v.OfflineTimeoutMS < 0 {
			return Device{}, invalidf("registry device offline_timeout_ms %d is negative", *v.OfflineTimeoutMS)
		}
		row.OfflineTimeout = time.Duration(*v.OfflineTimeoutMS) * time.Millisecond
	}
	return row, nil
}

// deleteDevice records a devices.registry tombstone for key
// (TENANT/DEVICE): the device's rows met earlier in the batch are dropped
// and its devices row is deleted before the batch's devices are written.
// A tenant's tombstone (a key without '/') deletes nothing.
func (b *Batch) deleteDevice(key string) {
	if _, _, err := identity.ParseKey(key); err != nil {
		return
	}
	b.Devices = slices.DeleteFunc(b.Devices, func(d Device) bool { return identity.Key(d.Tenant, d.DeviceID) == key })
	b.DeviceDeletes = append(b.DeviceDeletes, key)
}

var deviceCols = []string{"tenant", "device_id", "status", "device_type", "labels", "alt_ids", "offline_timeout",
	"has_secret", "certificates", "created_at", "updated_at", "ingested_at"}

// deviceMerge: the newest entry by updated_at wins, and at a tie the later
// record (as for device_state); an entry equal to the stored one writes
// nothing.
const deviceMerge = ` ON CONFLICT (tenant, device_id) DO UPDATE SET
	status = excluded.status, device_type = excluded.device_type, labels = excluded.labels, alt_ids = excluded.alt_ids,
	offline_timeout = excluded.offline_timeout, has_secret = excluded.has_secret, certificates = excluded.certificates,
	created_at = excluded.created_at, updated_at = excluded.updated_at, ingested_at = excluded.ingested_at, written_at = now()
WHERE excluded.updated_at > t.updated_at
   OR excluded.updated_at = t.updated_at
  AND (excluded.status, excluded.device_type, excluded.labels, excluded.alt_ids, excluded.offline_timeout,
       excluded.has_secret, excluded.certificates, excluded.created_at)
      IS DISTINCT FROM (t.status, t.device_type, t.labels, t.alt_ids, t.offline_timeout, t.has_secret, t.certificates, t.created_at)`

func deviceRow(r *Device) []any {
	timeout := pgtype.Interval{}
	if r.OfflineTimeout > 0 {
		timeout = pgtype.Interval{Microseconds: r.OfflineTimeout.Microseconds(), Valid: true}
	}
	labels, alt := r.Labels, r.AltIDs
	if labels == nil {
		labels = map[string]string{}
	}
	if alt == nil {
		alt = map[string]string{}
	}
	return []any{r.Tenant, r.DeviceID, r.Status, r.Type, labels, alt, timeout, r.HasSecret, r.Certificates, r.CreatedAt, r.UpdatedAt, r.IngestedAt}
}

type deviceKey struct{ tenant, device string }

var deviceTable = keyed[Device, deviceKey]{
	tableSpec: tableSpec{name: TableDevices, cols: deviceCols, tail: deviceMerge},
	row:       deviceRow,
	key:       func(r *Device) deviceKey { return deviceKey{r.Tenant, r.DeviceID} },
	judge: func(a, b *Device) verdict {
		if !b.UpdatedAt.Before(a.UpdatedAt) {
			return vReplace
		}
		return vSkip
	},
}

// deleteDevicesSQL deletes the devices of the batch's registry tombstones.
const deleteDevicesSQL = "DELETE FROM devices WHERE tenant || '/' || device_id = ANY($1)"
