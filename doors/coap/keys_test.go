package coap

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha512"
	"errors"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/registry"
)

type devMap map[string]*registry.Device

func (m devMap) DeviceByKey(k string) (*registry.Device, bool) { d, ok := m[k]; return d, ok }

// A device that knows its secret, salt and iteration count derives the key
// the door finds in the registry, and posts over DTLS.
func TestRegistryKeys(t *testing.T) {
	h, err := registry.HashSecret("collar-secret")
	if err != nil {
		t.Fatal(err)
	}
	devs := devMap{
		"farm/collar-1": {Tenant: "farm", ID: "collar-1", Status: registry.StatusActive, Secret: h},
		"farm/old":      {Tenant: "farm", ID: "old", Status: registry.StatusSuspended, Secret: h},
		"farm/cert":     {Tenant: "farm", ID: "cert", Status: registry.StatusActive},
	}
	ks := RegistryKeys{Devices: devs}
	if _, err := ks.PSK("farm/old"); !errors.Is(err, registry.ErrDeviceInactive) {
		t.Errorf("suspended: %v", err)
	}
	if _, err := ks.PSK("farm/none"); !errors.Is(err, registry.ErrUnknownDevice) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := ks.PSK("farm/cert"); err == nil {
		t.Error("a device without a secret has a key")
	}

	_, addr := start(t, Config{DTLSAddr: "127.0.0.1:0", Keys: ks}, ingestFunc(func(context.Context, ingest.Message) error { return nil }))
	key, err := pbkdf2.Key(sha512.New, "collar-secret", h.Salt, h.Iterations, len(h.Hash))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, h.Hash) {
		t.Fatal("the device's derivation differs from the registry's hash")
	}
	c, err := dialDTLS(t, addr, "farm/collar-1", key)
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := post(t, c, "/devices/farm/collar-1/sensor", []byte(`{}`)); resp.Code() != codes.Changed {
		t.Fatalf("code %v", resp.Code())
	}
}
