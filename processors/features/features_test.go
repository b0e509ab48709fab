package features

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func near(a, b, eps float64) bool { return math.Abs(a-b) <= eps }

func checkStats(t *testing.T, f *schemas.Feature, count int64, min, max, mean, stddev, first, last float64) {
	t.Helper()
	if f.Count != count || *f.Min != min || *f.Max != max || !near(*f.Mean, mean, 1e-9) || !near(*f.Stddev, stddev, 1e-9) || *f.First != first || *f.Last != last {
		t.Fatalf("feature = count %d min %v max %v mean %v stddev %v first %v last %v; want %d %v %v %v %v %v %v",
			f.Count, *f.Min, *f.Max, *f.Mean, *f.Stddev, *f.First, *f.Last, count, min, max, mean, stddev, first, last)
	}
}

func TestWindowEmitsWhenEventTimePassesEnd(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.sensor("cow-1", "temperature", t0.Add(10*time.Second), 38)
	g.sensor("cow-1", "temperature", t0.Add(20*time.Second), 40)
	// out of order within the window: becomes the first value
	g.sensor("cow-1", "temperature", t0.Add(5*time.Second), 39)
	g.sensor("cow-1", "temperature", t0.Add(30*time.Second), 41)
	if fs := g.features(t); len(fs) != 0 {
		t.Fatalf("emitted %d features before the window ended", len(fs))
	}
	g.sensor("cow-1", "temperature", t0.Add(61*time.Second), 42)
	fs := g.features(t)
	if len(fs) != 1 {
		t.Fatalf("got %d features, want 1", len(fs))
	}
	f := fs[0]
	// values 38 40 39 41: mean 39.5, population stddev sqrt(1.25)
	checkStats(t, f, 4, 38, 41, 39.5, math.Sqrt(1.25), 39, 41)
	if f.DeviceID != "cow-1" || f.Tenant != "farm" || f.Metric != "temperature" || !f.WindowStart.Equal(t0) || !f.WindowEnd.Equal(t0.Add(time.Minute)) || f.WindowSizeMS != 60000 || !f.TS.Equal(f.WindowEnd) {
		t.Fatalf("feature identity wrong: %+v", f)
	}
	if want := FeatureID("cow-1", "temperature", t0, time.Minute); f.FeatureID != want {
		t.Fatalf("feature id %s, want %s", f.FeatureID, want)
	}
	if got := counterValue(t, g.p.m.emitted.WithLabelValues("watermark")); got != 1 {
		t.Fatalf("emitted{watermark} = %v", got)
	}
}

func TestLatenessUpdatesThenDrops(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{Lateness: 30 * time.Second}, serde)
	g.sensor("cow-1", "temperature", t0.Add(10*time.Second), 1)
	g.sensor("cow-1", "temperature", t0.Add(65*time.Second), 5) // closes [t0, t0+1m)
	first := g.features(t)
	if len(first) != 1 || first[0].Count != 1 {
		t.Fatalf("first emission: %+v", first)
	}
	// late but within lateness (watermark t0+65s < end+lateness t0+90s)
	g.sensor("cow-1", "temperature", t0.Add(50*time.Second), 3)
	re := g.features(t)
	if len(re) != 1 {
		t.Fatalf("late update emitted %d features, want 1", len(re))
	}
	if re[0].FeatureID != first[0].FeatureID || re[0].Count != 2 || re[0].LateUpdates != 1 || *re[0].Last != 3 || *re[0].Max != 3 {
		t.Fatalf("re-emitted feature: %+v", re[0])
	}
	// the watermark moves past end+lateness: the window is gone
	g.sensor("cow-1", "temperature", t0.Add(95*time.Second), 6)
	g.sensor("cow-1", "temperature", t0.Add(40*time.Second), 100)
	if fs := g.features(t); len(fs) != 0 {
		t.Fatalf("too-late record emitted %d features", len(fs))
	}
	if got := counterValue(t, g.p.m.lateDropped.WithLabelValues("1m0s")); got != 1 {
		t.Fatalf("late_dropped = %v, want 1", got)
	}
	if got := counterValue(t, g.p.m.lateUpdates.WithLabelValues("1m0s")); got != 1 {
		t.Fatalf("late_updates = %v, want 1", got)
	}
}

