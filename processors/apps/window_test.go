package apps

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/topics"
)

// TestWindowApp: GROUP BY device, TUMBLE(1m) closes each device's windows
// with the features engine's aggregates when its event time passes their
// end, re-emits a window after a late record (new id, late_updates 1),
// drops records behind the allowed lateness, and closes an idle device's
// windows by wall clock.
func TestWindowApp(t *testing.T) {
	wall := t0
	g := startGroup(t, `
apps:
  - name: temp-1m
    source: {topics: [raw.sensor]}
    query: |
      SELECT device_id, value AS celsius FROM raw.sensor
      WHERE metric = 'temperature'
      GROUP BY device, TUMBLE(1m)
    target: apps.temp-1m
`, Config{Clock: groupkit.ClockFunc(func() time.Time { return wall })})
	send := func(dev string, at time.Duration, v float64, metric string) {
		r := reading("farm", dev, metric, v, 0)
		r.EventID, r.TS = dev+at.String()+metric, t0.Add(at)
		g.tt.Consume(topics.RawSensor, "farm/"+dev, r)
	}
	windows := func() []WindowPayload {
		_, recs := drain(t, g.out)
		var out []WindowPayload
		for _, r := range recs {
			var w WindowPayload
			if err := json.Unmarshal([]byte(r.Payload), &w); err != nil {
				t.Fatal(err)
			}
			if r.App != "temp-1m" || r.Tenant != "farm" || !r.TS.Equal(w.WindowEnd) || w.Name != "celsius" {
				t.Fatalf("window record %+v", r)
			}
			out = append(out, w)
		}
		return out
	}
	send("cow-1", 0, 38, "temperature")
	send("cow-1", 20*time.Second, 39, "temperature")
	send("cow-1", 30*time.Second, 99, "humidity") // WHERE: not aggregated
	send("cow-1", 40*time.Second, 40, "temperature")
	if w := windows(); len(w) != 0 {
		t.Fatalf("window closed early: %+v", w)
	}
	send("cow-1", 61*time.Second, 41, "temperature")
	w := windows()
	if len(w) != 1 || w[0].Count != 3 || *w[0].Min != 38 || *w[0].Max != 40 || *w[0].Mean != 39 || *w[0].First != 38 || *w[0].Last != 40 ||
		!w[0].WindowStart.Equal(t0) || !w[0].WindowEnd.Equal(t0.Add(time.Minute)) || w[0].LateUpdates != 0 {
		t.Fatalf("first window %+v", w)
	}
	send("cow-1", 30*time.Second, 44, "temperature") // late, within 30 s of lateness
	w = windows()
	if len(w) != 1 || w[0].Count != 4 || *w[0].Max != 44 || w[0].LateUpdates != 1 {
		t.Fatalf("late update %+v", w)
	}
	send("cow-1", 125*time.Second, 42, "temperature") // closes [1m, 2m)
	send("cow-1", 10*time.Second, 50, "temperature")  // behind the lateness: dropped
	w = windows()
	if len(w) != 1 || w[0].Count != 1 || *w[0].Mean != 41 || !w[0].WindowStart.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second window %+v", w)
	}
	if n := counter(t, g.reg, "temp-1m", "too_late"); n != 1 {
		t.Fatalf("too_late = %v, want 1", n)
	}
	// An idle device: its window closes by wall clock.
	send("cow-2", 5*time.Second, 37, "temperature")
	wall = t0.Add(10 * time.Minute)
	g.tick(t, wall)
	w = windows()
	if len(w) != 2 { // cow-1's [2m, 3m) and cow-2's [0, 1m)
		t.Fatalf("idle close %+v", w)
	}
}

// TestWindowRedelivered: goka redelivers records processed but not yet
// committed after a crash; a window app's state remembers the next offset
// of its input, so a redelivered record is counted once.
func TestWindowRedelivered(t *testing.T) {
	g := startGroup(t, `
apps:
  - name: w
    source: {topics: [raw.sensor]}
    query: SELECT device_id, value FROM raw.sensor GROUP BY device, TUMBLE(1m)
    target: apps.w
`, Config{Clock: groupkit.ClockFunc(func() time.Time { return t0 })})
	send := func(at time.Duration, v float64) {
		r := reading("farm", "cow-1", "temperature", v, 0)
		r.EventID, r.TS = at.String(), t0.Add(at)
		g.tt.Consume(topics.RawSensor, "farm/cow-1", r)
	}
	send(0, 1) // offset 0
	send(time.Second, 2)
	// The table as if written for two more offsets than the next records
	// carry, as after a crash before the offset commit.
	st := g.tt.TableValue("app-w-table", "farm/cow-1").(*features.WindowState)
	st.SensorNext += 2
	g.tt.SetTableValue("app-w-table", "farm/cow-1", st)
	send(2*time.Second, 100) // offset 2: applied already
	send(3*time.Second, 100) // offset 3: applied already
	send(4*time.Second, 3)   // offset 4: new
	send(time.Minute, 0)     // closes the window
	_, recs := drain(t, g.out)
	if len(recs) != 1 {
		t.Fatalf("%d windows, want 1", len(recs))
	}
	var w WindowPayload
	if err := json.Unmarshal([]byte(recs[0].Payload), &w); err != nil {
		t.Fatal(err)
	}
	if w.Count != 3 || *w.Max != 3 {
		t.Fatalf("window %+v: want the 3 records once", w)
	}
	if n := counter(t, g.reg, "w", "duplicates"); n != 2 {
		t.Fatalf("duplicates = %v, want 2", n)
	}
}

