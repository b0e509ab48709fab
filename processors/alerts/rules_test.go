package alerts

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadRuleFiles checks each testdata/*.bad.yaml against the error its
// first line ("# want: ...") says it must produce.
func TestBadRuleFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad rule files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line must be '# want: <error substring>'", f)
			}
			_, err = ParseRules("rules.yaml", b)
			if err == nil {
				t.Fatalf("accepted, want error containing %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, want)
			}
			var re *RuleError
			if !errors.As(err, &re) {
				t.Errorf("error is not a *RuleError: %T", err)
			}
			// LoadRules names the file by its path.
			if _, err := LoadRules(f); err == nil || !strings.HasPrefix(err.Error(), f+":") {
				t.Errorf("LoadRules error %v does not start with the path %s", err, f)
			}
		})
	}
}

func TestDefaultRules(t *testing.T) {
	rs := DefaultRules()
	fever, ok := rs.Rule("fever")
	if !ok {
		t.Fatal("no default fever rule")
	}
	if fever.Kind != KindThreshold || fever.Metric != "temperature" || fever.Op != ">" || fever.Threshold != 39.5 ||
		fever.For != 10*time.Minute || fever.Hysteresis != 0.3 || fever.Severity != SeverityCritical {
		t.Errorf("fever rule: %+v", fever)
	}
	if got := fever.resolveLevel(); got < 39.19 || got > 39.21 {
		t.Errorf("fever resolves below %v, want 39.2", got)
	}
	for _, name := range []string{"low-battery", "offline"} {
		if _, ok := rs.Rule(name); !ok {
			t.Errorf("no default %s rule", name)
		}
	}
}

func TestParseRules(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []string // rule names in order
		wantErr string
	}{
		{name: "empty file keeps the defaults", yaml: "", want: []string{"fever", "low-battery", "offline"}},
		{name: "example file", yaml: mustRead(t, "testdata/example.yaml"),
			want: []string{"fever", "calf-fever", "temperature-spike", "north-pasture", "offline"}},
		{name: "drop the defaults", yaml: "include_defaults: false\nrules:\n  - {name: gone, kind: offline, after: 1h}\n", want: []string{"gone"}},
		{name: "disable one default", yaml: "rules:\n  - {name: fever, kind: threshold, enabled: false}\n", want: []string{"low-battery", "offline"}},
		{name: "errors are all reported", yaml: "rules:\n  - {name: a, kind: offline}\n  - {name: b, kind: rate, metric: x}\n",
			wantErr: `rule "a": after: required for kind offline`},
		{name: "second error too", yaml: "rules:\n  - {name: a, kind: offline}\n  - {name: b, kind: rate, metric: x}\n",
			wantErr: `rule "b": threshold: required for kind rate`},
		{name: "top level must be a mapping", yaml: "- a\n", wantErr: "want a mapping"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ParseRules("rules.yaml", []byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs.Rules() {
				got = append(got, r.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("rules %v, want %v", got, tc.want)
			}
		})
	}
	rs, err := ParseRules("rules.yaml", []byte(mustRead(t, "testdata/example.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	off, _ := rs.Rule("offline")
	if off.After != 2*time.Hour {
		t.Errorf("overridden offline after = %s, want 2h", off.After)
	}
	pasture, _ := rs.Rule("north-pasture")
	if len(pasture.Polygon) != 4 || pasture.Trigger != TriggerLeave || pasture.Hysteresis != 15 {
		t.Errorf("geofence: %+v", pasture)
	}
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRuleScopeAndLevels(t *testing.T) {
	r := &Rule{Op: ">", Threshold: 39.5, Hysteresis: 0.3, Tenants: []string{"farm-*"}, Devices: []string{"cow-?", "calf-*"}}
	tests := []struct {
		name           string
		tenant, device string
		want           bool
	}{
		{"both match", "farm-a", "cow-1", true},
		{"second device pattern", "farm-b", "calf-12", true},
		{"tenant outside", "ranch", "cow-1", false},
		{"device outside", "farm-a", "cow-12", false},
	}
	for _, tc := range tests {
		if got := r.applies(tc.tenant, tc.device); got != tc.want {
			t.Errorf("%s: applies = %v", tc.name, got)
		}
	}
	if !r.holds(39.6) || r.holds(39.5) || r.clears(39.2) || !r.clears(39.19) {
		t.Error("levels of > 39.5 with hysteresis 0.3 are wrong")
	}
	low := &Rule{Op: "<", Threshold: 20, Hysteresis: 5}
	if !low.holds(19) || low.clears(25) || !low.clears(25.1) {
		t.Error("levels of < 20 with hysteresis 5 are wrong")
	}
}

func TestAlertIDIsDeterministic(t *testing.T) {
	a := AlertID("fever", "cow-1", t0)
	if a != AlertID("fever", "cow-1", t0.Add(300*time.Microsecond)) {
		t.Error("id depends on sub-millisecond time")
	}
	for _, other := range []string{AlertID("fever", "cow-2", t0), AlertID("offline", "cow-1", t0), AlertID("fever", "cow-1", t0.Add(time.Millisecond))} {
		if other == a {
			t.Error("different firings share an id")
		}
	}
	if len(a) != 32 {
		t.Errorf("id %q: want 32 hex characters", a)
	}
}

func TestGeometry(t *testing.T) {
	sq := []Point{{47.0, 8.0}, {47.0, 8.01}, {47.01, 8.01}, {47.01, 8.0}}
	if !inPolygon(Point{47.005, 8.005}, sq) || inPolygon(Point{47.02, 8.005}, sq) {
		t.Fatal("point in polygon wrong")
	}
	// 0.001° of latitude is about 111 m.
	if d := edgeDistance(Point{47.011, 8.005}, sq); d < 105 || d > 118 {
		t.Errorf("distance to edge %v m, want about 111", d)
	}
}