func TestIdleCloseByWallClock(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{Lateness: 30 * time.Second, IdleTimeout: 2 * time.Minute}, serde)
	g.clock.Set(t0.Add(12 * time.Second)) // the device's clock is 2s behind
	g.sensor("cow-1", "temperature", t0.Add(10*time.Second), 38.5)
	g.sensor("cow-2", "temperature", t0.Add(10*time.Second), 38.5)

	// The device stays silent. Not due before lastWall + max(idle, end+lateness-watermark).
	g.tick(t, t0.Add(12*time.Second+2*time.Minute-time.Millisecond))
	if fs := g.features(t); len(fs) != 0 {
		t.Fatalf("emitted %d features before the idle timeout", len(fs))
	}
	g.clock.Set(t0.Add(70 * time.Second))
	g.sensor("cow-2", "temperature", t0.Add(68*time.Second), 39) // cow-2 speaks: closes its window by event time
	if fs := g.features(t); len(fs) != 1 || fs[0].DeviceID != "cow-2" {
		t.Fatalf("cow-2 emission: %+v", fs)
	}
	g.tick(t, t0.Add(12*time.Second+2*time.Minute))
	fs := g.features(t)
	if len(fs) != 1 || fs[0].DeviceID != "cow-1" || fs[0].Count != 1 || !fs[0].WindowStart.Equal(t0) {
		t.Fatalf("idle close: %+v", fs)
	}
	if got := counterValue(t, g.p.m.emitted.WithLabelValues("idle")); got != 1 {
		t.Fatalf("emitted{idle} = %v", got)
	}
	// The close is final: a record for the closed window is too late.
	g.sensor("cow-1", "temperature", t0.Add(20*time.Second), 50)
	if fs := g.features(t); len(fs) != 0 {
		t.Fatalf("record for an idle-closed window emitted %+v", fs)
	}
	// Later, cow-2's second window closes by wall clock too; then nothing
	// is left to do.
	g.tick(t, t0.Add(time.Hour))
	if fs := g.features(t); len(fs) != 1 || fs[0].DeviceID != "cow-2" || !fs[0].WindowStart.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second tick emitted %+v", fs)
	}
	g.tick(t, t0.Add(2*time.Hour))
	if fs := g.features(t); len(fs) != 0 {
		t.Fatalf("third tick emitted %+v", fs)
	}
}

func TestSeveralWindowSizes(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{Windows: []time.Duration{time.Hour, time.Minute}, Lateness: time.Second, ExactLateness: true}, serde)
	for i := 0; i < 120; i++ { // one reading per 30 s for an hour
		g.sensor("cow-1", "temperature", t0.Add(time.Duration(i)*30*time.Second), float64(i))
	}
	fs := g.features(t)
	if len(fs) != 59 {
		t.Fatalf("got %d minute features, want 59", len(fs))
	}
	g.sensor("cow-1", "temperature", t0.Add(time.Hour), 0)
	fs = g.features(t)
	var hour *schemas.Feature
	for _, f := range fs {
		if f.WindowSizeMS == time.Hour.Milliseconds() {
			hour = f
		}
	}
	if hour == nil {
		t.Fatalf("no hour feature among %d", len(fs))
	}
	checkStats(t, hour, 120, 0, 119, 59.5, math.Sqrt((120*120-1)/12.0), 0, 119)
	if hour.FeatureID == FeatureID("cow-1", "temperature", t0, time.Minute) {
		t.Fatal("hour and minute features share an id")
	}
}

