package alerts

import (
	"math"
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// TestRulesChangedBetweenRuns: an active alert whose rule was removed, or
// whose scope no longer covers the device, resolves on the device's next
// record instead of staying active forever.
func TestRulesChangedBetweenRuns(t *testing.T) {
	tests := []struct {
		name    string
		after   string
		wantMsg string
	}{
		{"rule removed", "include_defaults: false\nrules:\n  - {name: offline, kind: offline, after: 1h}\n", "resolved: rule fever was removed"},
		{"scope narrowed", "include_defaults: false\nrules:\n  - {name: fever, kind: threshold, metric: temperature, threshold: 39.5, devices: [calf-*]}\n", "resolved: rule fever no longer covers cow-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := &evaluator{rules: mustRules(t, feverOnly)}
			st := &deviceState{}
			rec := func(m int, v float64) *schemas.SensorReading {
				ts := t0.Add(time.Duration(m) * time.Minute)
				return &schemas.SensorReading{Tenant: "farm-a", DeviceID: "cow-1", TS: ts, IngestedAt: ts, Metric: "temperature", Value: v}
			}
			before.sensor(st, rec(0, 40), t0)
			if got := before.sensor(st, rec(10, 40), t0.Add(10*time.Minute)); len(got) != 1 || got[0].State != StateFiring {
				t.Fatalf("setup: %v", got)
			}
			after := &evaluator{rules: mustRules(t, tc.after)}
			now := t0.Add(20 * time.Minute)
			got := after.retire(st, now)
			if len(got) != 1 || got[0].State != StateResolved || got[0].Rule != "fever" || got[0].Message != tc.wantMsg ||
				got[0].Kind != "threshold" || got[0].Severity != SeverityCritical || !got[0].ResolvedAt.Equal(now) {
				t.Fatalf("got %+v", got)
			}
			if len(after.retire(st, now)) != 0 {
				t.Error("resolved twice")
			}
		})
	}
}

func TestTableCodecRoundTrip(t *testing.T) {
	v, th := 39.9, 39.5
	full := &deviceState{
		Tenant: "farm-a", DeviceID: "cow-1", LastHeard: t0, LastTS: t0.Add(time.Minute),
		Samples: map[string]sample{"temperature": {V: 39.9, TS: t0}},
		Pos:     &position{Lat: 47.1, Lon: 8.2, TS: t0},
		Rules: map[string]*ruleState{
			"fever":   {Active: &activeAlert{ID: "abc", Kind: KindThreshold, Severity: SeverityCritical, FiredAt: t0, Value: &v, Threshold: &th}},
			"pending": {PendingSince: t0},
		},
		Offsets: map[string]int64{"raw.sensor/3": 42},
		Outbox:  &outbox{Source: "raw.sensor/3", Offset: 42, Events: []schemas.Alert{{AlertID: "abc", State: StateFiring, FiredAt: t0, TS: t0, Value: &v}}},
	}
	tests := []struct {
		name string
		in   *deviceState
	}{
		{"empty", &deviceState{}},
		{"full", full},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := (tableCodec{}).Encode(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			got, err := (tableCodec{}).Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			st := got.(*deviceState)
			if !st.LastHeard.Equal(tc.in.LastHeard) || st.LastHeard.IsZero() != tc.in.LastHeard.IsZero() || st.Tenant != tc.in.Tenant {
				t.Errorf("times/ids: %+v", st)
			}
			if tc.in.Rules != nil {
				a := st.Rules["fever"].Active
				if a == nil || a.ID != "abc" || *a.Value != v || !a.FiredAt.Equal(t0) || a.Kind != KindThreshold || !st.Rules["pending"].PendingSince.Equal(t0) {
					t.Errorf("rules: %+v", st.Rules)
				}
				if st.Outbox == nil || len(st.Outbox.Events) != 1 || st.Outbox.Events[0].AlertID != "abc" || st.Offsets["raw.sensor/3"] != 42 || st.Pos.Lat != 47.1 {
					t.Errorf("outbox/offsets/pos: %+v", st)
				}
			} else if len(st.Rules) != 0 || st.Outbox != nil || st.Pos != nil || !st.LastTS.IsZero() {
				t.Errorf("empty state decoded as %+v", st)
			}
		})
	}
	if _, err := (tableCodec{}).Decode([]byte(`{"tenant":"x"}`)); err == nil {
		t.Error("decoded a value of an unknown format")
	}
}

func TestNonFiniteValuesAreSkipped(t *testing.T) {
	e := &evaluator{rules: mustRules(t, "include_defaults: false\nrules:\n  - {name: spike, kind: rate, metric: temperature, threshold: 0.5}\n  - {name: hot, kind: threshold, metric: temperature, threshold: 39.5}\n")}
	st := &deviceState{}
	feed := func(m int, v float64) []schemas.Alert {
		ts := t0.Add(time.Duration(m) * time.Minute)
		return e.sensor(st, &schemas.SensorReading{Tenant: "farm-a", DeviceID: "cow-1", TS: ts, IngestedAt: ts, Metric: "temperature", Value: v}, ts)
	}
	feed(0, 38.0)
	for i, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := feed(1+i, v); len(got) != 0 {
			t.Fatalf("%v fired %v", v, got)
		}
	}
	// The rate is still computed from the last finite reading (38.0 at 0 min).
	if got := feed(4, 38.4); len(got) != 0 {
		t.Fatalf("0.1/min fired: %v", got)
	}
	if s := st.Samples["temperature"]; s.V != 38.4 {
		t.Errorf("sample %v", s)
	}
}
