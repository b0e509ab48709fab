package apps

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/tester"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestMain(m *testing.M) { devtest.Main(m) }

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

// startApp runs the app of yaml on goka's tester, with drover's schemas
// and the app's target schema registered on an embedded registry.
func startApp(t *testing.T, yaml string) (*tester.Tester, *tester.QueueTracker, *prometheus.Registry) {
	t.Helper()
	g := startGroup(t, yaml, Config{})
	return g.tt, g.out, g.reg
}

type testGroup struct {
	p   *Processor
	tt  *tester.Tester
	out *tester.QueueTracker
	ev  *tester.QueueTracker // share apps: topics.ThirdPartySharing
	reg *prometheus.Registry
}

func startGroup(t *testing.T, yaml string, cfg Config) *testGroup {
	t.Helper()
	as, err := Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	_, url := devtest.Registry(t)
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, cl, schemas.Topics()); err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.Register(ctx, cl, []string{as[0].Target}, schemas.WithSchemas(map[string]string{as[0].Target: schemas.AppRecordSchema()})); err != nil {
		t.Fatal(err)
	}
	serde, err := NewSerde(cl, as)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	p := New(as[0], serde, cfg)
	tt := tester.New(t)
	proc, err := goka.NewProcessor(nil, p.Graph(), goka.WithTester(tt))
	if err != nil {
		t.Fatal(err)
	}
	p.Proc.Store(proc)
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proc.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	g := &testGroup{p: p, tt: tt, out: tt.NewQueueTracker(as[0].Target), reg: reg}
	if as[0].Share != nil {
		g.ev = tt.NewQueueTracker(topics.ThirdPartySharing)
	}
	return g
}

func reading(tenant, device, metric string, v float64, i int) *schemas.SensorReading {
	return &schemas.SensorReading{EventID: device + "-" + metric + "-" + string(rune('a'+i)), Tenant: tenant, DeviceID: device,
		TS: t0.Add(time.Duration(i) * time.Second), IngestedAt: t0.Add(time.Duration(i)*time.Second + time.Millisecond),
		Metric: metric, Value: v, Source: "test", Attrs: map[string]string{"site": "north"}}
}

func drain(t *testing.T, q *tester.QueueTracker) (keys []string, out []*schemas.AppRecord) {
	t.Helper()
	for {
		k, v, ok := q.Next()
		if !ok {
			return keys, out
		}
		r, ok := v.(*schemas.AppRecord)
		if !ok {
			t.Fatalf("output is %T", v)
		}
		keys, out = append(keys, k), append(out, r)
	}
}

func TestFilterAndProjection(t *testing.T) {
	tt, q, reg := startApp(t, `
apps:
  - name: cold
    source: {topics: [raw.sensor]}
    query: |
      SELECT device_id, value AS celsius, round(value * 9 / 5 + 32, 1) AS fahrenheit, attrs.site
      FROM raw.sensor
      WHERE metric = 'temperature' AND value < 4
    target: apps.cold
`)
	tt.Consume(topics.RawSensor, "farm/cow-1", reading("farm", "cow-1", "temperature", 3.5, 0))
	tt.Consume(topics.RawSensor, "farm/cow-1", reading("farm", "cow-1", "temperature", 38.5, 1)) // too warm
	tt.Consume(topics.RawSensor, "farm/cow-2", reading("farm", "cow-2", "humidity", 2, 2))       // other metric
	tt.Consume(topics.RawSensor, "other/cow-1", reading("other", "cow-1", "temperature", -1, 3))
	keys, out := drain(t, q)
	if len(out) != 2 || keys[0] != "farm/cow-1" || keys[1] != "other/cow-1" {
		t.Fatalf("keys %v, %d records", keys, len(out))
	}
	r := out[0]
	var payload map[string]any
	if err := json.Unmarshal([]byte(r.Payload), &payload); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"device_id": "cow-1", "celsius": 3.5, "fahrenheit": 38.3, "site": "north"}
	if len(payload) != len(want) {
		t.Fatalf("payload %v, want %v", payload, want)
	}
	for k, v := range want {
		if payload[k] != v {
			t.Errorf("payload[%s] = %v, want %v", k, payload[k], v)
		}
	}
	if r.App != "cold" || r.Tenant != "farm" || r.SourceTenant != "farm" || r.DeviceID != "cow-1" || !r.TS.Equal(t0) ||
		r.SourceTopic != topics.RawSensor || len(r.SourceEventIDs) != 1 || r.SourceEventIDs[0] != "cow-1-temperature-a" || r.Agreement != nil {
		t.Fatalf("record %+v", r)
	}
	if r.EventID != EventID("cold", topics.RawSensor, "cow-1-temperature-a") || out[1].EventID == r.EventID {
		t.Fatalf("event ids %s, %s", r.EventID, out[1].EventID)
	}
	// A replay of the same source record gives the same id.
	tt.Consume(topics.RawSensor, "farm/cow-1", reading("farm", "cow-1", "temperature", 3.5, 0))
	if _, again := drain(t, q); len(again) != 1 || again[0].EventID != r.EventID || again[0].Payload != r.Payload {
		t.Fatalf("replay: %+v", again)
	}
	for outcome, want := range map[string]float64{"in": 5, "out": 3, "filtered": 2, "skipped": 0, "errors": 0, "bad": 0} {
		if got := counter(t, reg, "cold", outcome); got != want {
			t.Errorf("%s = %v, want %v", outcome, got, want)
		}
	}
}

func TestShareTenantDevicesAndBadInput(t *testing.T) {
	tt, q, reg := startApp(t, `
apps:
  - name: vet
    source:
      topics: [raw.sensor]
      tenant: demo
      devices: collar-*
    query: SELECT * FROM * WHERE value * 1 > 0
    target: apps.vet
    share: {tenant: vet, agreement: AGR-7}
`)
	tt.Consume(topics.RawSensor, "demo/collar-1", reading("demo", "collar-1", "temperature", 39, 0))
	tt.Consume(topics.RawSensor, "demo/gate-1", reading("demo", "gate-1", "temperature", 39, 1))       // device pattern
	tt.Consume(topics.RawSensor, "other/collar-1", reading("other", "collar-1", "temperature", 39, 2)) // other tenant
	tt.Consume(topics.RawSensor, "demo/collar-2", []byte("not avro"))                                  // undecodable
	_, out := drain(t, q)
	if len(out) != 1 {
		t.Fatalf("%d records, want 1", len(out))
	}
	r := out[0]
	if r.Tenant != "vet" || r.SourceTenant != "demo" || r.Agreement == nil || *r.Agreement != "AGR-7" {
		t.Fatalf("record %+v", r)
	}
	var payload map[string]any
	if err := json.Unmarshal([]byte(r.Payload), &payload); err != nil || payload["metric"] != "temperature" || payload["event_id"] != "collar-1-temperature-a" {
		t.Fatalf("SELECT * payload %v (%v)", payload, err)
	}
	for outcome, want := range map[string]float64{"in": 4, "out": 1, "skipped": 2, "bad": 1} {
		if got := counter(t, reg, "vet", outcome); got != want {
			t.Errorf("%s = %v, want %v", outcome, got, want)
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, app, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "drover_app_records_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var a, o string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "app":
					a = l.GetValue()
				case "outcome":
					o = l.GetValue()
				}
			}
			if a == app && o == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no drover_app_records_total{app=%q,outcome=%q}", app, outcome)
	return 0
}
