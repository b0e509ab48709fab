package alerts

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lovoo/goka/tester"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

const feverOnly = `
include_defaults: false
rules:
  - name: fever
    kind: threshold
    metric: temperature
    op: ">"
    threshold: 39.5
    for: 10m
    hysteresis: 0.3
    severity: critical
`

func TestFeverLifecycle(t *testing.T) {
	h := newHarness(t, "") // the embedded defaults: fever is one of them
	min := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	feed := func(m int, v float64) []*schemas.Alert {
		h.clock.Set(min(m).Add(2 * time.Second))
		h.sensor(reading{device: "cow-1", metric: "temperature", value: v, ts: min(m)})
		return h.drain()
	}
	steps := []struct {
		name  string
		min   int
		value float64
		want  []string
	}{
		{"above, pending", 0, 39.6, nil},
		{"still pending at 5 min", 5, 39.8, nil},
		{"9 min: not yet", 9, 39.7, nil},
		{"10 min: fires", 10, 39.9, []string{"fever:firing"}},
		{"still above: no duplicate", 11, 40.1, nil},
		{"in the hysteresis band: stays active", 12, 39.3, nil},
		{"at the resolve level: stays active", 13, 39.2, nil},
		{"below 39.2: resolves", 14, 39.1, []string{"fever:resolved"}},
		{"normal", 15, 38.6, nil},
	}
	var fired *schemas.Alert
	for _, s := range steps {
		got := feed(s.min, s.value)
		if !slices.Equal(states(got), s.want) {
			t.Fatalf("%s: got %v, want %v", s.name, states(got), s.want)
		}
		for _, a := range got {
			switch a.State {
			case StateFiring:
				fired = a
				if want := AlertID("fever", "farm-a/cow-1", min(10)); a.AlertID != want {
					t.Errorf("alert id %s, want %s", a.AlertID, want)
				}
				if !a.FiredAt.Equal(min(10)) || !a.TS.Equal(min(10)) || a.ResolvedAt != nil {
					t.Errorf("firing times: fired_at %v ts %v resolved_at %v", a.FiredAt, a.TS, a.ResolvedAt)
				}
				if a.Severity != SeverityCritical || a.Kind != "threshold" || a.Tenant != "farm-a" || a.DeviceID != "cow-1" {
					t.Errorf("firing fields: %+v", a)
				}
				if a.Value == nil || *a.Value != 39.9 || a.Threshold == nil || *a.Threshold != 39.5 {
					t.Errorf("value/threshold: %v/%v", a.Value, a.Threshold)
				}
				if a.Message == "" {
					t.Error("empty message")
				}
			case StateResolved:
				if fired == nil || a.AlertID != fired.AlertID {
					t.Errorf("resolved id %s does not match firing", a.AlertID)
				}
				if a.ResolvedAt == nil || !a.ResolvedAt.Equal(min(14)) || !a.TS.Equal(min(14)) || !a.FiredAt.Equal(min(10)) {
					t.Errorf("resolved times: %+v", a)
				}
				if a.Value == nil || *a.Value != 39.1 {
					t.Errorf("resolved value %v", a.Value)
				}
			}
		}
	}
	if got := h.counter("drover_alerts_fired_total", map[string]string{"rule": "fever"}); got != 1 {
		t.Errorf("fired metric %v, want 1", got)
	}
	if got := h.counter("drover_alerts_resolved_total", map[string]string{"rule": "fever"}); got != 1 {
		t.Errorf("resolved metric %v, want 1", got)
	}
	// A new fever is a new alert with a new id.
	feed(20, 39.6)
	got := feed(30, 39.6)
	if len(got) != 1 || got[0].State != StateFiring || got[0].AlertID == fired.AlertID {
		t.Fatalf("second fever: %v", states(got))
	}
}

