package apps

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationAppOnKafka runs the example's hot-readings app as a real
// goka group on the embedded Kafka: its target topic is created from the
// catalogue's derived-stream rules, its value schema registered, and the
// records it writes decode with the registry's schema.
func TestIntegrationAppOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, reg, cl, adm, cat := kafkaEnv(ctx, t, 4, topics.RawSensor)
	as, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	app := as[0]
	for range 2 { // idempotent: a second start finds topic and schema in place
		if err := EnsureTarget(ctx, adm, reg, cat, app); err != nil {
			t.Fatal(err)
		}
	}
	td, err := adm.ListTopics(ctx, app.Target)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := cat.Lookup(TemplateTopic)
	if d := td[app.Target]; d.Err != nil || len(d.Partitions) != int(spec.Partitions) {
		t.Fatalf("target %s: %+v, want %d partitions", app.Target, d, spec.Partitions)
	}
	if _, err := reg.SchemaByVersion(ctx, schemas.Subject(app.Target), -1); err != nil {
		t.Fatalf("target schema: %v", err)
	}
	// An incompatible schema already under the subject stops the app.
	bad := &App{Name: "clash", Target: "apps.clash"}
	if _, err := reg.CreateSchema(ctx, schemas.Subject(bad.Target), sr.Schema{Type: sr.TypeAvro,
		Schema: `{"type":"record","name":"AppRecord","namespace":"io.drover","fields":[{"name":"only","type":"string"}]}`}); err != nil {
		t.Fatal(err)
	}
	var inc *schemas.IncompatibleError
	if err := EnsureTarget(ctx, adm, reg, cat, bad); !errors.As(err, &inc) {
		t.Fatalf("incompatible target schema: err %v", err)
	}

	serde, err := NewSerde(reg, as)
	if err != nil {
		t.Fatal(err)
	}
	p := New(app, serde, Config{Log: devtest.Logger()})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx, groupkit.NewKafka(brokers)) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	}()
	for i, v := range []float64{38.5, 40.2, 41.0, 39.0} {
		r := reading("demo", "collar-1", "temperature", v, i)
		b, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("demo/collar-1"), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(app.Target), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var got []float64
	for len(got) < 2 && ctx.Err() == nil {
		fs := out.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var rec schemas.AppRecord
			if _, err := serde.DecodeTopic(ctx, app.Target, r.Value, &rec); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if string(r.Key) != "demo/collar-1" || rec.App != app.Name || rec.Tenant != "demo" {
				t.Errorf("record %s %+v", r.Key, rec)
			}
			var payload struct{ Celsius float64 }
			if err := json.Unmarshal([]byte(rec.Payload), &payload); err != nil {
				t.Fatalf("payload %s: %v", rec.Payload, err)
			}
			got = append(got, payload.Celsius)
		})
	}
	if len(got) != 2 || got[0] != 40.2 || got[1] != 41.0 {
		t.Fatalf("celsius on %s: %v, want [40.2 41]", app.Target, got)
	}
}

// kafkaEnv starts the embedded Kafka and schema registry of an integration
// test, registers every schema, creates topics with the given partitions
// and returns the brokers, a registry client, a Kafka client producing to
// raw.sensor by default (closed with the test), its admin client and the
// catalogue capped at one replica.
func kafkaEnv(ctx context.Context, t *testing.T, partitions int32, create ...string) ([]string, *sr.Client, *kgo.Client, *kadm.Client, *topics.Catalogue) {
	t.Helper()
	brokers := devtest.KafkaBrokers(t)
	_, url := devtest.Registry(t)
	_, reg := devtest.Schemas(t, url)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topics.RawSensor))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range create {
		if _, err := adm.CreateTopic(ctx, partitions, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	return brokers, reg, cl, adm, cat.WithReplicationCap(1)
}
