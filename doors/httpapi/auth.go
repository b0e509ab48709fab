package httpapi

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/registry"
)

// Devices is the part of the registry view the door reads.
type Devices interface {
	DeviceByKey(key string) (*registry.Device, bool)
	DeviceByCert(fingerprint string) (*registry.Device, bool)
	DeviceByAltID(kind, value string) (*registry.Device, bool)
}

// authError is an identity refusal: 401 (Unauthenticated) or 403.
type authError struct {
	kind    ingest.Kind
	reason  string
	message string
}

// authenticator checks a request's credentials for tenant/device.
// Verifying a secret costs a PBKDF2 derivation (by design slow), so a
// verified (device, secret) pair is remembered while the device's
// credential stays the same.
type authenticator struct {
	devs Devices
	mu   sync.Mutex
	ok   map[string]verified // device key → last verified secret
	max  int
}

type verified struct {
	credID string   // SecretHash.ID() when verified: a rotation changes it
	sum    [32]byte // SHA-256 of the secret presented
}

func newAuthenticator(devs Devices, max int) *authenticator {
	return &authenticator{devs: devs, ok: map[string]verified{}, max: max}
}

// check returns nil when r carries credentials of tenant/device, an active
// registered device.
func (a *authenticator) check(r *http.Request, tenant, device string) *authError {
	key := identity.Key(tenant, device)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		fp := registry.Fingerprint(r.TLS.PeerCertificates[0].Raw)
		d, ok := a.devs.DeviceByCert(fp)
		switch {
		case !ok:
			return &authError{ingest.Unauthenticated, string(ingest.ReasonUnknownDevice), "the client certificate is not enrolled for any device"}
		case d.Key() != key:
			return &authError{ingest.Forbidden, string(ingest.ReasonIdentityMismatch), "the client certificate is " + d.Key() + "'s, not " + key + "'s"}
		case !d.Active():
			return &authError{ingest.Forbidden, string(ingest.ReasonDeviceRevoked), "device " + key + " is " + string(d.Status)}
		}
		return nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return &authError{ingest.Unauthenticated, "unauthenticated", "send Authorization: Bearer <device secret> or a client certificate"}
	}
	d, found := a.devs.DeviceByKey(key)
	if !found {
		return &authError{ingest.Unauthenticated, string(ingest.ReasonUnknownDevice), "device " + key + " is not registered"}
	}
	if d.Secret == nil {
		return &authError{ingest.Unauthenticated, "unauthenticated", "device " + key + " has no secret; present its client certificate"}
	}
	sum := sha256.Sum256([]byte(tok))
	id := d.Secret.ID()
	a.mu.Lock()
	v, cached := a.ok[key]
	a.mu.Unlock()
	if !cached || v.credID != id || v.sum != sum {
		if !d.Secret.Verify([]byte(tok)) {
			return &authError{ingest.Unauthenticated, "unauthenticated", "the secret is not device " + key + "'s"}
		}
		a.mu.Lock()
		if len(a.ok) >= a.max {
			clear(a.ok) // bounded: start over rather than grow
		}
		a.ok[key] = verified{credID: id, sum: sum}
		a.mu.Unlock()
	}
	if !d.Active() {
		return &authError{ingest.Forbidden, string(ingest.ReasonDeviceRevoked), "device " + key + " is " + string(d.Status)}
	}
	return nil
}
