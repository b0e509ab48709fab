package alerts

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka/tester"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// fakeClock is a settable wall clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)

// testRegistry starts the embedded registry and registers the schemas the
// group uses.
func testRegistry(t testing.TB) *sr.Client {
	t.Helper()
	_, url := devtest.Registry(t)
	return testRegistryAt(t, url)
}

// testRegistryAt registers the group's schemas in the registry at url.
func testRegistryAt(t testing.TB, url string) *sr.Client {
	t.Helper()
	_, cl := devtest.Schemas(t, url, topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DLQ)
	return cl
}

func testSerde(t testing.TB) *schemas.Serde {
	t.Helper()
	s, err := schemas.NewSerde(testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRules(t testing.TB, yml string) *RuleSet {
	t.Helper()
	rs, err := ParseRules("test.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs
}

// harness runs the processor on goka's tester.
type harness struct {
	t      *testing.T
	tt     *tester.Tester
	p      *Processor
	clock  *fakeClock
	alerts *tester.QueueTracker
	dlq    *tester.QueueTracker
	reg    *prometheus.Registry
}

func newHarness(t *testing.T, rules string, opts ...Option) *harness {
	t.Helper()
	h := &harness{t: t, tt: tester.New(t), clock: &fakeClock{now: t0}, reg: prometheus.NewRegistry()}
	all := []Option{
		WithTester(h.tt), WithSerde(testSerde(t)), WithClock(h.clock),
		WithRegisterer(h.reg), WithLogger(devtest.Logger()),
	}
	if rules != "" {
		all = append(all, WithRules(mustRules(t, rules)))
	}
	p, err := NewProcessor(nil, append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
	h.alerts = h.tt.NewQueueTracker(topics.Alerts)
	h.dlq = h.tt.NewQueueTracker(topics.DLQ)
	return h
}

type reading struct {
	tenant, device, metric string
	value                  float64
	ts                     time.Time
	replayed               bool
}

// sensor feeds one reading, ingested now (the fake clock).
func (h *harness) sensor(r reading) {
	h.t.Helper()
	if r.tenant == "" {
		r.tenant = "farm-a"
	}
	h.tt.Consume(topics.RawSensor, identity.Key(r.tenant, r.device), &schemas.SensorReading{
		EventID: "e-" + r.ts.Format(time.RFC3339Nano), Tenant: r.tenant, DeviceID: r.device, TS: r.ts,
		IngestedAt: h.clock.Now(), Metric: r.metric, Value: r.value, Source: "test", Replayed: r.replayed,
	})
}

func (h *harness) gps(tenant, device string, lat, lon float64, ts time.Time) {
	h.t.Helper()
	if tenant == "" {
		tenant = "farm-a"
	}
	h.tt.Consume(topics.RawGPS, identity.Key(tenant, device), &schemas.GPSFix{
		EventID: "g-" + ts.Format(time.RFC3339Nano), Tenant: tenant, DeviceID: device, TS: ts,
		IngestedAt: h.clock.Now(), Lat: lat, Lon: lon, Source: "test",
	})
}

// drain returns the alerts emitted since the last call.
func (h *harness) drain() []*schemas.Alert {
	h.t.Helper()
	var out []*schemas.Alert
	for {
		_, v, ok := h.alerts.Next()
		if !ok {
			return out
		}
		out = append(out, v.(*schemas.Alert))
	}
}

// sweep runs one offline sweep and lets the processor consume the ticks.
func (h *harness) sweep() int {
	h.t.Helper()
	n, err := h.p.Sweep(context.Background())
	if err != nil {
		h.t.Fatalf("sweep: %v", err)
	}
	h.tt.Catchup()
	return n
}

func (h *harness) counter(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func states(as []*schemas.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Rule + ":" + a.State
	}
	return out
}
