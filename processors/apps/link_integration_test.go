package apps

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationLinkedJoinShare runs a join of two tenants' devices
// linked by a registry label, as a share, on the embedded Kafka with a real
// device registry (devices.registry, registry.View): a weather company's
// station readings meet a ranch's collar fixes of the same paddock; the
// joined records belong to the ranch under the agreement, the hour's
// evidence counts them, and after the revocation nothing more is written.
func TestIntegrationLinkedJoinShare(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := registrytest.New(t)
	for _, d := range []registry.NewDevice{
		{Tenant: "weather", ID: "station-1", Type: "weather", Labels: map[string]string{"paddock": "north"}},
		{Tenant: "weather", ID: "station-2", Type: "weather", Labels: map[string]string{"paddock": "south"}},
		{Tenant: "ranch", ID: "cow-1", Type: "collar", Labels: map[string]string{"paddock": "north"}},
		{Tenant: "ranch", ID: "cow-2", Type: "collar", Labels: map[string]string{"paddock": "south"}},
	} {
		e.AddDevice(t, d)
	}
	if _, err := schemas.Register(ctx, e.SR, schemas.Topics()); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(e.Producer)
	for _, tp := range []string{topics.RawSensor, topics.RawGPS, topics.ThirdPartySharing} {
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	as, err := Parse("link.yaml", []byte(linkedShareApps))
	if err != nil {
		t.Fatal(err)
	}
	app := as[0]
	if err := EnsureTarget(ctx, adm, e.SR, cat.WithReplicationCap(1), app); err != nil {
		t.Fatal(err)
	}
	serde, err := NewSerde(e.SR, as)
	if err != nil {
		t.Fatal(err)
	}
	rv := NewRevocations([]kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, serde, devtest.Logger())
	metrics := prometheus.NewRegistry()
	p := New(app, serde, Config{Registerer: metrics, Log: devtest.Logger(), Revocations: rv, Labels: e.View, TickInterval: 200 * time.Millisecond})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	go func() { done <- rv.Run(rctx) }()
	go func() { done <- p.Run(rctx, groupkit.NewKafka(e.Brokers)) }()
	defer func() {
		stop()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()

	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour) // over: its evidence is due at once
	produce := func(topic, tenant, dev string, sec int, v any) {
		ts := hour.Add(time.Duration(sec) * time.Second)
		var rec any
		switch topic {
		case topics.RawSensor:
			r := reading(tenant, dev, "temperature", v.(float64), 0)
			r.EventID, r.TS, r.IngestedAt = dev+"-t"+time.Duration(sec*int(time.Second)).String(), ts, ts
			rec = r
		default:
			rec = &schemas.GPSFix{EventID: dev + "-g" + time.Duration(sec*int(time.Second)).String(), Tenant: tenant, DeviceID: dev, TS: ts, IngestedAt: ts,
				Lat: 47, Lon: 8, Source: "test", Attrs: map[string]string{}}
		}
		b, err := serde.Encode(ctx, topic, rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(tenant + "/" + dev), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(topics.RawSensor, "weather", "station-1", 0, 20.0)
	produce(topics.RawSensor, "weather", "station-1", 20, 22.0)
	produce(topics.RawSensor, "weather", "station-2", 5, 15.0)
	produce(topics.RawGPS, "ranch", "cow-1", 10, nil)
	produce(topics.RawGPS, "ranch", "cow-2", 10, nil)
	produce(topics.RawSensor, "weather", "station-1", 120, 25.0)
	produce(topics.RawSensor, "weather", "station-2", 120, 16.0)

	got := readJoined(ctx, t, e.Brokers, serde, app.Target, 2)
	if got["ranch/cow-1"] != 20 || got["ranch/cow-2"] != 15 {
		t.Fatalf("joined %v, want ranch/cow-1 20 and ranch/cow-2 15", got)
	}
	var ev Evidence
	waitEnvelope(ctx, t, e.Brokers, serde, EventEvidence, func(env *schemas.Envelope) bool {
		return json.Unmarshal([]byte(env.Payload), &ev) == nil && ev.Agreement == "AGR-rw" && ev.RecordsShared == 2
	})
	if ev.SourceTenant != "weather" || ev.ReceivingTenant != "ranch" || !ev.Hour.Equal(hour) {
		t.Fatalf("evidence %+v", ev)
	}

	if _, err := Revoke(ctx, e.Producer, serde, "AGR-rw", "season over", "tester", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() bool { _, r := rv.Revoked("AGR-rw"); return r })
	produce(topics.RawGPS, "ranch", "cow-1", 130, nil)
	produce(topics.RawSensor, "weather", "station-1", 300, 26.0)
	waitFor(t, 30*time.Second, func() bool { return counter(t, metrics, app.Name, "revoked") == 1 })
	if n := countRecords(ctx, t, e.Brokers, app.Target, 3, 2*time.Second); n != 2 {
		t.Fatalf("%d joined records after the revocation, want still 2", n)
	}
}

// readJoined reads want records of a join's target and returns, per key,
// the right record's value.
func readJoined(ctx context.Context, t *testing.T, brokers []string, serde *schemas.Serde, topic string, want int) map[string]float64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	got := map[string]float64{}
	n := 0
	for n < want && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			var rec schemas.AppRecord
			if _, err := serde.DecodeTopic(ctx, topic, r.Value, &rec); err != nil {
				t.Fatalf("decode: %v", err)
			}
			var p struct{ Right map[string]any }
			if err := json.Unmarshal([]byte(rec.Payload), &p); err != nil || p.Right == nil {
				t.Fatalf("payload %s: %v", rec.Payload, err)
			}
			if rec.Tenant != "ranch" || rec.SourceTenant != "weather" || rec.Agreement == nil || *rec.Agreement != "AGR-rw" {
				t.Fatalf("record %+v", rec)
			}
			got[string(r.Key)] = p.Right["value"].(float64)
			n++
		})
	}
	if n != want {
		t.Fatalf("%d records on %s, want %d", n, topic, want)
	}
	return got
}