func TestGPSMotionOnKnownTrack(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{Windows: []time.Duration{5 * time.Minute}, MovingSpeed: 0.5}, serde)
	// On the equator 0.001° of longitude is 111.195 m.
	g.gps("cow-1", t0, 0, 0)
	g.gps("cow-1", t0.Add(100*time.Second), 0, 0.001)      // 1.11 m/s: moving 100 s
	g.gps("cow-1", t0.Add(200*time.Second), 0, 0.001)      // still: stationary 100 s
	g.gps("cow-1", t0.Add(250*time.Second), 0.0001, 0.001) // 11.1 m in 50 s = 0.22 m/s: stationary
	g.gps("cow-1", t0.Add(6*time.Minute), 0.0001, 0.001)   // next window: closes the first
	fs := g.features(t)
	if len(fs) != 1 {
		t.Fatalf("got %d features, want 1", len(fs))
	}
	f := fs[0]
	wantDist := Haversine(0, 0, 0, 0.001) + Haversine(0, 0.001, 0.0001, 0.001)
	if f.Metric != MotionMetric || f.Count != 4 || !near(*f.DistanceM, wantDist, 1e-6) || !near(wantDist, 122.31, 0.01) {
		t.Fatalf("motion: count %d distance %v (want %v)", f.Count, *f.DistanceM, wantDist)
	}
	if *f.MovingS != 100 || *f.StationaryS != 150 || !near(*f.MaxSpeedMPS, 1.11195, 1e-4) || !near(*f.MeanSpeedMPS, wantDist/250, 1e-9) {
		t.Fatalf("motion: moving %v stationary %v max %v mean %v", *f.MovingS, *f.StationaryS, *f.MaxSpeedMPS, *f.MeanSpeedMPS)
	}
	if f.Min != nil || f.Mean != nil {
		t.Fatal("motion feature carries value statistics")
	}
}

func TestReplayedRecordsUpdateFeatures(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	for i, replayed := range []bool{true, false, true} {
		ts := t0.Add(time.Duration(i) * 10 * time.Second)
		g.tt.Consume("raw.sensor", "cow-1", &schemas.SensorReading{
			EventID: "e" + ts.String(), Tenant: "farm", DeviceID: "cow-1", TS: ts, IngestedAt: t0.Add(time.Hour),
			Metric: "temperature", Value: float64(i), Source: "backfill", Replayed: replayed, Attrs: map[string]string{},
		})
	}
	g.sensor("cow-1", "temperature", t0.Add(time.Minute), 0)
	fs := g.features(t)
	if len(fs) != 1 || fs[0].Count != 3 {
		t.Fatalf("features: %+v", fs)
	}
}

func TestFutureRecordsDropped(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{MaxFuture: time.Hour}, serde)
	g.sensor("cow-1", "temperature", t0.Add(2*time.Hour), 1) // wall clock is t0
	g.sensor("cow-1", "temperature", t0.Add(10*time.Second), 2)
	g.sensor("cow-1", "temperature", t0.Add(70*time.Second), 3)
	fs := g.features(t)
	if len(fs) != 1 || fs[0].Count != 1 || *fs[0].First != 2 {
		t.Fatalf("features: %+v", fs)
	}
	if got := counterValue(t, g.p.m.future); got != 1 {
		t.Fatalf("future_dropped = %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{name: "defaults", cfg: Config{}},
		{name: "two windows", cfg: Config{Windows: []time.Duration{time.Minute, time.Hour}}},
		{name: "tiny window", cfg: Config{Windows: []time.Duration{time.Millisecond}}, err: "window 1ms: must be between 1s and 24h"},
		{name: "fractional window", cfg: Config{Windows: []time.Duration{1500 * time.Millisecond}}, err: "whole seconds"},
		{name: "duplicate window", cfg: Config{Windows: []time.Duration{time.Minute, 60 * time.Second}}, err: "given twice"},
		{name: "negative lateness", cfg: Config{Lateness: -time.Second}, err: "lateness -1s"},
		{name: "negative idle", cfg: Config{IdleTimeout: -time.Second}, err: "idle-timeout"},
		{name: "NaN speed", cfg: Config{MovingSpeed: math.NaN()}, err: "moving-speed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v, want one containing %q wrapping ErrConfig", err, tc.err)
			}
		})
	}
}