func TestThresholdDurationResetsWhenConditionBreaks(t *testing.T) {
	h := newHarness(t, feverOnly)
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, r := range []struct {
		m int
		v float64
	}{{0, 39.6}, {6, 39.6}, {7, 39.4}, {8, 39.6}, {17, 39.7}} {
		h.clock.Set(at(r.m))
		h.sensor(reading{device: "cow-2", metric: "temperature", value: r.v, ts: at(r.m)})
	}
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("fired although the condition broke at 7 min: %v", states(got))
	}
	h.clock.Set(at(18))
	h.sensor(reading{device: "cow-2", metric: "temperature", value: 39.7, ts: at(18)})
	got := h.drain()
	if len(got) != 1 || !got[0].FiredAt.Equal(at(18)) {
		t.Fatalf("want one firing at 18 min (10 min after 8), got %v", got)
	}
}

func TestRuleKinds(t *testing.T) {
	rules := `
include_defaults: false
rules:
  - name: temp-rise
    kind: rate
    metric: temperature
    op: ">"
    threshold: 0.5
    hysteresis: 0.3
  - name: low-battery
    kind: battery
  - name: pasture
    kind: geofence
    trigger: leave
    hysteresis: 20
    polygon: [[47.0, 8.0], [47.0, 8.01], [47.01, 8.01], [47.01, 8.0]]
  - name: road
    kind: geofence
    trigger: enter
    polygon: [[47.02, 8.0], [47.02, 8.01], [47.03, 8.01], [47.03, 8.0]]
`
	type step struct {
		sensor *reading
		gps    *[2]float64
		want   []string
	}
	r := func(metric string, v float64) *reading { return &reading{metric: metric, value: v} }
	g := func(lat, lon float64) *[2]float64 { return &[2]float64{lat, lon} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"rate of change per minute", []step{
			{sensor: r("temperature", 38.5)},
			{sensor: r("temperature", 38.7)},                                     // +0.2/min
			{sensor: r("temperature", 39.5), want: []string{"temp-rise:firing"}}, // +0.8/min
			{sensor: r("temperature", 39.9)},                                     // +0.4/min: in band
			{sensor: r("temperature", 39.9), want: []string{"temp-rise:resolved"}},
		}},
		{"low battery with default threshold and hysteresis", []step{
			{sensor: r("battery", 35)},
			{sensor: r("battery", 19), want: []string{"low-battery:firing"}},
			{sensor: r("battery", 12)},
			{sensor: r("battery", 24)},
			{sensor: r("battery", 26), want: []string{"low-battery:resolved"}},
		}},
		{"geofence leave and enter", []step{
			{gps: g(47.005, 8.005)},
			{gps: g(47.0125, 8.005), want: []string{"pasture:firing"}},
			{gps: g(47.0099, 8.005)}, // back inside but within 20 m of the edge
			{gps: g(47.009, 8.005), want: []string{"pasture:resolved"}},
			{gps: g(47.025, 8.005), want: []string{"pasture:firing", "road:firing"}},
			{gps: g(47.005, 8.005), want: []string{"pasture:resolved", "road:resolved"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, rules)
			for i, s := range tc.steps {
				ts := t0.Add(time.Duration(i) * time.Minute)
				h.clock.Set(ts)
				if s.sensor != nil {
					rd := *s.sensor
					rd.device, rd.ts = "cow-7", ts
					h.sensor(rd)
				} else {
					h.gps("", "cow-7", s.gps[0], s.gps[1], ts)
				}
				got := states(h.drain())
				slices.Sort(got)
				if !slices.Equal(got, s.want) {
					t.Fatalf("step %d: got %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

func TestOfflineByWallClock(t *testing.T) {
	h := newHarness(t, `
include_defaults: false
rules:
  - name: offline
    kind: offline
    after: 30m
    severity: warning
`)
	h.sensor(reading{device: "cow-3", metric: "temperature", value: 38.5, ts: t0})
	h.sensor(reading{device: "cow-4", metric: "temperature", value: 38.5, ts: t0})
	h.clock.Add(10 * time.Minute)
	h.sensor(reading{device: "cow-4", metric: "temperature", value: 38.5, ts: t0.Add(10 * time.Minute)})

	h.clock.Set(t0.Add(29 * time.Minute))
	if n := h.sweep(); n != 0 {
		t.Fatalf("sweep before the deadline sent %d ticks", n)
	}
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("alerts before the deadline: %v", states(got))
	}
	h.clock.Set(t0.Add(30*time.Minute + 15*time.Second)) // cow-3 overdue, cow-4 not
	if n := h.sweep(); n != 1 {
		t.Fatalf("sweep sent %d ticks, want 1 (cow-3)", n)
	}
	got := h.drain()
	if len(got) != 1 || got[0].DeviceID != "cow-3" || got[0].State != StateFiring || got[0].Kind != "offline" {
		t.Fatalf("want cow-3 offline firing, got %+v", got)
	}
	if !got[0].FiredAt.Equal(t0.Add(30*time.Minute)) || got[0].Value != nil || got[0].Threshold != nil {
		t.Errorf("offline firing: fired_at %v (want the deadline), value %v, threshold %v", got[0].FiredAt, got[0].Value, got[0].Threshold)
	}
	id := got[0].AlertID
	// Still silent: the sweep skips active alerts; a stray tick does not duplicate.
	h.clock.Add(time.Minute)
	if n := h.sweep(); n != 0 {
		t.Errorf("sweep re-sent %d ticks for an active offline alert", n)
	}
	h.tt.Consume(string(Loop), "cow-3", &tick{At: h.clock.Now()})
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("duplicate offline alert: %v", states(got))
	}
	// cow-4 passes its own deadline.
	h.clock.Set(t0.Add(41 * time.Minute))
	h.sweep()
	if got := h.drain(); len(got) != 1 || got[0].DeviceID != "cow-4" {
		t.Fatalf("want cow-4 offline, got %v", got)
	}
	// cow-3 speaks again: resolved, same id.
	h.sensor(reading{device: "cow-3", metric: "temperature", value: 38.4, ts: h.clock.Now()})
	got = h.drain()
	if len(got) != 1 || got[0].State != StateResolved || got[0].AlertID != id || got[0].ResolvedAt == nil || !got[0].ResolvedAt.Equal(h.clock.Now()) {
		t.Fatalf("want cow-3 offline resolved with id %s, got %+v", id, got)
	}
	// A replayed record is not the device speaking.
	h.tt.Consume(topics.RawSensor, "cow-4", &schemas.SensorReading{Tenant: "farm-a", DeviceID: "cow-4", TS: t0, IngestedAt: h.clock.Now(), Metric: "temperature", Value: 38, Replayed: true})
	if got := h.drain(); len(got) != 0 {
		t.Fatalf("replayed record resolved offline: %v", states(got))
	}
}

func TestReplayedAndOldDataDoNotAlert(t *testing.T) {
	tests := []struct {
		name     string
		opts     []Option
		replayed bool
		age      time.Duration // event time behind the wall clock
		want     int
	}{
		{name: "replayed", replayed: true, want: 0},
		{name: "older than the horizon", age: 2 * time.Hour, want: 0},
		{name: "within the horizon", age: 30 * time.Minute, want: 1},
		{name: "older than a custom horizon", age: 30 * time.Minute, opts: []Option{WithHorizon(10 * time.Minute)}, want: 0},
		{name: "replayed, alerting on replay", replayed: true, opts: []Option{AlertOnReplayed(true)}, want: 1},
		{name: "old, alerting on replay", age: 48 * time.Hour, opts: []Option{AlertOnReplayed(true)}, want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, feverOnly, tc.opts...)
			for m := 0; m <= 20; m += 2 {
				ts := t0.Add(time.Duration(m) * time.Minute)
				h.clock.Set(ts.Add(tc.age))
				h.sensor(reading{device: "cow-5", metric: "temperature", value: 40.2, ts: ts, replayed: tc.replayed})
			}
			if got := h.drain(); len(got) != tc.want {
				t.Fatalf("got %d alerts %v, want %d", len(got), states(got), tc.want)
			}
			if tc.want == 0 {
				reason := "old"
				if tc.replayed {
					reason = "replayed"
				}
				if n := h.counter("drover_alerts_suppressed_records_total", map[string]string{"reason": reason}); n != 11 {
					t.Errorf("suppressed{%s} = %v, want 11", reason, n)
				}
				// State was updated (the newest event time), no rule state.
				st := h.tt.TableValue(Table, "farm-a/cow-5").(*deviceState)
				if want := t0.Add(20 * time.Minute); !st.LastTS.Equal(want) || len(st.Rules) != 0 {
					t.Errorf("state: last ts %v (want %v), rules %v", st.LastTS, want, st.Rules)
				}
			}
		})
	}
}

func TestScopeByTenantAndDevicePattern(t *testing.T) {
	h := newHarness(t, `
include_defaults: false
rules:
  - name: collar-fever
    kind: threshold
    metric: temperature
    threshold: 39.5
    tenants: [farm-a, "ranch-*"]
    devices: ["collar-*"]
`)
	cases := []struct {
		tenant, device string
		want           bool
	}{
		{"farm-a", "collar-1", true},
		{"ranch-north", "collar-2", true},
		{"farm-b", "collar-3", false},
		{"farm-a", "trap-1", false},
	}
	for i, c := range cases {
		h.clock.Set(t0.Add(time.Duration(i) * time.Minute))
		h.sensor(reading{tenant: c.tenant, device: c.device, metric: "temperature", value: 40, ts: h.clock.Now()})
		got := h.drain()
		if (len(got) == 1) != c.want {
			t.Errorf("%s/%s: got %v, want firing=%v", c.tenant, c.device, states(got), c.want)
		}
	}
}

func TestUndecodableRecordGoesToDeadLetters(t *testing.T) {
	h := newHarness(t, feverOnly)
	h.tt.Consume(topics.RawSensor, "cow-9", &inRecord{Raw: []byte("not avro")})
	_, v, ok := h.dlq.Next()
	if !ok {
		t.Fatal("no dead letter")
	}
	dl := v.(*schemas.DeadLetter)
	off, _ := strconv.ParseInt(dl.Headers["offset"], 10, 64)
	part, _ := strconv.Atoi(dl.Headers["partition"])
	if string(dl.Payload) != "not avro" || dl.Stage != "process" || dl.Reason != "undecodable" || dl.DeviceID == nil || *dl.DeviceID != "cow-9" ||
		dl.ID != groupkit.DeadLetterID(topics.RawSensor, int32(part), off) || dl.Headers["group"] != "alerts" {
		t.Errorf("dead letter: %+v", dl)
	}
	if n := h.counter("drover_alerts_evaluation_errors_total", map[string]string{"reason": "decode"}); n != 1 {
		t.Errorf("evaluation errors = %v, want 1", n)
	}
	// A record whose key names another device is refused too.
	h.tt.Consume(topics.RawSensor, "cow-9", &schemas.SensorReading{Tenant: "farm-a", DeviceID: "cow-10", TS: t0, IngestedAt: t0, Metric: "temperature", Value: 41})
	if _, v, ok := h.dlq.Next(); !ok || v.(*schemas.DeadLetter).Reason != "key_mismatch" {
		t.Errorf("want key_mismatch dead letter, got %v %v", v, ok)
	}
	// The group keeps running.
	for m := 0; m <= 10; m += 5 {
		h.clock.Set(t0.Add(time.Duration(m) * time.Minute))
		h.sensor(reading{device: "cow-9", metric: "temperature", value: 40, ts: h.clock.Now()})
	}
	if got := h.drain(); len(got) != 1 {
		t.Fatalf("after a bad record: got %v, want one firing", states(got))
	}
}

func TestGraphValidates(t *testing.T) {
	g, err := Graph(WithSerde(testSerde(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	if g.LoopStream() == nil || g.LoopStream().Topic() != string(Loop) {
		t.Errorf("loop topic %v, want %s", g.LoopStream(), Loop)
	}
	if g.GroupTable().Topic() != string(Table) {
		t.Errorf("table %s, want %s", g.GroupTable().Topic(), Table)
	}
}

func TestNewProcessorOptionErrors(t *testing.T) {
	serde := testSerde(t)
	tests := []struct {
		name string
		opts []Option
		want string
	}{
		{"no registry", nil, "no schema registry"},
		{"bad interval", []Option{WithSerde(serde), WithCheckInterval(0)}, "check interval"},
		{"bad horizon", []Option{WithSerde(serde), WithHorizon(-time.Second)}, "horizon"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Graph(tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestSiblingReadingsWriteStateOnce: the readings of one message (same
// event time and ingest time, other metrics) change nothing the table
// keeps after the first, so the group table is written once.
func TestSiblingReadingsWriteStateOnce(t *testing.T) {
	h := newHarness(t, "")
	table := h.tt.NewQueueTracker(string(Table))
	for _, metric := range []string{"temperature", "activity", "humidity"} {
		h.sensor(reading{device: "cow-11", metric: metric, value: 38.4, ts: t0})
	}
	n := 0
	for {
		if _, _, ok := table.Next(); !ok {
			break
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d table writes for one message, want 1", n)
	}
	// The next message writes again.
	h.clock.Add(time.Minute)
	h.sensor(reading{device: "cow-11", metric: "temperature", value: 38.5, ts: t0.Add(time.Minute)})
	if _, _, ok := table.Next(); !ok {
		t.Fatal("no table write for a new message")
	}
}

// TestRedeliveryReemitsOutboxOnly: after a crash goka redelivers records
// from the last committed offset. Records the table already reflects are
// not applied again; the newest applied one re-emits its events (same ids)
// in case they never reached Kafka; later records apply normally.
func TestRedeliveryReemitsOutboxOnly(t *testing.T) {
	h := newHarness(t, feverOnly)
	fired := schemas.Alert{AlertID: AlertID("fever", "farm-a/cow-12", t0), Rule: "fever", Kind: "threshold", Tenant: "farm-a",
		DeviceID: "cow-12", State: StateFiring, Severity: SeverityCritical, FiredAt: t0, TS: t0, IngestedAt: t0, Message: "m"}
	source := topics.RawSensor + "/0"
	h.tt.SetTableValue(Table, "farm-a/cow-12", &deviceState{
		Tenant: "farm-a", DeviceID: "cow-12", LastHeard: t0, LastTS: t0,
		Rules:   map[string]*ruleState{"fever": {Active: &activeAlert{ID: fired.AlertID, Kind: KindThreshold, Severity: SeverityCritical, FiredAt: t0}}},
		Offsets: map[string]int64{source: 2},
		Outbox:  &outbox{Source: source, Offset: 2, Events: []schemas.Alert{fired}},
	})
	// Offsets 0 and 1 (applied before), 2 (applied, with the firing).
	for m := range 3 {
		h.sensor(reading{device: "cow-12", metric: "temperature", value: 38.0, ts: t0.Add(time.Duration(m) * time.Second)})
		got := h.drain()
		switch {
		case m < 2 && len(got) != 0:
			t.Fatalf("offset %d re-applied: %v", m, states(got))
		case m == 2 && (len(got) != 1 || got[0].AlertID != fired.AlertID || got[0].State != StateFiring):
			t.Fatalf("offset 2 did not re-emit its firing: %v", got)
		}
	}
	// Offset 3 is new: 38.0 resolves the fever.
	h.sensor(reading{device: "cow-12", metric: "temperature", value: 38.0, ts: t0.Add(time.Minute)})
	if got := h.drain(); len(got) != 1 || got[0].State != StateResolved || got[0].AlertID != fired.AlertID {
		t.Fatalf("offset 3: %v", states(got))
	}
}

// TestOfflineSweepWaitsForCatchUp: while a partition processes records
// produced long ago (a backlog after an outage), the sweep skips it, so
// devices whose newer records are still in the backlog are not reported
// offline; once it processes fresh records, offline detection resumes.
func TestOfflineSweepWaitsForCatchUp(t *testing.T) {
	h := newHarness(t, "include_defaults: false\nrules:\n  - {name: offline, kind: offline, after: 30m}\n")
	consumeAt := func(device string, produced time.Time) {
		h.tt.Consume(topics.RawSensor, device, &schemas.SensorReading{Tenant: "farm-a", DeviceID: device, TS: produced,
			IngestedAt: produced, Metric: "battery", Value: 70, Source: "test"}, tester.WithTime(produced))
	}
	// The processor was down: at t0+40m it consumes a record produced at t0.
	h.clock.Set(t0.Add(40 * time.Minute))
	consumeAt("cow-20", t0)
	if n := h.sweep(); n != 0 {
		t.Fatalf("sweep sent %d ticks while catching up", n)
	}
	if got := h.counter("drover_alerts_offline_ticks_total", nil); got != 0 {
		t.Errorf("ticks %v", got)
	}
	// A fresh record: caught up; cow-20 is overdue for real now.
	consumeAt("cow-21", h.clock.Now())
	if n := h.sweep(); n != 1 {
		t.Fatalf("sweep after catching up sent %d ticks, want 1 (cow-20)", n)
	}
	if got := h.drain(); len(got) != 1 || got[0].DeviceID != "cow-20" || got[0].State != StateFiring {
		t.Fatalf("want cow-20 offline, got %v", states(got))
	}
}

// TestSameDeviceTwoTenants: cow-1 of two tenants is two devices: each
// fires its own alert, with its own id, under its own key.
func TestSameDeviceTwoTenants(t *testing.T) {
	h := newHarness(t, feverOnly)
	min := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	var got []*schemas.Alert
	for _, m := range []int{0, 5, 10} {
		h.clock.Set(min(m).Add(2 * time.Second))
		h.sensor(reading{tenant: "farm-a", device: "cow-1", metric: "temperature", value: 40, ts: min(m)})
		// farm-b's cow-1 starts later: merged with farm-a's, it would fire
		// with it at minute 10.
		if m >= 5 {
			h.sensor(reading{tenant: "farm-b", device: "cow-1", metric: "temperature", value: 40, ts: min(m)})
		}
		got = append(got, h.drain()...)
	}
	if len(got) != 1 || got[0].Tenant != "farm-a" || got[0].AlertID != AlertID("fever", "farm-a/cow-1", min(10)) {
		t.Fatalf("at minute 10: %v, want farm-a's fever only", got)
	}
	h.clock.Set(min(15).Add(2 * time.Second))
	h.sensor(reading{tenant: "farm-b", device: "cow-1", metric: "temperature", value: 40, ts: min(15)})
	b := h.drain()
	if len(b) != 1 || b[0].Tenant != "farm-b" || b[0].DeviceID != "cow-1" || b[0].AlertID == got[0].AlertID ||
		b[0].AlertID != AlertID("fever", "farm-b/cow-1", min(15)) {
		t.Fatalf("farm-b's fever: %v", b)
	}
}

// TestOfflineTimeoutFromRegistry: a device with its own offline timeout
// (the registry's offline_timeout) goes offline after it, one without
// after the rule's.
func TestOfflineTimeoutFromRegistry(t *testing.T) {
	own := map[string]time.Duration{"farm-a/cow-5": 5 * time.Minute, "farm-a/cow-6": 2 * time.Hour}
	h := newHarness(t, `
include_defaults: false
rules:
  - name: offline
    kind: offline
    after: 30m
    severity: warning
`, WithOfflineTimeouts(func(tenant, device string) time.Duration { return own[tenant+"/"+device] }))
	for _, d := range []string{"cow-5", "cow-6", "cow-7"} {
		h.sensor(reading{device: d, metric: "temperature", value: 38.5, ts: t0})
	}
	fired := func(at time.Duration) []string {
		h.clock.Set(t0.Add(at))
		h.sweep()
		var out []string
		for _, a := range h.drain() {
			if a.State == StateFiring {
				out = append(out, a.DeviceID)
			}
		}
		slices.Sort(out)
		return out
	}
	if got := fired(6 * time.Minute); !slices.Equal(got, []string{"cow-5"}) {
		t.Fatalf("after 6 min: %v, want cow-5 (its own 5m)", got)
	}
	if got := fired(31 * time.Minute); !slices.Equal(got, []string{"cow-7"}) {
		t.Fatalf("after 31 min: %v, want cow-7 (the rule's 30m; cow-6 has 2h)", got)
	}
	if got := fired(2*time.Hour + time.Minute); !slices.Equal(got, []string{"cow-6"}) {
		t.Fatalf("after 2h1m: %v, want cow-6", got)
	}
}
