package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestIntegrationViewRestoreAndLookups(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	fp := registry.Fingerprint([]byte("a certificate"))
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1", Type: "collar", Labels: map[string]string{"herd": "north"}, OfflineTimeout: 45 * time.Minute})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm2", ID: "cow-1"})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "gate-7", NoSecret: true, CertFingerprints: []string{fp}})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "lora-1", AltIDs: map[string]string{"deveui": "70-B3-D5-7E-D0-00-12-34"}})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm2", ID: "wf-9", Type: registry.TypeWildFi})
	if _, err := e.Store.SetStatus(ctx, "farm2", "cow-1", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}

	// A second view restores everything from the topic.
	v := e.StartView(t)
	if got := len(v.Devices()); got != 5 {
		t.Fatalf("restored %d devices, want 5", got)
	}
	d, ok := v.Device("farm1", "cow-1")
	if !ok || d.Labels["herd"] != "north" || d.OfflineTimeout != 45*time.Minute || d.Type != "collar" || !d.Active() || d.Secret == nil {
		t.Fatalf("farm1/cow-1 = %+v, %v", d, ok)
	}
	if d, ok := v.Device("farm2", "cow-1"); !ok || d.Status != registry.StatusSuspended {
		t.Fatalf("farm2/cow-1 (same id, other tenant) = %+v, %v; want suspended", d, ok)
	}
	if d, ok := v.DeviceByCert(fp); !ok || d.Key() != "farm1/gate-7" || d.Secret != nil {
		t.Fatalf("by certificate: %+v, %v", d, ok)
	}
	if d, ok := v.DeviceByAltID(registry.AltDevEUI, "70b3d57ed0001234"); !ok || d.Key() != "farm1/lora-1" {
		t.Fatalf("by DevEUI: %+v, %v", d, ok)
	}
	if d, ok := v.DeviceByAltID("wildfi", "wf-9"); !ok || d.Key() != "farm2/wf-9" {
		t.Fatalf("WildFi by device id: %+v, %v", d, ok)
	}
	if _, ok := v.Device("farm1", "nope"); ok {
		t.Fatal("found an unregistered device")
	}
	if _, err := v.Admit("farm2", "cow-1"); !errors.Is(err, registry.ErrDeviceInactive) {
		t.Fatalf("Admit(suspended) = %v, want ErrDeviceInactive", err)
	}
	if _, err := v.Admit("farm3", "cow-1"); !errors.Is(err, registry.ErrUnknownDevice) {
		t.Fatalf("Admit(unknown) = %v, want ErrUnknownDevice", err)
	}
	if ts := v.Tenants(); len(ts) != 2 || ts[0].ID != "farm1" || ts[1].ID != "farm2" {
		t.Fatalf("tenants %+v", ts)
	}
}

func TestIntegrationViewLiveUpdates(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	other := e.StartView(t)
	changes := make(chan registry.Change, 16)
	cancel := other.Subscribe(func(c registry.Change) { changes <- c })
	defer cancel()

	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	c := next(t, changes)
	if c.Key != "farm1/cow-1" || c.Old == nil || c.Old.Status != registry.StatusActive || c.New == nil || c.New.Status != registry.StatusRevoked {
		t.Fatalf("change %+v", c)
	}
	if d, _ := other.Device("farm1", "cow-1"); d.Status != registry.StatusRevoked {
		t.Fatalf("the other view has %s", d.Status)
	}
	if err := e.Store.Delete(ctx, "farm1", "cow-1"); err != nil {
		t.Fatal(err)
	}
	if c := next(t, changes); c.New != nil || c.Old == nil {
		t.Fatalf("delete change %+v", c)
	}
	if _, ok := other.Device("farm1", "cow-1"); ok {
		t.Fatal("deleted device still in the other view")
	}
	e.AddTenant(t, "farm9")
	if c := next(t, changes); c.Tenant == nil || c.Tenant.ID != "farm9" {
		t.Fatalf("tenant change %+v", c)
	}
}

func next(t *testing.T, ch <-chan registry.Change) registry.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change notified within 10s")
		return registry.Change{}
	}
}

// TestIntegrationViewSkipsBadRecords: records that do not decode, or decode
// into something malformed, are skipped and counted; the view keeps going,
// and a fresh view still becomes ready over them.
func TestIntegrationViewSkipsBadRecords(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddTenant(t, "farm1")
	wrongKey, err := e.Serde.Encode(ctx, topics.DevicesRegistry, &schemas.RegistryRecord{
		Kind: registry.KindDevice, Tenant: "farm1", DeviceID: "cow-2", Status: "active",
		Labels: map[string]string{}, AltIDs: map[string]string{}, CertFingerprints: []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	badStatus, err := e.Serde.Encode(ctx, topics.DevicesRegistry, &schemas.RegistryRecord{
		Kind: registry.KindDevice, Tenant: "farm1", DeviceID: "cow-3", Status: "lost",
		Labels: map[string]string{}, AltIDs: map[string]string{}, CertFingerprints: []string{},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := e.Producer.ProduceSync(ctx,
		&kgo.Record{Topic: topics.DevicesRegistry, Key: []byte("farm1/cow-1"), Value: []byte("not avro at all")},
		&kgo.Record{Topic: topics.DevicesRegistry, Key: []byte("farm1/cow-1"), Value: append(schemas.Header(9999), 1, 2, 3)},
		&kgo.Record{Topic: topics.DevicesRegistry, Key: []byte("farm1/cow-9"), Value: wrongKey},
		&kgo.Record{Topic: topics.DevicesRegistry, Key: []byte("farm1/cow-3"), Value: badStatus},
	)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-4"}) // applied after the bad ones
	if _, ok := e.View.Device("farm1", "cow-4"); !ok {
		t.Fatal("a good record after bad ones was not applied")
	}
	m := e.Metrics
	if got := counter(t, m, "undecodable"); got != 2 {
		t.Errorf("undecodable = %v, want 2", got)
	}
	if got := counter(t, m, "invalid"); got != 2 {
		t.Errorf("invalid = %v, want 2", got)
	}
	for _, id := range []string{"cow-1", "cow-2", "cow-3", "cow-9"} {
		if _, ok := e.View.Device("farm1", id); ok {
			t.Errorf("bad record for %s was applied", id)
		}
	}
	fresh := e.StartView(t) // ready despite the bad records
	if _, ok := fresh.Device("farm1", "cow-4"); !ok || len(fresh.Devices()) != 1 {
		t.Fatalf("fresh view has %d devices", len(fresh.Devices()))
	}
}

func counter(t *testing.T, m interface {
	Gather() ([]*dto.MetricFamily, error)
}, result string) float64 {
	t.Helper()
	mfs, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "drover_registry_records_total" {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return mm.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no drover_registry_records_total{result=%q}", result)
	return 0
}

// TestIntegrationViewMissingTopic: a registry topic that does not exist is
// an error naming the fix, not a view that waits for ever.
func TestIntegrationViewMissingTopic(t *testing.T) {
	e := registrytest.New(t)
	v, err := registry.NewView([]kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, e.Serde, registry.WithTopic("no.such.registry"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = v.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "drover topics apply") {
		t.Fatalf("Run = %v, want an error naming drover topics apply", err)
	}
	if v.IsReady() {
		t.Fatal("ready without a topic")
	}
}
