package routes

import (
	"slices"
	"testing"
)

// A new route is one entry: the subscriptions, the broker's ACL patterns,
// sharding and the doors' device topics follow from the table.
func TestDerivedFromTable(t *testing.T) {
	extra, err := Parse("extra.yaml", append(DefaultYAML(), []byte(`
  - name: water
    match: sites/{site}/{tenant}/{device}/water
    decoder: sensor
    topic: raw.sensor
  - name: ignored
    match: internal/{device}/x
    ignore: true
`)...))
	if err != nil {
		t.Fatal(err)
	}
	custom, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		table    *Table
		filters  []string
		patterns []string
	}{
		{"default", Default(), []string{"devices/#", "spBv1.0/#", "wildfi/#"}, []string{"devices/%t/%d/#", "spBv1.0/%t/+/%d/#", "wildfi/%d/#"}},
		{"custom", custom, []string{"cams/#", "wildfi/#"}, []string{"cams/%t/%d/#", "wildfi/%d/#"}},
		{"one more entry", extra, []string{"devices/#", "sites/#", "spBv1.0/#", "wildfi/#"},
			[]string{"devices/%t/%d/#", "sites/+/%t/%d/#", "spBv1.0/%t/+/%d/#", "wildfi/%d/#"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.table.Filters(); !slices.Equal(got, tc.filters) {
				t.Errorf("Filters() = %q, want %q", got, tc.filters)
			}
			if got := tc.table.DevicePatterns(); !slices.Equal(got, tc.patterns) {
				t.Errorf("DevicePatterns() = %q, want %q", got, tc.patterns)
			}
		})
	}
	// A route that starts with a variable covers everything.
	any, err := Parse("any.yaml", []byte("routes:\n  - {name: a, match: '{device}/sensor', decoder: sensor, topic: raw.sensor}\n  - {name: b, match: 'x/{device}/gps', decoder: gps, topic: raw.gps}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := any.Filters(); !slices.Equal(got, []string{"#"}) {
		t.Errorf("Filters() = %q, want [#]", got)
	}
	if m, err := extra.Route("sites/north/farm1/cow-7/water", "default"); err != nil || m.Tenant != "farm1" || m.Device != "cow-7" || m.Topic != "raw.sensor" {
		t.Errorf("Route(sites/...) = %+v, %v", m, err)
	}
}

func TestShardKey(t *testing.T) {
	def := Default()
	for _, tc := range []struct{ topic, key string }{
		{"devices/farm1/cow-7/sensor", "devices/farm1/cow-7"},
		{"devices/farm1/cow-7/media/image2d", "devices/farm1/cow-7"},
		{"devices/farm1/cow-7", "devices/farm1/cow-7"},
		{"wildfi/tag-3/imu", "wildfi/tag-3"},
		{"wildfi/tag-3/gps", "wildfi/tag-3"},
		{"telemetry/x/y/z", "telemetry/x/y/z"},
		{"devicesX/a/b/c", "devicesX/a/b/c"},
		{"devices", "devices"},
		// Sparkplug B: one edge node's messages, and its devices', share a
		// key (the session needs them in order).
		{"spBv1.0/plant1/NBIRTH/edge-1", "spBv1.0/plant1/edge-1"},
		{"spBv1.0/plant1/NDATA/edge-1", "spBv1.0/plant1/edge-1"},
		{"spBv1.0/plant1/DDATA/edge-1/pump-2", "spBv1.0/plant1/edge-1"},
	} {
		if got := def.ShardKey(tc.topic); got != tc.key {
			t.Errorf("ShardKey(%q) = %q, want %q", tc.topic, got, tc.key)
		}
	}
}

func TestDeviceTopic(t *testing.T) {
	custom, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := Default().DeviceTopic("farm1", "cow-7", "media/image2d"); !ok || got != "devices/farm1/cow-7/media/image2d" {
		t.Errorf("default: %q %v", got, ok)
	}
	if got, ok := custom.DeviceTopic("t1", "c1", "video2d"); !ok || got != "cams/t1/c1/video2d" {
		t.Errorf("custom: %q %v", got, ok)
	}
	only, err := Parse("w.yaml", []byte("routes:\n  - {name: w, match: 'wildfi/{device}/gps', decoder: wildfi-gps, topic: raw.gps}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := only.DeviceTopic("t", "d", "gps"); ok {
		t.Errorf("a table without {tenant}/{device} routes gave %q", got)
	}
}

func TestFamily(t *testing.T) {
	def := Default()
	for _, tc := range []struct{ topic, family string }{
		{"devices/farm1/cow-7/sensor", "devices/+/+/sensor"},
		{"devices/farm1/cow-7/media/image2d", "devices/+/+/media/image2d"},
		{"devices/farm1/cow-7/alarms", "devices/+/+/alarms"},
		{"wildfi/tag-3/imu", "wildfi/+/imu"},
		{"telemetry/x", "telemetry/x"},
		{"devices/farm1", "devices/farm1"},
		{"spBv1.0/plant1/DDATA/edge-1/pump-2", "spBv1.0/+/DDATA/+/pump-2"},
		{"spBv1.0/plant1/NDATA/edge-1", "spBv1.0/+/NDATA/+"},
		{"devices/farm1/cow-7", "devices/+/+"},
	} {
		if got := def.Family(tc.topic); got != tc.family {
			t.Errorf("Family(%q) = %q, want %q", tc.topic, got, tc.family)
		}
	}
}
