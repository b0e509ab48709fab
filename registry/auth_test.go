package registry_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

func TestIntegrationAuth(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	cow := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	sus := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-2"})
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-2", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	caPEM, keyPEM, err := registry.NewCA("farm1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := registry.LoadCA("farm1", caPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, _, _ := registry.NewDeviceKey()
	certPEM, fp, err := ca.Issue("gate-1", key.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "gate-1", NoSecret: true, CertFingerprints: []string{fp}})
	blk, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(blk.Bytes)
	otherPEM, _, _ := ca.Issue("gate-2", key.Public(), time.Now()) // signed by the CA, never enrolled
	blk, _ = pem.Decode(otherPEM)
	other, _ := x509.ParseCertificate(blk.Bytes)

	bridgeSecret := "bridge-secret-0123456789"
	bh, _ := registry.HashSecret(bridgeSecret)
	auth, err := registry.NewAuth(e.View, registry.Service{Name: "drover-bridge", Secret: bh, ClientIDPrefix: "drover-bridge", ACL: registry.BridgeACL()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      registry.Credentials
		reason string // "" = allowed
	}{
		{"device", registry.Credentials{ClientID: "farm1/cow-1", Username: "farm1/cow-1", Password: []byte(cow.Secret)}, ""},
		{"wrong secret", registry.Credentials{ClientID: "farm1/cow-1", Username: "farm1/cow-1", Password: []byte("x" + cow.Secret)}, registry.ReasonBadCredentials},
		{"another device's secret", registry.Credentials{ClientID: "farm1/cow-1", Username: "farm1/cow-1", Password: []byte(sus.Secret)}, registry.ReasonBadCredentials},
		{"client id of another device", registry.Credentials{ClientID: "farm1/cow-9", Username: "farm1/cow-1", Password: []byte(cow.Secret)}, registry.ReasonClientID},
		{"unknown device", registry.Credentials{ClientID: "farm2/cow-1", Username: "farm2/cow-1", Password: []byte(cow.Secret)}, registry.ReasonUnknownDevice},
		{"username not a key", registry.Credentials{ClientID: "cow-1", Username: "cow-1", Password: []byte(cow.Secret)}, registry.ReasonUnknownDevice},
		{"suspended", registry.Credentials{ClientID: "farm1/cow-2", Username: "farm1/cow-2", Password: []byte(sus.Secret)}, registry.ReasonSuspended},
		{"certificate", registry.Credentials{ClientID: "farm1/gate-1", Cert: cert}, ""},
		{"certificate, wrong username", registry.Credentials{ClientID: "farm1/gate-1", Username: "farm1/cow-1", Cert: cert}, registry.ReasonBadCredentials},
		{"certificate not enrolled", registry.Credentials{ClientID: "farm1/gate-2", Cert: other}, registry.ReasonUnknownCert},
		{"certificate device, password", registry.Credentials{ClientID: "farm1/gate-1", Username: "farm1/gate-1", Password: []byte("anything-at-all-x")}, registry.ReasonBadCredentials},
		{"common name only (EMQX)", registry.Credentials{ClientID: "farm1/gate-1", Username: "farm1/gate-1", CertCommonName: "farm1/gate-1"}, ""},
		{"common name of a password device", registry.Credentials{ClientID: "farm1/cow-1", CertCommonName: "farm1/cow-1"}, registry.ReasonUnknownCert},
		{"bridge", registry.Credentials{ClientID: "drover-bridge-0", Username: "drover-bridge", Password: []byte(bridgeSecret)}, ""},
		{"bridge, wrong client id", registry.Credentials{ClientID: "rogue", Username: "drover-bridge", Password: []byte(bridgeSecret)}, registry.ReasonClientID},
		{"bridge, wrong secret", registry.Credentials{ClientID: "drover-bridge-0", Username: "drover-bridge", Password: []byte(cow.Secret)}, registry.ReasonBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.Connect(tc.c)
			var de *registry.DenyError
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason != "" && (!errors.As(err, &de) || de.Reason != tc.reason):
				t.Fatalf("got %v, want reason %s", err, tc.reason)
			}
		})
	}

	p, err := auth.Connect(registry.Credentials{ClientID: "farm1/cow-1", Username: "farm1/cow-1", Password: []byte(cow.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.Publish(p, "devices/farm1/cow-1/sensor"); err != nil {
		t.Fatalf("own topic: %v", err)
	}
	for _, topic := range []string{"devices/farm2/cow-1/sensor", "devices/farm1/cow-2/sensor", "wildfi/cow-1/gps"} {
		if err := auth.Publish(p, topic); !errors.Is(err, registry.ErrDenied) {
			t.Errorf("publish %s: %v, want denied", topic, err)
		}
	}
	if err := auth.Subscribe(p, "devices/farm1/cow-1/commands/#"); err != nil {
		t.Fatalf("own commands: %v", err)
	}
	if err := auth.Subscribe(p, "devices/farm1/+/commands"); !errors.Is(err, registry.ErrDenied) {
		t.Fatalf("others' commands: %v", err)
	}
	// Revoked while connected: the next publish is refused.
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	var de *registry.DenyError
	if err := auth.Publish(p, "devices/farm1/cow-1/sensor"); !errors.As(err, &de) || de.Reason != registry.ReasonRevoked {
		t.Fatalf("publish after revoke: %v", err)
	}
	bp, _ := auth.Connect(registry.Credentials{ClientID: "drover-bridge-0", Username: "drover-bridge", Password: []byte(bridgeSecret)})
	if auth.Subscribe(bp, "$share/ingestors/devices/#") != nil || auth.Publish(bp, "devices/farm1/cow-1/sensor") == nil {
		t.Fatal("bridge ACL not applied")
	}
	if _, err := registry.NewAuth(e.View, registry.Service{Name: "farm1/cow-1", Secret: bh}); err == nil {
		t.Fatal("a service named like a device was accepted")
	}
}
