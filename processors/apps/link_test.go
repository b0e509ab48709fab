package apps

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// labels is a device registry held in a map (the tester has no Kafka to
// run a registry.View on; TestIntegrationLinkedJoinShare uses a real one).
type labels map[string]map[string]string

func (l labels) Device(tenant, id string) (*registry.Device, bool) {
	m, ok := l[tenant+"/"+id]
	if !ok {
		return nil, false
	}
	return &registry.Device{Tenant: tenant, ID: id, Labels: m}, true
}

func (labels) WaitReady(context.Context) error { return nil }

const linkedShareApps = `
apps:
  - name: paddock-weather
    source: {topics: [raw.gps, raw.sensor], tenant: weather}
    query: SELECT * FROM * WHERE lat IS NOT NULL OR metric = 'temperature'
    join: {right: raw.sensor, link: paddock, tolerance: 30s, lateness: 10s}
    target: apps.paddock-weather
    share: {tenant: ranch, agreement: AGR-rw}
`

// TestLinkedJoinShare: a join of two tenants' devices linked by a registry
// label, as a share. Each fix of the receiving tenant's collars meets the
// source tenant's weather station reading of the same paddock; the rows
// belong to the receiving tenant under the agreement; records of other
// tenants, of the wrong side's tenant and of devices without the label
// are left out; the hour's evidence counts each joined record once, also
// when a replay writes it again.
func TestLinkedJoinShare(t *testing.T) {
	reg := labels{
		"weather/station-1": {"paddock": "north"}, "weather/station-2": {"paddock": "south"},
		"ranch/cow-1": {"paddock": "north"}, "ranch/cow-2": {"paddock": "south"}, "ranch/cow-3": {"herd": "a"},
		"other/station-9": {"paddock": "north"},
	}
	g := startGroup(t, linkedShareApps, Config{Labels: reg, Clock: groupkit.ClockFunc(func() time.Time { return t0 })})
	temp := func(tenant, dev string, sec int, v float64) {
		r := reading(tenant, dev, "temperature", v, 0)
		r.EventID, r.TS = dev+"-t"+time.Duration(sec*int(time.Second)).String(), t0.Add(time.Duration(sec)*time.Second)
		g.tt.Consume(topics.RawSensor, tenant+"/"+dev, r)
	}
	fix := func(tenant, dev string, sec int) {
		ts := t0.Add(time.Duration(sec) * time.Second)
		g.tt.Consume(topics.RawGPS, tenant+"/"+dev, &schemas.GPSFix{EventID: dev + "-g" + time.Duration(sec*int(time.Second)).String(), Tenant: tenant,
			DeviceID: dev, TS: ts, IngestedAt: ts, Lat: 47, Lon: 8, Source: "test", Attrs: map[string]string{}})
	}
	temp("weather", "station-1", 0, 20)
	temp("weather", "station-1", 20, 22)
	temp("weather", "station-2", 5, 15)
	temp("other", "station-9", 9, 99) // another tenant: not shared
	temp("ranch", "cow-1", 10, 39)    // the receiving tenant's reading: not the right side
	fix("ranch", "cow-1", 10)
	fix("ranch", "cow-2", 10)
	fix("ranch", "cow-3", 10)    // no paddock label
	fix("weather", "gate-1", 10) // the source tenant's fix: not the left side
	temp("weather", "station-1", 60, 25)
	temp("weather", "station-2", 60, 16)

	keys, out := drain(t, g.out)
	if len(out) != 2 {
		t.Fatalf("%d joined records (%v), want 2", len(out), keys)
	}
	byDev := map[string]float64{}
	for i, r := range out {
		var p struct {
			Right   map[string]any
			DeltaMS *int64 `json:"delta_ms"`
		}
		if err := json.Unmarshal([]byte(r.Payload), &p); err != nil {
			t.Fatal(err)
		}
		if keys[i] != "ranch/"+r.DeviceID || r.Tenant != "ranch" || r.SourceTenant != "weather" || r.Agreement == nil || *r.Agreement != "AGR-rw" || p.Right == nil {
			t.Fatalf("record %s %+v (right %v)", keys[i], r, p.Right)
		}
		byDev[r.DeviceID] = p.Right["value"].(float64)
	}
	// cow-1 (north) at 10 s: station-1's 0 s and 20 s readings are equally
	// near, the earlier wins; cow-2 (south): station-2's 5 s reading.
	if byDev["cow-1"] != 20 || byDev["cow-2"] != 15 {
		t.Fatalf("matches %v, want cow-1 20, cow-2 15", byDev)
	}
	for outcome, want := range map[string]float64{"join_unlinked": 1, "skipped": 3, "join_matched": 2} {
		if got := counter(t, g.reg, "paddock-weather", outcome); got != want {
			t.Errorf("%s = %v, want %v", outcome, got, want)
		}
	}
	// A replay of cow-1's fix writes the same record again; the evidence
	// counts it once.
	fix("ranch", "cow-1", 10)
	if _, again := drain(t, g.out); len(again) != 1 || again[0].EventID != out[0].EventID && again[0].EventID != out[1].EventID {
		t.Fatalf("replay: %+v", again)
	}
	g.tick(t, t0.Add(time.Hour+EvidenceDelay))
	var evs []Evidence
	for {
		k, v, ok := g.ev.Next()
		if !ok {
			break
		}
		env := v.(*schemas.Envelope)
		var ev Evidence
		if err := json.Unmarshal([]byte(env.Payload), &ev); err != nil || k != "AGR-rw" {
			t.Fatalf("evidence %s %+v: %v", k, env, err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 1 || evs[0].RecordsShared != 2 || evs[0].SourceTenant != "weather" || evs[0].ReceivingTenant != "ranch" {
		t.Fatalf("evidence %+v, want one hour with 2 records shared", evs)
	}
	if n := counter(t, g.reg, "paddock-weather", "duplicates"); n != 1 {
		t.Fatalf("duplicates = %v, want 1", n)
	}
}

// TestLinkedJoinTenants: without a share a linked join meets devices of
// one tenant only, however their labels match across tenants.
func TestLinkedJoinTenants(t *testing.T) {
	reg := labels{"a/station": {"paddock": "north"}, "a/cow": {"paddock": "north"}, "b/cow": {"paddock": "north"}}
	g := startGroup(t, `
apps:
  - name: paddock
    source: {topics: [raw.gps, raw.sensor]}
    query: SELECT * FROM *
    join: {right: raw.sensor, link: paddock, tolerance: 30s, lateness: 10s}
    target: apps.paddock
`, Config{Labels: reg, Clock: groupkit.ClockFunc(func() time.Time { return t0 })})
	for _, sec := range []int{0, 60} {
		r := reading("a", "station", "temperature", 20, 0)
		r.EventID, r.TS = "s"+time.Duration(sec*int(time.Second)).String(), t0.Add(time.Duration(sec)*time.Second)
		g.tt.Consume(topics.RawSensor, "a/station", r)
		if sec == 0 {
			for _, k := range []string{"a/cow", "b/cow"} {
				ts := t0.Add(5 * time.Second)
				g.tt.Consume(topics.RawGPS, k, &schemas.GPSFix{EventID: k, Tenant: k[:1], DeviceID: "cow", TS: ts, IngestedAt: ts, Lat: 47, Lon: 8,
					Source: "test", Attrs: map[string]string{}})
			}
		}
	}
	_, out := drain(t, g.out)
	if len(out) != 1 || out[0].Tenant != "a" || out[0].DeviceID != "cow" || out[0].Agreement != nil {
		t.Fatalf("joined %+v, want only tenant a's cow", out)
	}
}
