package alerts

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// stack is the embedded Kafka and registry of an integration test.
type stack struct {
	t           *testing.T
	brokers     []string
	serde       *schemas.Serde
	registryURL string
	cl          *kgo.Client
}

func newStack(t *testing.T, partitions int32) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short")
	}
	c := devtest.Kafka(t, kfake.SeedTopics(partitions, topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DLQ))
	_, url := devtest.Registry(t)
	serde, err := schemas.NewSerde(testRegistryAt(t, url))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, brokers: c.ListenAddrs(), serde: serde, registryURL: url}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...)) // default partitioner, like the bridge
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	s.cl = cl
	return s
}

// produce writes sensor readings to raw.sensor, key = device id.
func (s *stack) produce(rs ...*schemas.SensorReading) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for _, r := range rs {
		b, err := s.serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			s.t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topics.RawSensor, Key: []byte(r.DeviceID), Value: b})
	}
	if err := s.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
}

// start runs a processor until the returned stop function is called.
func (s *stack) start(opts ...Option) (stop func()) {
	s.t.Helper()
	_, stop = s.startP(opts...)
	return stop
}

// startP is start returning the processor too.
func (s *stack) startP(opts ...Option) (*Processor, func()) {
	s.t.Helper()
	all := append([]Option{WithSerde(s.serde), WithLogger(devtest.Logger())}, opts...)
	p, err := NewProcessor(s.brokers, all...)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					s.t.Errorf("processor: %v", err)
				}
			case <-time.After(60 * time.Second):
				s.t.Error("processor did not stop within 60s")
			}
		})
	}
	s.t.Cleanup(stop)
	return p, stop
}

// alertLog consumes alerts.events from the start in the background.
type alertLog struct {
	mu  sync.Mutex
	all []*schemas.Alert
}

func (s *stack) consumeAlerts() *alertLog {
	s.t.Helper()
	l := &alertLog{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.ConsumeTopics(topics.Alerts), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				var a schemas.Alert
				if _, err := s.serde.Decode(ctx, r.Value, &a); err != nil {
					s.t.Errorf("undecodable alert at offset %d: %v", r.Offset, err)
					return
				}
				if string(r.Key) != a.DeviceID {
					s.t.Errorf("alert key %q, want device id %q", r.Key, a.DeviceID)
				}
				l.mu.Lock()
				l.all = append(l.all, &a)
				l.mu.Unlock()
			})
		}
	}()
	s.t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return l
}

