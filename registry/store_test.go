package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

func TestIntegrationStoreAdd(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	if _, err := e.Store.Add(ctx, registry.NewDevice{Tenant: "farm1", ID: "cow-1"}); !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "drover tenants add farm1") {
		t.Fatalf("device of an unregistered tenant: %v", err)
	}
	a := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1", Type: registry.TypeWildFi, AltIDs: map[string]string{"deveui": "0011223344556677"}})
	if len(a.Secret) != 43 || !a.Device.Secret.Verify([]byte(a.Secret)) || a.Device.Secret.Verify([]byte(a.Secret+"x")) {
		t.Fatalf("secret %q does not verify against its hash", a.Secret)
	}
	d, _ := e.View.Device("farm1", "cow-1")
	if d.Actor != "test" || d.CreatedAt.IsZero() || !d.Secret.Verify([]byte(a.Secret)) {
		t.Fatalf("stored %+v", d)
	}
	for _, tc := range []struct {
		name string
		nd   registry.NewDevice
		is   error
		msg  string
	}{
		{"duplicate", registry.NewDevice{Tenant: "farm1", ID: "cow-1"}, registry.ErrExists, "device farm1/cow-1 already exists (active"},
		{"claimed DevEUI", registry.NewDevice{Tenant: "farm1", ID: "cow-2", AltIDs: map[string]string{"deveui": "00:11:22:33:44:55:66:77"}}, registry.ErrExists, "deveui id 0011223344556677 is already claimed by device farm1/cow-1"},
		{"WildFi id in another tenant", registry.NewDevice{Tenant: "farm2", ID: "cow-1", Type: registry.TypeWildFi}, registry.ErrExists, "WildFi device id cow-1"},
		{"bad device id", registry.NewDevice{Tenant: "farm1", ID: "cow\u202e1"}, identity.ErrInvalid, `field device_id: device id "cow\u202e1"`},
		{"bad label", registry.NewDevice{Tenant: "farm1", ID: "cow-3", Labels: map[string]string{"owner": "a\x1b[31m"}}, registry.ErrInvalid, "field label.owner: has a control"},
		{"short secret", registry.NewDevice{Tenant: "farm1", ID: "cow-3", Secret: "short"}, registry.ErrInvalid, "field secret: is 5 characters long"},
		{"no secret, no cert", registry.NewDevice{Tenant: "farm1", ID: "cow-3", NoSecret: true}, registry.ErrInvalid, "needs a certificate"},
		{"bad fingerprint", registry.NewDevice{Tenant: "farm1", ID: "cow-3", CertFingerprints: []string{"abc"}}, registry.ErrInvalid, "field cert_fingerprint"},
		{"bad DevEUI", registry.NewDevice{Tenant: "farm1", ID: "cow-3", AltIDs: map[string]string{"deveui": "xyz"}}, registry.ErrInvalid, "field alt.deveui"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "WildFi id in another tenant" {
				e.AddTenant(t, "farm2")
			}
			_, err := e.Store.Add(ctx, tc.nd)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.is, tc.msg)
			}
		})
	}
	if n := len(e.View.Devices()); n != 1 {
		t.Fatalf("%d devices after refused adds, want 1", n)
	}
}

func TestIntegrationStoreBatchAllOrNothing(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddTenant(t, "farm1")
	batch := []registry.NewDevice{
		{Tenant: "farm1", ID: "a"}, {Tenant: "farm1", ID: "b"}, {Tenant: "farm1", ID: "a"}, {Tenant: "farm1", ID: ""},
	}
	_, err := e.Store.AddDevices(ctx, batch, false)
	var be *registry.BatchError
	if !errors.As(err, &be) || len(be.Problems) != 2 || be.Problems[0].Index != 2 || be.Problems[1].Index != 3 {
		t.Fatalf("got %v, want a BatchError for entries 3 and 4", err)
	}
	var de *registry.DuplicateError
	if !errors.As(be.Problems[0].Err, &de) || de.Entry != 0 || !errors.Is(err, registry.ErrExists) {
		t.Fatalf("entry 3: %v, want a duplicate of entry 1", be.Problems[0].Err)
	}
	if n := len(e.View.Devices()); n != 0 {
		t.Fatalf("a refused batch wrote %d devices", n)
	}
	added, err := e.Store.AddDevices(ctx, batch[:2], true)
	if err != nil || len(added) != 2 || added[0].Secret != "" || len(e.View.Devices()) != 0 {
		t.Fatalf("dry run: %v, %+v, %d devices", err, added, len(e.View.Devices()))
	}
	added, err = e.Store.AddDevices(ctx, batch[:2], false)
	if err != nil || len(added) != 2 || added[1].Secret == "" || len(e.View.Devices()) != 2 {
		t.Fatalf("apply: %v, %+v", err, added)
	}
}

func TestIntegrationStoreStatusRotateDelete(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	a := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	if _, err := e.Store.SetStatus(ctx, "farm1", "nope", registry.StatusSuspended); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("suspend unknown: %v", err)
	}
	if err := e.Store.Delete(ctx, "farm1", "cow-1"); !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "revoke it before") {
		t.Fatalf("delete active: %v", err)
	}
	r, err := e.Store.Rotate(ctx, "farm1", "cow-1")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := e.View.Device("farm1", "cow-1")
	if d.Secret.Verify([]byte(a.Secret)) || !d.Secret.Verify([]byte(r.Secret)) || d.Secret.ID() == a.Device.Secret.ID() {
		t.Fatal("after rotate the old secret still verifies, or the new one does not")
	}
	for _, st := range []registry.Status{registry.StatusSuspended, registry.StatusSuspended, registry.StatusActive, registry.StatusRevoked} {
		if d, err := e.Store.SetStatus(ctx, "farm1", "cow-1", st); err != nil || d.Status != st {
			t.Fatalf("set %s: %v, %+v", st, err, d)
		}
	}
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusActive); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("activate revoked: %v", err)
	}
	if _, err := e.Store.Rotate(ctx, "farm1", "cow-1"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("rotate revoked: %v", err)
	}
	if err := e.Store.Delete(ctx, "farm1", "cow-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.View.Device("farm1", "cow-1"); ok {
		t.Fatal("deleted device still present")
	}
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"}) // re-enrol after delete
	if _, err := e.Store.AddTenant(ctx, "farm1", ""); !errors.Is(err, registry.ErrExists) {
		t.Fatalf("duplicate tenant: %v", err)
	}
}
