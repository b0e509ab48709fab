package state

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestShadowFields(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.clock.Set(t0.Add(3 * time.Second))
	g.sensor("cow-1", "temperature", t0, 38.6)
	g.sensor("cow-1", "battery", t0.Add(time.Second), 87)
	g.tt.Consume(topics.RawGPS, "cow-1", &schemas.GPSFix{
		EventID: "g1", Tenant: "farm", DeviceID: "cow-1", TS: t0.Add(2 * time.Second), IngestedAt: t0.Add(3 * time.Second),
		Lat: 47.5, Lon: 8.7, Source: "test", Attrs: map[string]string{"firmware": "1.4.2"},
	})
	// An older reading does not overwrite the newer value.
	g.sensor("cow-1", "temperature", t0.Add(-time.Minute), 10)
	ds := g.last(t)
	if ds.DeviceID != "cow-1" || ds.Tenant != "farm" || !ds.Online {
		t.Fatalf("identity/online: %+v", ds)
	}
	if !ds.LastSeen.Equal(t0.Add(2*time.Second)) || !ds.TS.Equal(ds.LastSeen) || !ds.IngestedAt.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("last seen %v ts %v ingested %v", ds.LastSeen, ds.TS, ds.IngestedAt)
	}
	if ds.Metrics["temperature"] != 38.6 || ds.Metrics["battery"] != 87 || len(ds.Metrics) != 2 {
		t.Fatalf("metrics %v", ds.Metrics)
	}
	if ds.Battery == nil || *ds.Battery != 87 || ds.Firmware == nil || *ds.Firmware != "1.4.2" {
		t.Fatalf("battery %v firmware %v", ds.Battery, ds.Firmware)
	}
	if ds.Lat == nil || *ds.Lat != 47.5 || *ds.Lon != 8.7 || !ds.PositionTS.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("position %v %v %v", ds.Lat, ds.Lon, ds.PositionTS)
	}
	if !ds.UpdatedAt.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("updated at %v", ds.UpdatedAt)
	}
	local, err := g.p.Local("cow-1")
	if err != nil || local.Metrics["temperature"] != 38.6 {
		t.Fatalf("Local: %+v, %v", local, err)
	}
	if _, err := g.p.Local("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Local(nobody) = %v, want ErrNotFound", err)
	}
}

func TestOfflineByWallClock(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{OfflineAfter: 10 * time.Minute}, serde)
	g.sensor("cow-1", "temperature", t0, 38.6)
	g.clock.Set(t0.Add(5 * time.Minute))
	g.sensor("cow-2", "temperature", t0.Add(5*time.Minute), 38.6)
	g.states(t)

	g.tick(t, t0.Add(10*time.Minute-time.Millisecond))
	if s := g.states(t); len(s) != 0 {
		t.Fatalf("tick before the deadline emitted %+v", s)
	}
	g.tick(t, t0.Add(10*time.Minute))
	s := g.states(t)
	if len(s) != 1 || s[0].DeviceID != "cow-1" || s[0].Online {
		t.Fatalf("offline transition: %+v", s)
	}
	if !s[0].UpdatedAt.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("updated at %v", s[0].UpdatedAt)
	}
	// Offline is emitted once.
	g.tick(t, t0.Add(11*time.Minute))
	if s := g.states(t); len(s) != 0 {
		t.Fatalf("second tick emitted %+v", s)
	}
	// A replayed record does not bring the device back online ...
	g.tt.Consume(topics.RawSensor, "cow-1", &schemas.SensorReading{
		EventID: "r", Tenant: "farm", DeviceID: "cow-1", TS: t0.Add(time.Minute), IngestedAt: t0.Add(11 * time.Minute),
		Metric: "temperature", Value: 39, Source: "backfill", Replayed: true, Attrs: map[string]string{},
	})
	if ds := g.last(t); ds.Online || ds.Metrics["temperature"] != 39 {
		t.Fatalf("after replayed record: online %v metrics %v", ds.Online, ds.Metrics)
	}
	// ... a live one does.
	g.sensor("cow-1", "temperature", t0.Add(12*time.Minute), 38.7)
	if ds := g.last(t); !ds.Online {
		t.Fatal("live record did not bring the device online")
	}
	if got := counterValue(t, g.p.m.offline); got != 1 {
		t.Fatalf("offline transitions = %v, want 1", got)
	}
}

func TestActiveAlertsFromAlertsTopic(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.sensor("cow-1", "temperature", t0, 40)
	alert := func(id, state string) {
		g.tt.Consume(topics.Alerts, "cow-1", &schemas.Alert{
			AlertID: id, Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-1", State: state,
			Severity: "warning", Message: "m", FiredAt: t0, TS: t0, IngestedAt: t0,
		})
		g.tt.Catchup()
	}
	alert("a1", "firing")
	alert("a2", "firing")
	alert("a1", "firing") // a duplicate changes nothing
	if ds := g.last(t); ds.ActiveAlerts != 2 {
		t.Fatalf("active alerts %d, want 2", ds.ActiveAlerts)
	}
	alert("a1", "resolved")
	if ds := g.last(t); ds.ActiveAlerts != 1 || ds.Metrics["temperature"] != 40 {
		t.Fatalf("after resolve: active %d metrics %v", ds.ActiveAlerts, ds.Metrics)
	}
}

