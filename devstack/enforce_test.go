package devstack_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
)

// TestIntegrationStackEnforcesRegistry is what `drover dev` does after
// provisioning: the embedded broker switches to the device registry. A
// registered device connects with its secret and publishes under its own
// topics only; a wrong secret and an anonymous client are refused at
// CONNECT; the bridge and tooling principals keep working; a revoked
// device is disconnected within seconds and refused after.
func TestIntegrationStackEnforcesRegistry(t *testing.T) {
	s := devtest.Stack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := devstack.Provision(ctx, s.Endpoints(), devtest.Logger()); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.Endpoints().MQTTURL, "tcp://")
	if _, err := dial(t, addr, "anyone", "", ""); err != nil {
		t.Fatalf("before enforcing, an anonymous client is let in: %v", err)
	}
	if err := s.EnforceRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	ep := s.Endpoints()

	// Register farm1/cow-1 through the registry's own writer.
	reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	kopts := []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}
	view, err := registry.NewView(kopts, serde)
	if err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithCancel(context.Background())
	vdone := make(chan error, 1)
	go func() { vdone <- view.Run(vctx) }()
	defer func() { vcancel(); <-vdone }()
	if err := view.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	producer, err := kgo.NewClient(kopts...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	store := registry.NewStore(view, producer, serde)
	if _, err := store.AddTenant(ctx, "farm1", ""); err != nil {
		t.Fatal(err)
	}
	a, err := store.Add(ctx, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	if err != nil {
		t.Fatal(err)
	}

	if _, err := dial(t, addr, "anyone-2", "", ""); err == nil {
		t.Fatal("an anonymous client connected to a broker that enforces the registry")
	}
	if _, err := dial(t, addr, "farm1/cow-1", "farm1/cow-1", "not-the-secret-at-all"); err == nil {
		t.Fatal("a wrong secret was accepted")
	}
	var dev *client
	deadline := time.Now().Add(20 * time.Second)
	for { // the broker's view applies the new device moments after ours
		if dev, err = dial(t, addr, "farm1/cow-1", "farm1/cow-1", a.Secret); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the registered device was refused: %v", err)
	}
	if rc := pub(t, dev, "devices/farm1/cow-1/sensor", "own"); rc >= 0x80 {
		t.Fatalf("publish to its own topic: reason 0x%02x", rc)
	}
	if rc := pub(t, dev, "devices/farm2/cow-1/sensor", "foreign"); rc != 0x87 {
		t.Fatalf("publish into another tenant's topic: reason 0x%02x, want 0x87 (not authorized)", rc)
	}

	env := map[string]string{}
	for _, kv := range ep.Env() {
		env[kv[0]] = kv[1]
	}
	if env["DROVER_DEV_MQTT_TOOLS_USERNAME"] != devstack.ToolsPrincipal || env["DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE"] == "" {
		t.Fatalf("env lacks the tooling principal: %v", env)
	}
	toolsPW, err := os.ReadFile(env["DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	tools, err := dial(t, addr, "a-script", devstack.ToolsPrincipal, strings.TrimSpace(string(toolsPW)))
	if err != nil {
		t.Fatalf("tooling principal refused: %v", err)
	}
	if rc := pub(t, tools, "devices/demo/collar-0001/sensor", "from tools"); rc >= 0x80 {
		t.Fatalf("tooling publish: reason 0x%02x", rc)
	}
	bridgePW, err := os.ReadFile(ep.MQTTPasswordFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, addr, devstack.BridgePrincipal+"-test", ep.MQTTUsername, strings.TrimSpace(string(bridgePW))); err != nil {
		t.Fatalf("bridge principal refused: %v", err)
	}
	if _, err := dial(t, addr, devstack.BridgePrincipal+"-thief", devstack.ToolsPrincipal, strings.TrimSpace(string(toolsPW))); err == nil {
		t.Fatal("the tooling principal took a client id reserved to the bridge")
	}

	if _, err := store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.down:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked device is still connected after 10s")
	}
	if _, err := dial(t, addr, "farm1/cow-1", "farm1/cow-1", a.Secret); err == nil {
		t.Fatal("the revoked device connected again")
	}
}
