// Package dynsec keeps Mosquitto's dynamic security plugin in step with the
// device registry, through its $CONTROL/dynamic-security/v1 API ([Client],
// [Sync]), and renders a complete dynamic-security.json from the registry
// for a broker's first start or a recovery ([RenderConfig]).
//
// Each device gets a client named "tenant/device" (bound to the same client
// id) with one role, "drover-device:tenant/device", holding exactly its
// topics ([registry.DeviceACL]); the client is enabled while the device is
// active and deleted when it is revoked, and both disabling and deleting
// disconnect a connected device at once. See [Sync] for how passwords reach
// the broker although the registry stores only their hashes.
package dynsec
