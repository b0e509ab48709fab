package lorawan

import (
	"github.com/drover-iot/drover/registry"
)

// Devices finds a device by an alternative id (registry.View does).
type Devices interface {
	DeviceByAltID(kind, value string) (*registry.Device, bool)
}

// Resolve returns the registered device whose DevEUI (alternative id of
// kind registry.AltDevEUI) is devEUI. Like registry.View.Admit, the error
// wraps registry.ErrUnknownDevice when no device claims the DevEUI and
// registry.ErrDeviceInactive when it is suspended or revoked.
func Resolve(devs Devices, devEUI string) (*registry.Device, error) {
	d, ok := devs.DeviceByAltID(registry.AltDevEUI, devEUI)
	switch {
	case !ok:
		return nil, registry.ErrUnknownDevice
	case !d.Active():
		return d, &registry.InactiveError{Key: d.Key(), Status: d.Status}
	}
	return d, nil
}
