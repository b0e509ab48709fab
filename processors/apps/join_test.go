package apps

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestJoin: each GPS fix meets the temperature reading of its device
// nearest in event time within the tolerance, with the reading
// interpolated between the two bracketing it; a fix waits until the
// readings have passed its time by the tolerance plus the lateness; late
// readings within the lateness still count, later fixes are dropped; the
// buffer is bounded; an idle key's fixes are written by wall clock.
func TestJoin(t *testing.T) {
	wall := t0
	g := startGroup(t, `
apps:
  - name: gps-temp
    source: {topics: [raw.gps, raw.sensor]}
    query: SELECT * FROM * WHERE metric = 'temperature' OR lat IS NOT NULL
    join:
      right: raw.sensor
      tolerance: 30s
      lateness: 10s
      interpolate: [value]
      buffer: 3
    target: apps.gps-temp
`, Config{Clock: groupkit.ClockFunc(func() time.Time { return wall })})
	temp := func(sec int, v float64) {
		r := reading("farm", "cow-1", "temperature", v, 0)
		r.EventID, r.TS = "t"+time.Duration(sec*int(time.Second)).String(), t0.Add(time.Duration(sec)*time.Second)
		g.tt.Consume(topics.RawSensor, "farm/cow-1", r)
	}
	fix := func(sec int) {
		ts := t0.Add(time.Duration(sec) * time.Second)
		g.tt.Consume(topics.RawGPS, "farm/cow-1", &schemas.GPSFix{EventID: "g" + time.Duration(sec*int(time.Second)).String(), Tenant: "farm",
			DeviceID: "cow-1", TS: ts, IngestedAt: ts, Lat: 47, Lon: 8, Source: "test", Attrs: map[string]string{}})
	}
	type got struct {
		left, right string
		delta       *int64
		interp      map[string]float64
		ids         []string
	}
	joins := func() []got {
		_, recs := drain(t, g.out)
		var out []got
		for _, r := range recs {
			var p struct {
				Left, Right  map[string]any
				DeltaMS      *int64 `json:"delta_ms"`
				Interpolated map[string]float64
			}
			if err := json.Unmarshal([]byte(r.Payload), &p); err != nil {
				t.Fatal(err)
			}
			gg := got{left: p.Left["event_id"].(string), delta: p.DeltaMS, interp: p.Interpolated, ids: r.SourceEventIDs}
			if p.Right != nil {
				gg.right = p.Right["event_id"].(string)
			}
			if r.EventID != EventID("gps-temp", topics.RawGPS, joinIDs(r.SourceEventIDs)) || r.SourceTopic != topics.RawGPS || !r.TS.Equal(t0.Add(time.Duration(parseSec(gg.left))*time.Second)) {
				t.Fatalf("record %+v", r)
			}
			out = append(out, gg)
		}
		return out
	}
	g.tt.Consume(topics.RawSensor, "farm/cow-1", reading("farm", "cow-1", "humidity", 80, 1)) // filtered: not a temperature
	temp(0, 38)
	temp(20, 40)
	fix(10)
	if j := joins(); len(j) != 0 {
		t.Fatalf("written before the readings passed 10s + 30s + 10s: %+v", j)
	}
	temp(100, 41)
	j := joins()
	if len(j) != 1 || j[0].left != "g10s" || j[0].right != "t0s" || *j[0].delta != -10000 || j[0].interp["value"] != 39 || len(j[0].ids) != 2 {
		t.Fatalf("nearest + interpolated: %+v", j)
	}
	fix(60) // no reading within 30 s: written without one
	if j := joins(); len(j) != 1 || j[0].right != "" || j[0].delta != nil {
		t.Fatalf("unmatched: %+v", j)
	}
	fix(45) // behind the fixes' watermark (60 s) by more than the lateness
	temp(95, 39)
	fix(90)
	temp(140, 42) // a reading late by 5 s (within the lateness) meets fix 90
	j = joins()
	if len(j) != 1 || j[0].left != "g1m30s" || j[0].right != "t1m35s" || *j[0].delta != 5000 {
		t.Fatalf("late reading: %+v", j)
	}
	if n := counter(t, g.reg, "gps-temp", "too_late"); n != 1 {
		t.Fatalf("too_late = %v", n)
	}
	temp(141, 42)
	temp(142, 42)
	if n := counter(t, g.reg, "gps-temp", "join_evicted"); n < 1 {
		t.Fatalf("join_evicted = %v: the buffer of 3 was not bounded", n)
	}
	fix(200)
	wall = t0.Add(time.Hour)
	g.tick(t, wall)
	if j := joins(); len(j) != 1 || j[0].left != "g3m20s" || j[0].right != "" {
		t.Fatalf("idle flush: %+v", j)
	}
	if m, u := counter(t, g.reg, "gps-temp", "join_matched"), counter(t, g.reg, "gps-temp", "join_unmatched"); m != 2 || u != 2 {
		t.Fatalf("matched %v, unmatched %v", m, u)
	}
	// The state survives in the group table: bounded per key.
	st, ok := g.tt.TableValue("app-gps-temp-table", "farm/cow-1").(*joinState)
	if !ok || len(st.Right) > 3 || len(st.Left) != 0 {
		t.Fatalf("table state %+v", st)
	}
}

func joinIDs(ids []string) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += "|"
		}
		s += id
	}
	return s
}

func parseSec(id string) int {
	d, _ := time.ParseDuration(id[1:])
	return int(d / time.Second)
}
