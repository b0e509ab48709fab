package timescale

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
)

// TestIntegrationSinkAppRecords: with AppRecords the sink finds an app
// target topic created after it started, stores its records in app_records
// once (a replay writes nothing), and dead-letters a record whose payload
// is no JSON object.
func TestIntegrationSinkAppRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 2)
	dbURL, _ := migratedDB(t)
	rs := startSink(t, env, dbURL, func(c *Config) { c.AppRecords = true })
	waitReady(t, rs)

	const topic = "apps.cold"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(env.producer)
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.Register(ctx, registryClient(t, env.regURL), []string{topic},
		schemas.WithSchemas(map[string]string{topic: schemas.AppRecordSchema()})); err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(registryClient(t, env.regURL), schemas.WithSchemas(map[string]string{topic: schemas.AppRecordSchema()}))
	if err != nil {
		t.Fatal(err)
	}
	rec := func(i int, payload string) *kgo.Record {
		agreement := "AGR-1"
		v := &schemas.AppRecord{EventID: fmt.Sprintf("ev-%d", i), App: "cold", Tenant: "vet", SourceTenant: "farm", DeviceID: "cow-1",
			TS: at(2, i), IngestedAt: at(2, i), SourceTopic: "raw.sensor", SourceEventIDs: []string{fmt.Sprintf("src-%d", i)},
			Agreement: &agreement, Payload: payload}
		b, err := serde.Encode(ctx, topic, v)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: topic, Key: []byte("farm/cow-1"), Value: b}
	}
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, rec(i, fmt.Sprintf(`{"celsius": %d.5}`, i)))
	}
	recs = append(recs, rec(0, `{"celsius": 0.5}`)) // the same record again: a replay
	recs = append(recs, rec(9, `[1, 2]`))           // no JSON object: a dead letter
	env.produce(t, recs...)

	c := connect(t, dbURL)
	waitFor(t, 90*time.Second, "app records and the dead letter", func() (bool, string) {
		n := count(t, c, "SELECT count(*) FROM app_records")
		d := count(t, c, "SELECT count(*) FROM dead_letters WHERE kafka_topic = $1 AND reason = $2", topic, ReasonInvalid)
		return n == 5 && d == 1, fmt.Sprintf("%d app records, %d dead letters", n, d)
	})
	var (
		tenant, source, agreement string
		celsius                   float64
		ids                       []string
	)
	if err := c.QueryRow(ctx, `SELECT tenant, source_tenant, agreement, (payload->>'celsius')::float8, source_event_ids
		FROM app_records WHERE event_id = 'ev-3'`).Scan(&tenant, &source, &agreement, &celsius, &ids); err != nil {
		t.Fatal(err)
	}
	if tenant != "vet" || source != "farm" || agreement != "AGR-1" || celsius != 3.5 || len(ids) != 1 || ids[0] != "src-3" {
		t.Fatalf("row: %s %s %s %v %v", tenant, source, agreement, celsius, ids)
	}
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, c, "SELECT count(*) FROM app_records"); n != 5 {
		t.Fatalf("%d app records after stop, want 5", n)
	}
}
