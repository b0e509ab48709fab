// Package ingesttest starts an ingest core for tests: the embedded Kafka
// and schema registry (every schema registered, the raw and dead-letter
// topics created), a running device registry view and store, and a Core
// routing with the MQTT bridge's default routes table — so a door under
// test gets exactly what MQTT gets. It also holds the table of bad inputs
// every door is tested with. Only tests import it (it links the embedded
// fakes).
package ingesttest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Topics are the topics the core writes to.
var Topics = []string{topics.RawSensor, topics.RawGPS, topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D, topics.DLQ}

// Env is a running core.
type Env struct {
	*registrytest.Env
	Core     *ingest.Core
	Producer *kgo.Client // the core's
}

// New starts everything; it stops when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{Env: registrytest.New(t)}
	ctx := registrytest.Ctx(t)
	if _, err := schemas.Register(ctx, e.SR, nil); err != nil {
		t.Fatalf("ingesttest: register schemas: %v", err)
	}
	if _, err := kadm.NewClient(e.Env.Producer).CreateTopics(ctx, 4, 1, nil, Topics...); err != nil {
		t.Fatalf("ingesttest: create topics: %v", err)
	}
	p, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ProducerLinger(ingest.ProducerLinger)) // as the doors' producers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	e.Producer = p
	e.Core, err = ingest.NewCore(ingest.Config{Kafka: p, Serde: e.Serde, Routes: routes.Default(),
		Registry: e.View, Log: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Consume returns the records on topic (from the start) until n arrived
// or the deadline passed.
func (e *Env) Consume(t testing.TB, topic string, n int, within time.Duration) []*kgo.Record {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		f := c.PollFetches(ctx)
		f.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

// DeadLetters decodes the dead letters among recs.
func (e *Env) DeadLetters(t testing.TB, recs []*kgo.Record) []schemas.DeadLetter {
	t.Helper()
	var out []schemas.DeadLetter
	for _, r := range recs {
		var dl schemas.DeadLetter
		if _, err := e.Serde.Decode(context.Background(), r.Value, &dl); err != nil {
			t.Fatalf("ingesttest: dead letter: %v", err)
		}
		out = append(out, dl)
	}
	return out
}

// Devices registers the cases' devices, Registered (active) and Revoked,
// both of Tenant, and returns their secrets by device id.
func (e *Env) Devices(t testing.TB) (secrets map[string]string) {
	t.Helper()
	secrets = map[string]string{}
	for _, id := range []string{Registered, Revoked} {
		secrets[id] = e.AddDevice(t, registry.NewDevice{Tenant: Tenant, ID: id}).Secret
	}
	if _, err := e.Store.SetStatus(registrytest.Ctx(t), Tenant, Revoked, registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	return secrets
}
