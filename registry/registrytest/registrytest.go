// Package registrytest starts a device registry for tests: the embedded
// Kafka (kfake) with the devices.registry topic, the embedded schema
// registry with its schema, a running [registry.View] and a
// [registry.Store]. Only tests import it (it links the embedded fakes).
package registrytest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Partitions of the test registry topic.
const Partitions = 3

// Env is a running registry.
type Env struct {
	Cluster     *kfake.Cluster
	Brokers     []string
	RegistryURL string
	SR          *sr.Client
	Serde       *schemas.Serde
	Producer    *kgo.Client
	Metrics     *prometheus.Registry
	View        *registry.View
	Store       *registry.Store
}

// New starts Kafka, the schema registry (with the registry schema
// registered), the topic (compacted, Partitions partitions), a view with its
// metrics on Metrics, and a store; it waits until the view is ready. All of
// it stops when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{Cluster: devtest.Kafka(t)}
	e.Brokers = e.Cluster.ListenAddrs()
	_, e.RegistryURL = devtest.Registry(t)
	var err error
	if e.SR, err = sr.NewClient(sr.URLs(e.RegistryURL)); err != nil {
		t.Fatal(err)
	}
	ctx := Ctx(t)
	if _, err := schemas.Register(ctx, e.SR, []string{topics.DevicesRegistry}); err != nil {
		t.Fatalf("registrytest: register schema: %v", err)
	}
	if e.Serde, err = schemas.NewSerde(e.SR); err != nil {
		t.Fatal(err)
	}
	if e.Producer, err = kgo.NewClient(kgo.SeedBrokers(e.Brokers...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Producer.Close)
	cfg := map[string]*string{"cleanup.policy": ptr("compact")}
	if _, err := kadm.NewClient(e.Producer).CreateTopic(ctx, Partitions, 1, cfg, topics.DevicesRegistry); err != nil {
		t.Fatalf("registrytest: create topic: %v", err)
	}
	e.Metrics = prometheus.NewRegistry()
	e.View = e.StartView(t, registry.WithRegisterer(e.Metrics))
	e.Store = registry.NewStore(e.View, e.Producer, e.Serde, registry.WithActor("test"))
	return e
}

// StartView starts another view of the registry and waits until it is
// ready; it stops when the test ends.
func (e *Env) StartView(t testing.TB, opts ...registry.ViewOption) *registry.View {
	t.Helper()
	v, err := registry.NewView([]kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, e.Serde, append([]registry.ViewOption{registry.WithLogger(devtest.Logger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registrytest: view: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := v.WaitReady(wctx); err != nil {
		t.Fatalf("registrytest: view: %v", err)
	}
	return v
}

// Sync waits until the env's view has applied every record on the registry
// topic now — what another writer (a CLI command under test, say) wrote —
// so the test reads that writer's writes.
func (e *Env) Sync(t testing.TB) {
	t.Helper()
	ctx := Ctx(t)
	ends, err := kadm.NewClient(e.Producer).ListEndOffsets(ctx, topics.DevicesRegistry)
	if err != nil {
		t.Fatalf("registrytest: end offsets: %v", err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			if err := e.View.WaitFor(ctx, o.Partition, o.Offset-1); err != nil {
				t.Fatalf("registrytest: %v", err)
			}
		}
	})
}

// AddTenant registers a tenant without a CA, failing the test on error.
func (e *Env) AddTenant(t testing.TB, id string) {
	t.Helper()
	if _, err := e.Store.AddTenant(Ctx(t), id, ""); err != nil {
		t.Fatalf("registrytest: add tenant %s: %v", id, err)
	}
}

// AddDevice adds a device (registering its tenant first when needed),
// failing the test on error, and returns it with its secret.
func (e *Env) AddDevice(t testing.TB, nd registry.NewDevice) registry.Added {
	t.Helper()
	if _, ok := e.View.Tenant(nd.Tenant); !ok {
		e.AddTenant(t, nd.Tenant)
	}
	a, err := e.Store.Add(Ctx(t), nd)
	if err != nil {
		t.Fatalf("registrytest: add device %s/%s: %v", nd.Tenant, nd.ID, err)
	}
	return a
}

// Ctx returns a context cancelled when the test ends or after a minute.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func ptr[T any](v T) *T { return &v }

// Mosquitto starts a real mosquitto with the dynamic security plugin
// loaded from the configuration cfg (dynsec.RenderConfig's output) and
// returns its URL. Anonymous clients are refused. max_queued_messages is a
// large bound, not 0: with 0, Mosquitto 2.0.11 closes an MQTT v5
// connection after a PUBLISH its ACL denies instead of answering PUBACK
// 0x87 (see registry/README.md).
func Mosquitto(t testing.TB, cfg []byte) string {
	t.Helper()
	plugin, err := dynsec.PluginPath()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dynamic-security.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return devtest.Mosquitto(t, "allow_anonymous false", "max_queued_messages 1000000",
		"plugin "+plugin, "plugin_opt_config_file "+path)
}

// RegisterDevices registers tenant (when missing) and the devices ids
// (type "collar"; an id starting with "wildfi-" as a WildFi collar) in the
// registry of a running stack (Kafka at brokers, the schema registry at
// registryURL, its devices.registry topic provisioned), failing the test on
// error. It returns once they are written; views started afterwards see
// them at once, running views within moments.
func RegisterDevices(t testing.TB, brokers []string, registryURL, tenant string, ids ...string) {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(registryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(cl)
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.RegisterDevices(Ctx(t), []kgo.Opt{kgo.SeedBrokers(brokers...)}, serde, "test", tenant, ids, devtest.Logger()); err != nil {
		t.Fatalf("registrytest: %v", err)
	}
}