// TestWindowLateness: an app's lateness replaces the features group's 30 s
// for its windows: with 5 s, a record 10 s behind the watermark (which the
// default would still count) is too late.
func TestWindowLateness(t *testing.T) {
	g := startGroup(t, `
apps:
  - name: strict
    source: {topics: [raw.sensor]}
    query: SELECT device_id, value FROM raw.sensor GROUP BY device, TUMBLE(1m)
    lateness: 5s
    target: apps.strict
`, Config{Clock: groupkit.ClockFunc(func() time.Time { return t0 })})
	if l := g.p.app.Lateness; l != 5*time.Second {
		t.Fatalf("lateness %v, want 5s", l)
	}
	send := func(at time.Duration, v float64) {
		r := reading("farm", "cow-1", "temperature", v, 0)
		r.EventID, r.TS = at.String(), t0.Add(at)
		g.tt.Consume(topics.RawSensor, "farm/cow-1", r)
	}
	send(0, 1)
	send(70*time.Second, 2)
	send(58*time.Second, 100) // 12 s behind: within 30 s, not within 5 s
	if n := counter(t, g.reg, "strict", "too_late"); n != 1 {
		t.Fatalf("too_late = %v, want 1", n)
	}
	_, recs := drain(t, g.out)
	for _, r := range recs {
		var w WindowPayload
		if err := json.Unmarshal([]byte(r.Payload), &w); err != nil {
			t.Fatal(err)
		}
		if w.LateUpdates != 0 || *w.Max == 100 {
			t.Fatalf("a record behind the app's lateness changed a window: %+v", w)
		}
	}
}

// TestWindowShare: a window app may be a share (aggregates rather than
// records cross tenants): its windows belong to the receiving tenant under
// the agreement, each window record counts once in the evidence of its
// hour (also when written again by the idle tick's visitor), and after the
// revocation no window is written.
func TestWindowShare(t *testing.T) {
	wall := t0
	rv := NewRevocations(nil, nil, nil)
	g := startGroup(t, `
apps:
  - name: vet
    source: {topics: [raw.sensor], tenant: demo}
    query: SELECT device_id, value AS celsius FROM raw.sensor WHERE metric = 'temperature' GROUP BY device, TUMBLE(1m)
    target: apps.vet-means
    share: {tenant: vet, agreement: AGR-7}
`, Config{Revocations: rv, Clock: groupkit.ClockFunc(func() time.Time { return wall })})
	send := func(tenant, dev string, at time.Duration, v float64) {
		r := reading(tenant, dev, "temperature", v, 0)
		r.EventID, r.TS = dev+at.String(), t0.Add(at)
		g.tt.Consume(topics.RawSensor, tenant+"/"+dev, r)
	}
	send("demo", "cow-1", 0, 38)
	send("demo", "cow-1", 30*time.Second, 40)
	send("other", "cow-9", 30*time.Second, 40) // another tenant: not shared
	send("demo", "cow-1", 61*time.Second, 39)  // closes [0, 1m)
	send("demo", "cow-2", 5*time.Second, 37)
	wall = t0.Add(10 * time.Minute)
	g.tick(t, wall) // closes cow-1's [1m, 2m) and cow-2's [0, 1m) by wall clock
	_, out := drain(t, g.out)
	if len(out) != 3 {
		t.Fatalf("%d window records, want 3", len(out))
	}
	for _, r := range out {
		if r.Tenant != "vet" || r.SourceTenant != "demo" || r.Agreement == nil || *r.Agreement != "AGR-7" {
			t.Fatalf("window record %+v", r)
		}
	}
	g.tick(t, t0.Add(time.Hour+EvidenceDelay))
	ev := evidences(t, g)
	if len(ev) != 1 || ev[0].RecordsShared != 3 {
		t.Fatalf("evidence %+v, want one hour with 3 window records", ev)
	}
	rv.add(Revocation{Agreement: "AGR-7", RevokedAt: wall})
	send("demo", "cow-3", 0, 38)
	send("demo", "cow-3", 2*time.Minute, 38) // would close [0, 1m)
	if _, out := drain(t, g.out); len(out) != 0 {
		t.Fatalf("windows after the revocation: %+v", out)
	}
	if n := counter(t, g.reg, "vet", "revoked"); n != 1 {
		t.Fatalf("revoked = %v, want 1", n)
	}
}
