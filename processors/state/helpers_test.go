package state

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/tester"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// fakeClock is a settable wall clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// newSerde returns a serde on a fresh embedded registry with drover's
// schemas registered.
func newSerde(t testing.TB) (*schemas.Serde, *sr.Client) {
	t.Helper()
	_, url := devtest.Registry(t)
	return devtest.Schemas(t, url)
}

// testGroup is the state graph and the alert relay running on goka's
// tester.
type testGroup struct {
	p     *Processor
	proc  *goka.Processor
	tt    *tester.Tester
	out   *tester.QueueTracker
	clock *fakeClock
	reg   *prometheus.Registry
}

func startTester(t *testing.T, cfg Config, serde *schemas.Serde) *testGroup {
	t.Helper()
	clock := &fakeClock{now: t0}
	if cfg.Clock == nil {
		cfg.Clock = clock
	}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	cfg.TickInterval = -1
	p, err := New(serde, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tt := tester.New(t)
	proc, err := goka.NewProcessor(nil, p.Graph(), goka.WithTester(tt), goka.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	relay, err := goka.NewProcessor(nil, p.RelayGraph(), goka.WithTester(tt), goka.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	p.Proc.Store(proc)
	p.Running.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- proc.Run(ctx) }()
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("processor: %v", err)
			}
		}
	})
	return &testGroup{p: p, proc: proc, tt: tt, out: tt.NewQueueTracker(string(Stream)), clock: clock, reg: reg}
}

// t0 is a minute boundary used as the base of event and wall time.
var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func (g *testGroup) sensor(device, metric string, ts time.Time, v float64) {
	g.tt.Consume(topics.RawSensor, device, &schemas.SensorReading{
		EventID: device + ts.String() + metric, Tenant: "farm", DeviceID: device, TS: ts, IngestedAt: ts.Add(time.Second),
		Metric: metric, Value: v, Source: "test", Attrs: map[string]string{},
	})
}

func (g *testGroup) gps(device string, ts time.Time, lat, lon float64) {
	g.tt.Consume(topics.RawGPS, device, &schemas.GPSFix{
		EventID: device + ts.String(), Tenant: "farm", DeviceID: device, TS: ts, IngestedAt: ts,
		Lat: lat, Lon: lon, Source: "test", Attrs: map[string]string{},
	})
}

// states drains the emitted states.
func (g *testGroup) states(t *testing.T) []*schemas.DeviceState {
	t.Helper()
	var out []*schemas.DeviceState
	for {
		_, v, ok := g.out.Next()
		if !ok {
			return out
		}
		ds, ok := v.(*schemas.DeviceState)
		if !ok {
			t.Fatalf("output value is %T", v)
		}
		out = append(out, ds)
	}
}

// last drains the emitted states and returns the last one.
func (g *testGroup) last(t *testing.T) *schemas.DeviceState {
	t.Helper()
	all := g.states(t)
	if len(all) == 0 {
		t.Fatal("no state emitted")
	}
	return all[len(all)-1]
}

func (g *testGroup) tick(t *testing.T, now time.Time) {
	t.Helper()
	g.clock.Set(now)
	if _, err := g.p.Tick(context.Background()); err != nil {
		t.Fatalf("tick: %v", err)
	}
	g.tt.Catchup()
}

// counterValue reads a counter's value.
func counterValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type nopLogger struct{}

func (nopLogger) Print(...interface{})          {}
func (nopLogger) Println(...interface{})        {}
func (nopLogger) Printf(string, ...interface{}) {}

// serdeFor returns a serde on the registry at url with drover's schemas
// registered.
func serdeFor(t testing.TB, url string) *schemas.Serde {
	t.Helper()
	s, _ := devtest.Schemas(t, url)
	return s
}