func TestHaversineAndFeatureID(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want, eps              float64
	}{
		{name: "same point", want: 0, eps: 0},
		{name: "one degree of latitude", lat2: 1, want: 111195.08, eps: 0.1},
		{name: "paris to london", lat1: 48.8566, lon1: 2.3522, lat2: 51.5074, lon2: -0.1278, want: 343_560, eps: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Haversine(tc.lat1, tc.lon1, tc.lat2, tc.lon2); !near(got, tc.want, tc.eps) {
				t.Fatalf("distance %v, want %v", got, tc.want)
			}
		})
	}
	a := FeatureID("d", "m", t0, time.Minute)
	if a != FeatureID("d", "m", t0, time.Minute) || len(a) != 32 {
		t.Fatalf("feature id %q not deterministic", a)
	}
	for _, b := range []string{FeatureID("d2", "m", t0, time.Minute), FeatureID("d", "m2", t0, time.Minute), FeatureID("d", "m", t0.Add(time.Minute), time.Minute), FeatureID("d", "m", t0, time.Hour)} {
		if a == b {
			t.Fatal("feature ids collide")
		}
	}
}

// TestRedeliveredRecordsSkipped: goka redelivers records processed but not
// yet committed after a crash; the state remembers the next offset per
// input, so a redelivered record does not count twice.
func TestRedeliveredRecordsSkipped(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.sensor("cow-1", "temperature", t0, 1) // offset 0
	g.sensor("cow-1", "temperature", t0.Add(time.Second), 2)
	// Pretend the table was written for later offsets than the next
	// records carry, as after a crash before the offset commit.
	v := g.tt.TableValue(Table, "cow-1").(*deviceState)
	v.SensorNext += 2
	g.tt.SetTableValue(Table, "cow-1", v)
	g.sensor("cow-1", "temperature", t0.Add(2*time.Second), 100) // offset 2: already applied
	g.sensor("cow-1", "temperature", t0.Add(3*time.Second), 100) // offset 3: already applied
	g.sensor("cow-1", "temperature", t0.Add(4*time.Second), 3)   // offset 4: new
	g.sensor("cow-1", "temperature", t0.Add(time.Minute), 0)
	fs := g.features(t)
	if len(fs) != 1 || fs[0].Count != 3 || *fs[0].Max != 3 {
		t.Fatalf("features: %+v", fs)
	}
	if got := counterValue(t, g.p.m.duplicates.WithLabelValues("raw.sensor")); got != 2 {
		t.Fatalf("duplicates skipped = %v, want 2", got)
	}
}

// TestSameDeviceTwoTenants: records keyed TENANT/DEVICE (as the bridge
// writes them) keep cow-1 of two tenants apart: two windows, two feature
// ids, each feature with its tenant and the bare device id.
func TestSameDeviceTwoTenants(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	feed := func(tenant string, ts time.Time, v float64) {
		g.tt.Consume(topics.RawSensor, tenant+"/cow-1", &schemas.SensorReading{
			EventID: tenant + ts.String(), Tenant: tenant, DeviceID: "cow-1", TS: ts, IngestedAt: ts,
			Metric: "temperature", Value: v, Source: "test", Attrs: map[string]string{},
		})
	}
	feed("farm", t0.Add(10*time.Second), 38)
	feed("farm2", t0.Add(20*time.Second), 41)
	feed("farm", t0.Add(61*time.Second), 0)
	feed("farm2", t0.Add(61*time.Second), 0)
	fs := g.features(t)
	if len(fs) != 2 {
		t.Fatalf("got %d features, want one per tenant", len(fs))
	}
	byTenant := map[string]*schemas.Feature{}
	for _, f := range fs {
		byTenant[f.Tenant] = f
	}
	a, b := byTenant["farm"], byTenant["farm2"]
	if a == nil || b == nil || a.DeviceID != "cow-1" || b.DeviceID != "cow-1" || a.Count != 1 || b.Count != 1 || a.Mean == nil || *a.Mean != 38 || b.Mean == nil || *b.Mean != 41 {
		t.Fatalf("features %+v / %+v: want farm 38 and farm2 41, one value each", a, b)
	}
	if a.FeatureID == b.FeatureID || a.FeatureID != FeatureID("farm/cow-1", "temperature", t0, time.Minute) {
		t.Fatalf("feature ids %s and %s", a.FeatureID, b.FeatureID)
	}
}
