package bridge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// registryEnv is a bridge test environment whose Kafka also holds a device
// registry: farm1/cow-1 active, farm1/cow-2 suspended, farm1/cow-3
// revoked, and the WildFi collar wf-9 of tenant herd2.
func registryEnv(t *testing.T) (*env, *registrytest.Env) {
	t.Helper()
	re := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	if _, err := kadm.NewClient(re.Producer).CreateTopics(ctx, 4, 1, nil, append(rawTopics, topics.Commands)...); err != nil {
		t.Fatal(err)
	}
	e := &env{brokers: re.Brokers, kafka: re.Cluster, serde: registerSchemas(t, re.RegistryURL), regURL: re.RegistryURL}
	for _, id := range []string{"cow-1", "cow-2", "cow-3"} {
		re.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: id, Type: "collar"})
	}
	re.AddDevice(t, registry.NewDevice{Tenant: "herd2", ID: "wf-9", Type: registry.TypeWildFi})
	if _, err := re.Store.SetStatus(ctx, "farm1", "cow-2", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := re.Store.SetStatus(ctx, "farm1", "cow-3", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	return e, re
}

// startAdmission opens the check on e's registry and runs its view until
// the test ends (without waiting for it).
func startAdmission(t *testing.T, e *env, mode ingest.RegistryMode, reg prometheus.Registerer) *ingest.Admission {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := ingest.OpenAdmission(ctx, []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.serde, mode, "", devtest.Logger(), reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.View().Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func TestIntegrationRegistryEnforce(t *testing.T) {
	e, _ := registryEnv(t)
	mqttURL := devtest.MQTT(t)
	reg := prometheus.NewRegistry()
	cfg := e.config(mqttURL, "bridge-registry")
	cfg.Admission = startAdmission(t, e, ingest.RegistryAuto, reg) // the topic exists: enforce
	if cfg.Admission.Mode() != ingest.RegistryEnforce {
		t.Fatalf("auto mode with the registry topic = %s, want enforce", cfg.Admission.Mode())
	}
	runBridge(t, cfg)
	pub := newPublisher(t, mqttURL, "pub-registry", nil)
	ms := time.Now().UnixMilli()
	sensor := []byte(fmt.Sprintf(`{"ts":%d,"metric":"temperature","value":38.6}`, ms))
	gps := []byte(fmt.Sprintf(`{"ts":%d,"lat":47.1,"lon":8.2}`, ms))
	pub.publish(t, "devices/farm1/cow-1/sensor", sensor, nil)
	pub.publish(t, "devices/farm1/cow-2/sensor", sensor, nil)
	pub.publish(t, "devices/farm1/cow-3/sensor", sensor, nil)
	pub.publish(t, "devices/farm1/cow-9/sensor", sensor, nil)
	pub.publish(t, "devices/farm2/cow-1/sensor", sensor, nil) // same id, other tenant: not registered
	pub.publish(t, "wildfi/wf-9/gps", gps, nil)
	pub.publish(t, "wildfi/wf-7/gps", gps, nil)

	got := e.consume(t, 7, 60*time.Second)
	type outcome struct{ topic, reason, tenant string }
	bySource := map[string]outcome{}
	for _, c := range got {
		src := c.headers[ingest.HeaderMQTTTopic]
		o := outcome{topic: c.rec.Topic, tenant: c.headers[ingest.HeaderTenant]}
		if dl, ok := c.value.(*schemas.DeadLetter); ok {
			o.reason = dl.Reason
			if dl.Stage != string(decode.StageRoute) {
				t.Errorf("%s: dead letter stage %s, want route", src, dl.Stage)
			}
		}
		bySource[src] = o
	}
	want := map[string]outcome{
		"devices/farm1/cow-1/sensor": {topics.RawSensor, "", "farm1"},
		"devices/farm1/cow-2/sensor": {topics.DLQ, "device_revoked", "farm1"},
		"devices/farm1/cow-3/sensor": {topics.DLQ, "device_revoked", "farm1"},
		"devices/farm1/cow-9/sensor": {topics.DLQ, "unknown_device", "farm1"},
		"devices/farm2/cow-1/sensor": {topics.DLQ, "unknown_device", "farm2"},
		"wildfi/wf-9/gps":            {topics.RawGPS, "", "herd2"}, // the tenant comes from the registry
		"wildfi/wf-7/gps":            {topics.DLQ, "unknown_device", "wildlife"},
	}
	for src, w := range want {
		if g := bySource[src]; g != w {
			t.Errorf("%s: got %+v, want %+v", src, g, w)
		}
	}
	for res, n := range map[string]float64{"admitted": 2, "unknown_device": 3, "device_revoked": 2} {
		if g := checks(t, reg, res); g != n {
			t.Errorf("registry_checks_total{result=%s} = %v, want %v", res, g, n)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "drover_bridge_registry_checks_total"); err != nil || n != 3 {
		t.Errorf("registry checks metric series: %d, %v", n, err)
	}
}

func TestIntegrationRegistryObserve(t *testing.T) {
	e, _ := registryEnv(t)
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "bridge-observe")
	reg := prometheus.NewRegistry()
	cfg.Admission = startAdmission(t, e, ingest.RegistryObserve, reg)
	runBridge(t, cfg)
	pub := newPublisher(t, mqttURL, "pub-observe", nil)
	sensor := []byte(fmt.Sprintf(`{"ts":%d,"metric":"temperature","value":38.6}`, time.Now().UnixMilli()))
	pub.publish(t, "devices/farm1/cow-1/sensor", sensor, nil)
	pub.publish(t, "devices/farm1/cow-3/sensor", sensor, nil)
	pub.publish(t, "devices/farm1/cow-9/sensor", sensor, nil)
	got := e.consume(t, 3, 60*time.Second)
	marks := map[string]string{}
	for _, c := range got {
		if c.rec.Topic != topics.RawSensor {
			t.Errorf("observe mode wrote to %s (%s), want raw.sensor only", c.rec.Topic, c.headers[ingest.HeaderMQTTTopic])
		}
		marks[c.headers[ingest.HeaderMQTTTopic]] = c.headers[ingest.HeaderRegistry]
	}
	want := map[string]string{"devices/farm1/cow-1/sensor": "", "devices/farm1/cow-3/sensor": "device_revoked",
		"devices/farm1/cow-9/sensor": "unknown_device"}
	for src, w := range want {
		if g, ok := marks[src]; !ok || g != w {
			t.Errorf("%s: header %s = %q (present %v), want %q", src, ingest.HeaderRegistry, g, ok, w)
		}
	}
	if g := checks(t, reg, "unknown_device"); g != 1 {
		t.Errorf("observe counted %v unknown devices, want 1", g)
	}
}

// TestIntegrationRegistryNotRestored: while the view has not read the
// registry, the bridge does not subscribe (so it acknowledges nothing and
// dead-letters nothing) and says why it is not ready; once restored, it
// bridges.
func TestIntegrationRegistryNotRestored(t *testing.T) {
	e, _ := registryEnv(t)
	mqttURL := devtest.MQTT(t)
	cfg := e.config(mqttURL, "bridge-not-restored")
	a, err := ingest.OpenAdmission(context.Background(), []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.serde, ingest.RegistryEnforce, "", devtest.Logger(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Admission = a
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge run: %v", err)
		}
	}()
	time.Sleep(time.Second)
	err = b.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("ready before the registry was restored: %v", err)
	}
	if b.connections.Load() != 0 {
		t.Fatal("the bridge connected to MQTT before the registry was restored")
	}
	vctx, vcancel := context.WithCancel(context.Background())
	vdone := make(chan struct{})
	go func() { defer close(vdone); _ = a.View().Run(vctx) }()
	defer func() { vcancel(); <-vdone }()
	waitFor(t, 30*time.Second, "bridge ready", func() bool { return b.Ready(context.Background()) == nil })
	pub := newPublisher(t, mqttURL, "pub-restored", nil)
	pub.publish(t, "devices/farm1/cow-1/sensor", []byte(fmt.Sprintf(`{"ts":%d,"metric":"t","value":1}`, time.Now().UnixMilli())), nil)
	if got := e.consume(t, 1, 30*time.Second); got[0].rec.Topic != topics.RawSensor {
		t.Fatalf("after restore: %s", got[0].rec.Topic)
	}
}

// TestRegistryAutoWithoutTopic: auto is off when Kafka has no registry
// topic, and a bad mode is a config error.
func TestIntegrationRegistryAutoWithoutTopic(t *testing.T) {
	e := newEnv(t)
	a, err := ingest.OpenAdmission(context.Background(), []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, e.serde, ingest.RegistryAuto, "", devtest.Logger(), nil)
	if err != nil || a != nil {
		t.Fatalf("auto without the registry topic: %v, %v; want off (nil)", a, err)
	}
	if a.Mode() != ingest.RegistryOff {
		t.Fatalf("nil admission mode %s", a.Mode())
	}
	if _, err := ingest.ParseRegistryMode("strict"); err == nil {
		t.Fatal("ingest.ParseRegistryMode accepted strict")
	}
	if _, err := ingest.NewAdmission(nil, ingest.RegistryEnforce, nil); err == nil {
		t.Fatal("enforce without a view accepted")
	}
}

// checks reads drover_bridge_registry_checks_total{result} from reg.
func checks(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "drover_bridge_registry_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no drover_bridge_registry_checks_total{result=%q}", result)
	return 0
}
