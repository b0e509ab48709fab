package apps

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationShareRedelivered runs the example share on the embedded
// Kafka, stops it, rewinds its group's committed offsets to the start (what
// a crash before the offset commit, or a rebalance, leaves behind: goka
// delivers the records again) and starts it again: the hour's evidence
// counts each shared record once, and the target holds each record's
// event id once per delivery, the same id, which app_records (keyed by it)
// stores once.
func TestIntegrationShareRedelivered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, reg, cl, adm, cat := kafkaEnv(ctx, t, 3, topics.RawSensor, topics.ThirdPartySharing)
	as, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	app := as[1] // vet-share
	if err := EnsureTarget(ctx, adm, reg, cat, app); err != nil {
		t.Fatal(err)
	}
	serde, err := NewSerde(reg, as)
	if err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	var now atomic.Int64 // the wall clock of the evidence ticks: inside the hour, so nothing is due
	now.Store(hour.Add(10 * time.Minute).UnixMilli())
	clock := groupkit.ClockFunc(func() time.Time { return time.UnixMilli(now.Load()) })
	metrics := prometheus.NewRegistry()
	run := func() (stop func()) {
		p := New(app, serde, Config{Registerer: metrics, Log: devtest.Logger(), Clock: clock, TickInterval: 200 * time.Millisecond})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(rctx, groupkit.NewKafka(brokers)) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	stop := run()
	const n = 6
	for i := range n {
		r := reading("demo", "collar-"+string(rune('1'+i%3)), "temperature", 39, 0)
		r.EventID, r.TS, r.IngestedAt = "rd-"+string(rune('a'+i)), hour.Add(time.Duration(i+1)*time.Minute), hour
		b, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("demo/" + r.DeviceID), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if got := countRecords(ctx, t, brokers, app.Target, n, 30*time.Second); got != n {
		t.Fatalf("%d shared records, want %d", got, n)
	}
	waitFor(t, 30*time.Second, func() bool { return counter(t, metrics, app.Name, "out") == n })
	time.Sleep(time.Second) // the loop marks counted and committed
	stop()

	// Rewind the group: every record of raw.sensor is delivered again.
	rewind := kadm.Offsets{}
	ends, err := adm.ListEndOffsets(ctx, topics.RawSensor)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) { rewind.AddOffset(o.Topic, o.Partition, 0, -1) })
	if _, err := adm.CommitOffsets(ctx, app.Group(), rewind); err != nil {
		t.Fatal(err)
	}
	stop = run()
	defer stop()
	if got := countRecords(ctx, t, brokers, app.Target, 2*n, 30*time.Second); got != 2*n {
		t.Fatalf("%d records on the target after the rewind, want %d (each delivered again)", got, 2*n)
	}
	waitFor(t, 30*time.Second, func() bool { return counter(t, metrics, app.Name, "duplicates") == n })
	now.Store(time.Now().UnixMilli()) // the hour is over: its evidence is due
	var ev Evidence
	waitEnvelope(ctx, t, brokers, serde, EventEvidence, func(env *schemas.Envelope) bool {
		return json.Unmarshal([]byte(env.Payload), &ev) == nil && ev.Hour.Equal(hour)
	})
	if ev.RecordsShared != n {
		t.Fatalf("evidence after the redelivery: %d records shared, want %d", ev.RecordsShared, n)
	}
	ids := distinctIDs(ctx, t, brokers, serde, app.Target, 2*n)
	if len(ids) != n {
		t.Fatalf("%d distinct event ids on the target, want %d", len(ids), n)
	}
}

func distinctIDs(ctx context.Context, t *testing.T, brokers []string, serde *schemas.Serde, topic string, want int) map[string]int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ids, n := map[string]int{}, 0
	for n < want && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var rec schemas.AppRecord
			if _, err := serde.DecodeTopic(ctx, topic, r.Value, &rec); err != nil {
				t.Fatalf("decode: %v", err)
			}
			ids[rec.EventID]++
			n++
		})
	}
	return ids
}