// TestAlertBeforeFirstReading: alerts.events and raw.sensor are not
// ordered against each other, so an alert can reach a device's state before
// its first reading. No state may go out with ts and last_seen at the epoch
// (the sink dead-lettered those as ts_out_of_range); the alert is kept and
// the first reading's state carries it.
func TestAlertBeforeFirstReading(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	for _, a := range []struct{ id, state string }{{"a1", "firing"}, {"a2", "firing"}, {"a1", "resolved"}} {
		g.tt.Consume(topics.Alerts, "cow-7", &schemas.Alert{
			AlertID: a.id, Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-7", State: a.state,
			Severity: "warning", Message: "m", FiredAt: t0, TS: t0, IngestedAt: t0,
		})
		g.tt.Catchup()
	}
	if s := g.states(t); len(s) != 0 {
		t.Fatalf("states emitted before the device was seen: %+v", s)
	}
	if got := counterValue(t, g.p.m.unseen); got != 3 {
		t.Errorf("unseen changes = %v, want 3", got)
	}
	g.sensor("cow-7", "temperature", t0.Add(time.Minute), 40)
	ds := g.last(t)
	if !ds.LastSeen.Equal(t0.Add(time.Minute)) || !ds.TS.Equal(ds.LastSeen) || ds.ActiveAlerts != 1 || ds.Tenant != "farm" {
		t.Fatalf("first state: last_seen %v ts %v active alerts %d tenant %q, want the reading's time and 1 alert (a2)", ds.LastSeen, ds.TS, ds.ActiveAlerts, ds.Tenant)
	}
}

func TestDevicesHandler(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.sensor("cow-1", "temperature", t0, 38.6)
	mux := http.NewServeMux()
	mux.Handle(DevicesPattern, g.p.Handler(nil))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name   string
		path   string
		status int
		body   string
	}{
		{name: "known device", path: "/devices/cow-1", status: 200, body: `"metrics":{"temperature":38.6}`},
		{name: "unknown device", path: "/devices/nobody", status: 404, body: `device not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(raw), tc.body) {
				t.Fatalf("GET %s = %d %s, want %d containing %s", tc.path, resp.StatusCode, raw, tc.status, tc.body)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{name: "defaults", cfg: Config{}},
		{name: "negative offline", cfg: Config{OfflineAfter: -time.Minute}, err: "offline-after -1m0s"},
		{name: "tiny offline", cfg: Config{OfflineAfter: time.Millisecond}, err: "at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestSameDeviceTwoTenants: records keyed by the tenant-qualified device
// (as the bridge writes them) give cow-1 of two tenants two shadows, each
// with its own metrics and alerts, emitted under its own key with the bare
// device id and its tenant.
func TestSameDeviceTwoTenants(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	for _, tc := range []struct {
		tenant string
		v      float64
	}{{"farm", 38.1}, {"farm2", 40.2}} {
		g.tt.Consume(topics.RawSensor, identity.Key(tc.tenant, "cow-1"), &schemas.SensorReading{
			EventID: tc.tenant, Tenant: tc.tenant, DeviceID: "cow-1", TS: t0, IngestedAt: t0,
			Metric: "temperature", Value: tc.v, Source: "test", Attrs: map[string]string{},
		})
	}
	g.tt.Consume(topics.Alerts, "farm2/cow-1", &schemas.Alert{AlertID: "a-farm2", Rule: "fever", Kind: "threshold",
		Tenant: "farm2", DeviceID: "cow-1", State: "firing", Severity: "warning", Message: "m", FiredAt: t0, TS: t0, IngestedAt: t0})
	g.tt.Catchup()
	byKey := map[string]*schemas.DeviceState{}
	for _, ds := range g.states(t) {
		byKey[identity.Key(ds.Tenant, ds.DeviceID)] = ds
	}
	a, b := byKey["farm/cow-1"], byKey["farm2/cow-1"]
	if a == nil || b == nil || len(byKey) != 2 {
		t.Fatalf("shadows %v, want farm/cow-1 and farm2/cow-1", byKey)
	}
	if a.Metrics["temperature"] != 38.1 || b.Metrics["temperature"] != 40.2 || a.ActiveAlerts != 0 || b.ActiveAlerts != 1 {
		t.Fatalf("farm/cow-1 %v alerts %d; farm2/cow-1 %v alerts %d", a.Metrics, a.ActiveAlerts, b.Metrics, b.ActiveAlerts)
	}
	for _, key := range []string{"farm/cow-1", "farm2/cow-1"} {
		if ds, err := g.p.Local(key); err != nil || ds.DeviceID != "cow-1" {
			t.Errorf("Local(%s): %+v %v", key, ds, err)
		}
	}
}

// A death certificate (Sparkplug B NDEATH/DDEATH through the bridge: a
// decode.MetricOffline reading) takes the device offline at once; its next
// live reading brings it back.
func TestOfflineByDeathCertificate(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{OfflineAfter: 10 * time.Minute}, serde)
	g.clock.Set(t0)
	g.sensor("edge-1:pump-2", "pressure", t0, 2.5)
	if ds := g.last(t); !ds.Online {
		t.Fatal("live reading left the device offline")
	}
	g.sensor("edge-1:pump-2", decode.MetricOffline, t0.Add(time.Second), 1)
	if ds := g.last(t); ds.Online || ds.DeviceID != "edge-1:pump-2" {
		t.Fatalf("after the death certificate: %+v", ds)
	}
	g.sensor("edge-1:pump-2", "pressure", t0.Add(2*time.Second), 2.6)
	if ds := g.last(t); !ds.Online {
		t.Fatal("a reading after the death did not bring the device back online")
	}
}