func (l *alertLog) snapshot() []*schemas.Alert {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*schemas.Alert(nil), l.all...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func count(as []*schemas.Alert, f func(*schemas.Alert) bool) int {
	n := 0
	for _, a := range as {
		if f(a) {
			n++
		}
	}
	return n
}

// TestIntegrationFeverFiresAndResolvesAcrossRestart: readings in raw.sensor
// → the fever alert fires on alerts.events; the processor is restarted
// mid-stream (state recovered from the group table) and the alert neither
// fires again nor is lost: it resolves once.
func TestIntegrationFeverFiresAndResolvesAcrossRestart(t *testing.T) {
	s := newStack(t, 4)
	log := s.consumeAlerts()
	base := time.Now().Add(-40 * time.Minute).Truncate(time.Minute)
	var sick, healthy []string
	for i := range 40 {
		sick = append(sick, fmt.Sprintf("cow-s%02d", i))
	}
	for i := range 10 {
		healthy = append(healthy, fmt.Sprintf("cow-h%02d", i))
	}
	reading := func(dev string, min int, v float64) *schemas.SensorReading {
		ts := base.Add(time.Duration(min) * time.Minute)
		return &schemas.SensorReading{
			EventID: fmt.Sprintf("%s-%d", dev, min), Tenant: "farm-a", DeviceID: dev, TS: ts, IngestedAt: time.Now(),
			Metric: "temperature", Value: v, Source: "test",
		}
	}
	// A reading every 10 s of event time per device.
	batch := func(from, to int, v float64) int {
		var rs []*schemas.SensorReading
		for m := from; m <= to; m++ {
			for sec := 0; sec < 60; sec += 10 {
				for _, d := range sick {
					r := reading(d, m, v)
					r.TS = r.TS.Add(time.Duration(sec) * time.Second)
					rs = append(rs, r)
				}
				for _, d := range healthy {
					r := reading(d, m, 38.6)
					r.TS = r.TS.Add(time.Duration(sec) * time.Second)
					rs = append(rs, r)
				}
			}
		}
		s.produce(rs...)
		return len(rs)
	}
	opts := []Option{WithRules(mustRules(t, feverOnly))}

	n := batch(0, 12, 40.1) // fires at minute 10
	p, stop := s.startP(opts...)
	firing := func(a *schemas.Alert) bool { return a.State == StateFiring }
	// Stop mid-stream: once 70 % of the backlog is consumed, just before
	// the fevers reach 10 minutes.
	waitFor(t, "70% of the backlog consumed", 60*time.Second, func() bool {
		return counterValue(p.metrics.records.WithLabelValues(topics.RawSensor)) >= 0.7*float64(n)
	})
	stop()
	t.Logf("stopped after %d of %d firings", count(log.snapshot(), firing), len(sick))

	batch(13, 16, 40.3) // still feverish while the processor is down
	stop2 := s.start(opts...)
	batch(17, 18, 39.0) // resolves at minute 17
	waitFor(t, "one resolution per sick device", 60*time.Second, func() bool {
		return count(log.snapshot(), func(a *schemas.Alert) bool { return a.State == StateResolved }) >= len(sick)
	})
	stop2()

	all := log.snapshot()
	for _, d := range sick {
		var f, r []*schemas.Alert
		for _, a := range all {
			if a.DeviceID != d {
				continue
			}
			if a.State == StateFiring {
				f = append(f, a)
			} else {
				r = append(r, a)
			}
		}
		if len(f) != 1 || len(r) != 1 {
			t.Errorf("%s: %d firing and %d resolved events, want 1 and 1", d, len(f), len(r))
			continue
		}
		if want := base.Add(10 * time.Minute); !f[0].FiredAt.Equal(want) {
			t.Errorf("%s fired at %v, want %v", d, f[0].FiredAt, want)
		}
		if r[0].AlertID != f[0].AlertID || !r[0].ResolvedAt.Equal(base.Add(17*time.Minute)) {
			t.Errorf("%s resolution %+v does not match firing %s", d, r[0], f[0].AlertID)
		}
	}
	if n := count(all, func(a *schemas.Alert) bool { return strings.HasPrefix(a.DeviceID, "cow-h") }); n != 0 {
		t.Errorf("%d alerts for healthy devices", n)
	}
}

// TestIntegrationOfflineTick: devices on every partition fall silent and
// their offline alerts fire from the wall-clock sweep through the loop
// topic, with no other record arriving; one device speaks again and its
// alert resolves.
func TestIntegrationOfflineTick(t *testing.T) {
	s := newStack(t, 4)
	log := s.consumeAlerts()
	rules := mustRules(t, `
include_defaults: false
rules:
  - name: offline
    kind: offline
    after: 2s
`)
	s.start(WithRules(rules), WithCheckInterval(200*time.Millisecond))
	var devices []string
	var rs []*schemas.SensorReading
	for i := range 12 {
		d := fmt.Sprintf("tracker-%02d", i)
		devices = append(devices, d)
		rs = append(rs, &schemas.SensorReading{Tenant: "farm-a", DeviceID: d, TS: time.Now(), IngestedAt: time.Now(), Metric: "battery", Value: 80, Source: "test"})
	}
	s.produce(rs...)
	waitFor(t, "every device offline", 60*time.Second, func() bool {
		seen := map[string]bool{}
		for _, a := range log.snapshot() {
			if a.State == StateFiring && a.Rule == "offline" {
				seen[a.DeviceID] = true
			}
		}
		return len(seen) == len(devices)
	})
	s.produce(&schemas.SensorReading{Tenant: "farm-a", DeviceID: devices[3], TS: time.Now(), IngestedAt: time.Now(), Metric: "battery", Value: 79, Source: "test"})
	waitFor(t, devices[3]+" resolved", 60*time.Second, func() bool {
		return count(log.snapshot(), func(a *schemas.Alert) bool { return a.DeviceID == devices[3] && a.State == StateResolved }) == 1
	})
	for _, d := range devices {
		if n := count(log.snapshot(), func(a *schemas.Alert) bool { return a.DeviceID == d && a.State == StateFiring }); n > 2 {
			t.Errorf("%s fired %d times", d, n)
		}
	}
}

// TestIntegrationTwoInstancesRebalance: two instances split the partitions;
// one stops mid-stream, the other takes its partitions over (restoring
// their table) and every fever still fires once and resolves once.
func TestIntegrationTwoInstancesRebalance(t *testing.T) {
	s := newStack(t, 4)
	log := s.consumeAlerts()
	base := time.Now().Add(-40 * time.Minute).Truncate(time.Minute)
	var sick []string
	for i := range 12 {
		sick = append(sick, fmt.Sprintf("heifer-%02d", i))
	}
	batch := func(from, to int, v float64) {
		var rs []*schemas.SensorReading
		for m := from; m <= to; m++ {
			for _, d := range sick {
				ts := base.Add(time.Duration(m) * time.Minute)
				rs = append(rs, &schemas.SensorReading{Tenant: "farm-b", DeviceID: d, TS: ts, IngestedAt: time.Now(), Metric: "temperature", Value: v, Source: "test"})
			}
		}
		s.produce(rs...)
	}
	opts := []Option{WithRules(mustRules(t, feverOnly))}
	pa, stopA := s.startP(opts...)
	pb, stopB := s.startP(opts...)
	adm := kadm.NewClient(s.cl)
	waitFor(t, "both instances in the group with partitions", 90*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, string(Group))
		if err != nil {
			return false
		}
		g := gs[string(Group)]
		if g.State != "Stable" || len(g.Members) != 2 {
			return false
		}
		for _, m := range g.Members {
			ca, ok := m.Assigned.AsConsumer()
			if !ok || len(ca.Topics) == 0 {
				return false
			}
		}
		return true
	})
	batch(0, 12, 40.0)
	waitFor(t, "every fever firing", 90*time.Second, func() bool {
		return count(log.snapshot(), func(a *schemas.Alert) bool { return a.State == StateFiring }) >= len(sick)
	})
	for name, p := range map[string]*Processor{"A": pa, "B": pb} {
		if counterValue(p.metrics.records.WithLabelValues(topics.RawSensor)) == 0 {
			t.Errorf("instance %s processed nothing: the partitions were not split", name)
		}
	}
	stopA()
	batch(13, 16, 40.1)
	batch(17, 17, 38.9)
	waitFor(t, "every fever resolved by the remaining instance", 120*time.Second, func() bool {
		return count(log.snapshot(), func(a *schemas.Alert) bool { return a.State == StateResolved }) >= len(sick)
	})
	stopB()
	all := log.snapshot()
	for _, d := range sick {
		f := count(all, func(a *schemas.Alert) bool { return a.DeviceID == d && a.State == StateFiring })
		r := count(all, func(a *schemas.Alert) bool { return a.DeviceID == d && a.State == StateResolved })
		if f != 1 || r != 1 {
			t.Errorf("%s: %d firing, %d resolved; want 1 and 1", d, f, r)
		}
	}
}

