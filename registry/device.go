package registry

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/drover-iot/drover/identity"
)

// Status is a device's standing in the registry.
type Status string

// The statuses. Only an active device may connect and publish. A suspended
// device can be activated again; revoked is final (delete it and add it
// anew to re-enrol).
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusRevoked   Status = "revoked"
)

// ParseStatus returns the status named s, or an error listing the valid ones.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusActive, StatusSuspended, StatusRevoked:
		return st, nil
	}
	return "", fmt.Errorf("unknown status %q (want active, suspended or revoked): %w", s, ErrInvalid)
}

// TypeWildFi is the device type of WildFi collars, which publish on
// wildfi/{device_id}/... (no tenant in the topic: the registry supplies it,
// so a WildFi device id is unique across tenants).
const TypeWildFi = "wildfi"

// AltDevEUI is the alternative-id kind of a LoRaWAN DevEUI (16 hex digits,
// stored lowercase), looked up by the network-server webhooks.
const AltDevEUI = "deveui"

// Device is one registered device. A *Device handed out by a [View] is an
// immutable snapshot: never modify it; a change to the registry replaces it.
type Device struct {
	Tenant string
	ID     string
	// Type is free ("collar", "camera-trap"); [TypeWildFi] widens the ACL.
	Type   string
	Status Status
	// Labels are free key/value pairs (herd, paddock, owner); nil when none.
	Labels map[string]string
	// AltIDs are other ids of the device by kind ([AltDevEUI]); unique
	// across the registry; nil when none.
	AltIDs map[string]string
	// OfflineTimeout is the device's own offline timeout; 0 = the offline
	// rule's default.
	OfflineTimeout time.Duration
	// Secret is the hash of the device's secret; nil = no secret
	// (certificate only).
	Secret *SecretHash
	// CertFingerprints are the SHA-256 fingerprints ([Fingerprint]) of the
	// client certificates the device may present; unique across the registry.
	CertFingerprints []string
	// Actor made the last change ("" = unknown).
	Actor     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Key returns the device's tenant-qualified key, "tenant/device".
func (d *Device) Key() string { return identity.Key(d.Tenant, d.ID) }

// Active reports whether the device may connect and publish.
func (d *Device) Active() bool { return d.Status == StatusActive }

// clone returns a deep copy (maps and slices too), for building the next
// version of a device.
func (d *Device) clone() *Device {
	c := *d
	c.Labels = maps.Clone(d.Labels)
	c.AltIDs = maps.Clone(d.AltIDs)
	c.CertFingerprints = slices.Clone(d.CertFingerprints)
	return &c
}

// Tenant is one registered tenant and the CA certificate that signs its
// devices' client certificates (never the CA's key).
type Tenant struct {
	ID string
	// CACertPEM is the tenant CA's certificate, PEM; "" when the tenant
	// issues no certificates.
	CACertPEM string
	Actor     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// CACert parses the tenant's CA certificate; nil, nil when there is none.
func (t *Tenant) CACert() (*x509.Certificate, error) {
	if t.CACertPEM == "" {
		return nil, nil
	}
	blk, _ := pem.Decode([]byte(t.CACertPEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("tenant %s: CA certificate is not a PEM CERTIFICATE", t.ID)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// Errors of registry operations. Each returned error wraps one of these (or
// identity.ErrInvalid for a malformed tenant or device id), so callers map
// them to exit codes and HTTP statuses with errors.Is.
var (
	// ErrInvalid: a field of a device or tenant is malformed (see
	// *FieldError for which one).
	ErrInvalid = errors.New("invalid registry entry")
	// ErrNotFound: no such device or tenant.
	ErrNotFound = errors.New("not found")
	// ErrExists: the device or tenant, or an id or certificate another
	// device already claims, exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: the change is not allowed in the entry's current state
	// (e.g. activating a revoked device).
	ErrConflict = errors.New("conflict")
	// ErrNotReady: the view has not caught up with the registry topic yet.
	ErrNotReady = errors.New("registry view not ready")
)

// Errorf returns an error with the formatted message that matches kind
// (ErrExists, ErrNotFound, ErrConflict, ...) with errors.Is, without
// repeating kind's text when the message already says it.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}

type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// FieldError says which field of an entry is wrong. Field uses the names of
// the CSV import columns (tenant, device_id, type, label.KEY, alt.KIND,
// offline_timeout, secret, cert_fingerprint).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %s: %v", e.Field, e.Err) }

// Unwrap makes errors.Is match ErrInvalid and whatever Err wraps.
func (e *FieldError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

func fieldErr(field string, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
