package registry

import (
	"encoding/json"
	"time"
)

// deviceJSON is the one JSON form of a device (CLI output, provisioning
// API). The secret appears only as its algorithm and id: neither its hash
// nor its salt leave the registry.
type deviceJSON struct {
	Tenant           string            `json:"tenant"`
	DeviceID         string            `json:"device_id"`
	Type             string            `json:"type,omitempty"`
	Status           Status            `json:"status"`
	Labels           map[string]string `json:"labels,omitempty"`
	AltIDs           map[string]string `json:"alt_ids,omitempty"`
	OfflineTimeout   string            `json:"offline_timeout,omitempty"`
	Secret           *secretJSON       `json:"secret"`
	CertFingerprints []string          `json:"cert_fingerprints,omitempty"`
	Actor            string            `json:"actor,omitempty"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
}

type secretJSON struct {
	Algorithm string `json:"algorithm"`
	ID        string `json:"id"`
}

// MarshalJSON writes the device's public form: everything but the secret's
// hash and salt.
func (d *Device) MarshalJSON() ([]byte, error) {
	j := deviceJSON{
		Tenant: d.Tenant, DeviceID: d.ID, Type: d.Type, Status: d.Status, Labels: d.Labels, AltIDs: d.AltIDs,
		CertFingerprints: d.CertFingerprints, Actor: d.Actor, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}
	if d.OfflineTimeout > 0 {
		j.OfflineTimeout = d.OfflineTimeout.String()
	}
	if d.Secret != nil {
		j.Secret = &secretJSON{Algorithm: d.Secret.Algorithm, ID: d.Secret.ID()}
	}
	return json.Marshal(j)
}

type tenantJSON struct {
	Tenant    string    `json:"tenant"`
	CACertPEM string    `json:"ca_cert_pem,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MarshalJSON writes the tenant with its CA certificate (never a key: the
// registry has none).
func (t *Tenant) MarshalJSON() ([]byte, error) {
	return json.Marshal(tenantJSON{Tenant: t.ID, CACertPEM: t.CACertPEM, Actor: t.Actor, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt})
}