// TestIntegrationDevStage runs the `drover dev` stage on the embedded
// Kafka and registry: a fever fires with the default rules, and cancelling
// the context stops the stage cleanly.
func TestIntegrationDevStage(t *testing.T) {
	s := newStack(t, 2)
	log := s.consumeAlerts()
	url := s.registryURL
	stage := DevStage()
	if stage.Name != "alerts" {
		t.Errorf("stage name %q", stage.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(ctx, devstack.Endpoints{KafkaBrokers: strings.Join(s.brokers, ","), SchemaRegistryURL: url}, devtest.Logger())
	}()
	base := time.Now().Add(-20 * time.Minute)
	var rs []*schemas.SensorReading
	for m := 0; m <= 10; m++ {
		ts := base.Add(time.Duration(m) * time.Minute)
		rs = append(rs, &schemas.SensorReading{Tenant: "farm-a", DeviceID: "cow-dev", TS: ts, IngestedAt: time.Now(), Metric: "temperature", Value: 40.0, Source: "test"})
	}
	s.produce(rs...)
	waitFor(t, "the default fever rule firing", 60*time.Second, func() bool {
		return count(log.snapshot(), func(a *schemas.Alert) bool { return a.Rule == "fever" && a.State == StateFiring }) == 1
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stage: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("stage did not stop within 60s")
	}
}

// TestIntegrationRunTwice: drover process restarts a failed group by
// calling Run again on the same Processor; a goka processor runs only once,
// so Run must build a fresh one and the group must work again.
func TestIntegrationRunTwice(t *testing.T) {
	s := newStack(t, 2)
	p, err := NewProcessor(s.brokers, WithSerde(s.serde), WithLogger(devtest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		deadline := time.Now().Add(60 * time.Second)
		for p.Ready(ctx) != nil {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: not ready within 60s", run)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", run, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("run %d did not stop", run)
		}
	}
}
