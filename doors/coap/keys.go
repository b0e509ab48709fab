package coap

import (
	"fmt"

	"github.com/drover-iot/drover/registry"
)

// Devices finds a registered device by its key "tenant/device"
// (registry.View does).
type Devices interface {
	DeviceByKey(key string) (*registry.Device, bool)
}

// RegistryKeys is the KeyStore of the registry: a device's DTLS pre-shared
// key is its secret's PBKDF2 hash as the registry stores it
// (registry.SecretHash.Hash: PBKDF2-HMAC-SHA-512 of the secret with the
// device's salt and iteration count, 64 bytes). A device derives the same
// key from its secret, or is provisioned with the derived key itself.
//
// The trade-off: PSK is symmetric, so the server must hold the key. The
// registry keeps no plain secret, and this derived key is worth nothing to
// MQTT or HTTP (they take the secret itself), but whoever reads the
// registry topic can speak DTLS as any device. The registry topic is
// readable only by the stages that need it (its ACLs).
type RegistryKeys struct {
	Devices Devices
}

// PSK returns the pre-shared key of the active device identity.
func (k RegistryKeys) PSK(identity string) ([]byte, error) {
	d, ok := k.Devices.DeviceByKey(identity)
	switch {
	case !ok:
		return nil, fmt.Errorf("coap: DTLS identity %q: %w", identity, registry.ErrUnknownDevice)
	case !d.Active():
		return nil, fmt.Errorf("coap: DTLS identity %q: %w", identity, &registry.InactiveError{Key: d.Key(), Status: d.Status})
	case d.Secret == nil:
		return nil, fmt.Errorf("coap: device %s has no secret (certificate only), so no pre-shared key", identity)
	}
	return d.Secret.Hash, nil
}
