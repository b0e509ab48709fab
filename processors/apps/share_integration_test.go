package apps

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationShareEvidenceRevoke runs the example's cross-tenant share
// on the embedded Kafka: its records reach the target, the hour's evidence
// reaches dataact.third_party.sharing, and after `drover apps revoke`'s
// record nothing more is shared.
func TestIntegrationShareEvidenceRevoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, reg, cl, adm, cat := kafkaEnv(ctx, t, 3, topics.RawSensor, topics.ThirdPartySharing)
	as, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	app := as[1] // vet-share: demo's collars to tenant vet, AGR-demo-vet-1
	if err := EnsureTarget(ctx, adm, reg, cat, app); err != nil {
		t.Fatal(err)
	}
	serde, err := NewSerde(reg, as)
	if err != nil {
		t.Fatal(err)
	}
	kopts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	rv := NewRevocations(kopts, serde, devtest.Logger())
	metrics := prometheus.NewRegistry()
	p := New(app, serde, Config{Registerer: metrics, Log: devtest.Logger(), Revocations: rv, TickInterval: 200 * time.Millisecond})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- rv.Run(rctx) }()
	go func() { done <- p.Run(rctx, groupkit.NewKafka(brokers)) }()
	defer func() {
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()

	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) // over: its evidence is due at once
	produce := func(id string, ts time.Time) {
		r := reading("demo", "collar-1", "temperature", 39, 0)
		r.EventID, r.TS, r.IngestedAt = id, ts, ts
		b, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("demo/collar-1"), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range []int{1, 2, 3} {
		produce("before-"+string(rune('a'+i)), hour.Add(time.Duration(m)*time.Minute))
	}
	if n := countRecords(ctx, t, brokers, app.Target, 3, 30*time.Second); n != 3 {
		t.Fatalf("%d shared records, want 3", n)
	}
	var ev Evidence
	waitEnvelope(ctx, t, brokers, serde, EventEvidence, func(env *schemas.Envelope) bool {
		return json.Unmarshal([]byte(env.Payload), &ev) == nil && ev.RecordsShared == 3
	})
	if ev.Agreement != "AGR-demo-vet-1" || ev.SourceTenant != "demo" || ev.ReceivingTenant != "vet" || !ev.Hour.Equal(hour) ||
		!ev.FirstEventTime.Equal(hour.Add(time.Minute)) || !ev.LastEventTime.Equal(hour.Add(3*time.Minute)) {
		t.Fatalf("evidence %+v", ev)
	}

	env, err := Revoke(ctx, cl, serde, "AGR-demo-vet-1", "contract ended", "tester", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for _, revoked := rv.Revoked("AGR-demo-vet-1"); !revoked; _, revoked = rv.Revoked("AGR-demo-vet-1") {
		if time.Now().After(deadline) {
			t.Fatal("the revocation was not read within a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitEnvelope(ctx, t, brokers, serde, EventRevoked, func(e *schemas.Envelope) bool { return e.EventID == env.EventID && *e.Actor == "tester" })
	produce("after-a", hour.Add(4*time.Minute))
	produce("after-b", time.Now())
	waitFor(t, 30*time.Second, func() bool { return counter(t, metrics, app.Name, "revoked") == 2 })
	if n := countRecords(ctx, t, brokers, app.Target, 4, 2*time.Second); n != 3 {
		t.Fatalf("%d shared records after the revocation, want still 3", n)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countRecords reads topic from the start until it has want records or
// patience runs out, and returns how many it read.
func countRecords(ctx context.Context, t *testing.T, brokers []string, topic string, want int, patience time.Duration) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	n := 0
	for n < want && pctx.Err() == nil {
		n += cl.PollFetches(pctx).NumRecords()
	}
	return n
}

// waitEnvelope reads dataact.third_party.sharing until an envelope of type
// typ satisfies ok.
func waitEnvelope(ctx context.Context, t *testing.T, brokers []string, serde *schemas.Serde, typ string, ok func(*schemas.Envelope) bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.ThirdPartySharing), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	for pctx.Err() == nil {
		found := false
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var env schemas.Envelope
			if _, err := serde.Decode(ctx, r.Value, &env); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if env.EventType == typ && ok(&env) {
				found = true
			}
		})
		if found {
			return
		}
	}
	t.Fatalf("no %s record on %s", typ, topics.ThirdPartySharing)
}
