package groupkit_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestCatalogueHasGroupTopics: every goka table and loop topic of the
// processor groups is in the topic catalogue, marked format goka, with the
// partition count of the groups' inputs (goka refuses to start otherwise)
// and, for tables, cleanup.policy compact.
func TestCatalogueHasGroupTopics(t *testing.T) {
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	input, ok := cat.Lookup(topics.RawSensor)
	if !ok {
		t.Fatal("raw.sensor not in the catalogue")
	}
	if gps, _ := cat.Lookup(topics.RawGPS); gps.Partitions != input.Partitions {
		t.Fatalf("raw.gps has %d partitions, raw.sensor %d: goka needs them equal", gps.Partitions, input.Partitions)
	}
	tests := []struct {
		name   string
		topic  string
		policy string
	}{
		{"features table", string(features.Table), "compact"},
		{"alerts table", string(alerts.Table), "compact"},
		{"alerts loop", string(alerts.Loop), "delete"},
		{"state table", string(state.Table), "compact"},
		{"state loop", string(state.LoopStream), "delete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ok := cat.Lookup(tc.topic)
			switch {
			case !ok:
				t.Fatalf("%s is not in the catalogue", tc.topic)
			case !tp.Internal():
				t.Errorf("%s: format %q, want %q", tc.topic, tp.Format, topics.FormatGoka)
			case tp.Partitions != input.Partitions:
				t.Errorf("%s: %d partitions, want %d (raw.sensor's)", tc.topic, tp.Partitions, input.Partitions)
			case tp.Configs[topics.CleanupPolicy] != tc.policy:
				t.Errorf("%s: cleanup.policy %q, want %q", tc.topic, tp.Configs[topics.CleanupPolicy], tc.policy)
			}
		})
	}
	// Nothing else in the catalogue claims to be a goka topic.
	for _, tp := range cat.Topics {
		if tp.Internal() && !slices.ContainsFunc(tests, func(tc struct{ name, topic, policy string }) bool { return tc.topic == tp.Name }) {
			t.Errorf("%s is marked format goka but is no group's table or loop", tp.Name)
		}
	}
}

// TestIntegrationGroupsOnCatalogueTopics does what `drover dev` does: it
// applies the topic catalogue (devstack.Provision, replication capped to
// 1) and then runs every processor group. goka must accept the
// pre-created tables and loops (same partition count as the inputs) and
// leave them as the catalogue made them; a reading must reach state.
func TestIntegrationGroupsOnCatalogueTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t)
	brokers := kc.ListenAddrs()
	_, url := devtest.Registry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	ep := devstack.Endpoints{KafkaBrokers: strings.Join(brokers, ","), SchemaRegistryURL: url}
	if err := devstack.Provision(ctx, ep, devtest.Logger()); err != nil {
		t.Fatalf("provision: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	var internal []string
	for _, tp := range cat.Topics {
		if tp.Internal() {
			internal = append(internal, tp.Name)
		}
	}
	// The catalogue created the group topics before any group started.
	before, err := adm.ListTopics(ctx, internal...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range internal {
		if d, ok := before[name]; !ok || d.Err != nil || len(d.Partitions) != 24 {
			t.Fatalf("%s not created by the catalogue with 24 partitions: %+v", name, d)
		}
	}

	reg, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- processors.Run(runCtx, groupkit.NewKafka(brokers), serde, processors.Options{}, nil, devtest.Logger())
	}()

	now := time.Now()
	b, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: "e1", Tenant: "farm", DeviceID: "cow-7", TS: now, IngestedAt: now,
		Metric: "temperature", Value: 38.4, Source: "t", Attrs: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-7"), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		ds, err := state.Lookup(ctx, []kgo.Opt{kgo.SeedBrokers(brokers...)}, serde, "cow-7")
		if err == nil && ds.Metrics["temperature"] == 38.4 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("processors stopped: %v", err)
		default:
		}
		if ctx.Err() != nil {
			t.Fatalf("no state for cow-7 within the deadline: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// goka used them as they were: same partitions, the catalogue's configs.
	plan, err := topics.Diff(ctx, adm, cat.WithReplicationCap(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range plan.Changes {
		if slices.Contains(internal, c.Topic.Name) {
			t.Errorf("after the groups started, %s differs from the catalogue: %s", c.Topic.Name, c)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("processors.Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("processors.Run did not return within 60s of cancellation")
	}
}
