package state

import (
	"maps"
	"slices"
	"time"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/schemas"
)

// shadow is one device's entry in the group table (JSON). Times are Unix
// milliseconds; 0 means unknown.
type shadow struct {
	Tenant   string `json:"tenant,omitempty"`
	LastSeen int64  `json:"seen,omitempty"` // newest event time
	Ingested int64  `json:"ing,omitempty"`  // newest ingest time
	LastWall int64  `json:"wall,omitempty"` // wall clock of the last live record
	Online   bool   `json:"online,omitempty"`

	Lat   float64 `json:"lat,omitempty"`
	Lon   float64 `json:"lon,omitempty"`
	PosTS int64   `json:"pos_ts,omitempty"`

	Battery    *float64 `json:"bat,omitempty"`
	BatteryTS  int64    `json:"bat_ts,omitempty"`
	Firmware   string   `json:"fw,omitempty"`
	FirmwareTS int64    `json:"fw_ts,omitempty"`

	Metrics map[string]metricValue `json:"m,omitempty"`
	// Active maps the ids of the device's firing alerts to their firing
	// time.
	Active map[string]int64 `json:"alerts,omitempty"`
	// Updated is the wall clock of the last change.
	Updated int64 `json:"upd,omitempty"`
	// Desired is the desired state (key → value); Version counts its
	// changes.
	Desired map[string]string `json:"des,omitempty"`
	Version int64             `json:"ver,omitempty"`
}

type metricValue struct {
	V  float64 `json:"v"`
	TS int64   `json:"ts"`
}

// alertNote is what the relay group forwards from alerts.events into the
// state group's loop topic (JSON).
// With Kind noteDesired it carries a desired-state update instead (from
// a "desired" command on commands.devices).
type alertNote struct {
	Kind    string `json:"kind,omitempty"`
	AlertID string `json:"id,omitempty"`
	State   string `json:"state,omitempty"`
	Tenant  string `json:"tenant,omitempty"`
	FiredAt int64  `json:"fired,omitempty"`
	// Desired maps keys to their desired value; "" removes the key.
	Desired map[string]string `json:"desired,omitempty"`
}

// noteDesired is the loop note kind of a desired-state update.
const noteDesired = "desired"

// DesiredCommand is the command name on commands.devices that sets
// desired state: its payload is a JSON object of key → value (a value
// that is not a JSON string is kept as its JSON text; "" or null removes
// the key).
const DesiredCommand = control.DesiredCommand

// Alert states on alerts.events (processors/alerts).
const (
	alertFiring   = "firing"
	alertResolved = "resolved"
)

// seen records a record's times; live records (not replayed) mark the
// device online.
func (s *shadow) seen(tenant string, ts, ingested, now int64, live bool) {
	if tenant != "" {
		s.Tenant = tenant
	}
	s.LastSeen = max(s.LastSeen, ts)
	s.Ingested = max(s.Ingested, ingested)
	if live {
		s.LastWall = max(s.LastWall, now)
		s.Online = true
	}
	s.Updated = now
}

func (s *shadow) metric(name string, ts int64, v float64, battery []string) {
	if s.Metrics == nil {
		s.Metrics = map[string]metricValue{}
	}
	if old, ok := s.Metrics[name]; !ok || ts >= old.TS {
		s.Metrics[name] = metricValue{V: v, TS: ts}
	}
	if slices.Contains(battery, name) && ts >= s.BatteryTS {
		s.Battery, s.BatteryTS = &v, ts
	}
}

func (s *shadow) attrs(ts int64, attrs map[string]string, firmware []string) {
	for _, k := range firmware {
		if v, ok := attrs[k]; ok && v != "" && ts >= s.FirmwareTS {
			s.Firmware, s.FirmwareTS = v, ts
			return
		}
	}
}

func (s *shadow) position(ts int64, lat, lon float64) {
	if ts >= s.PosTS {
		s.Lat, s.Lon, s.PosTS = lat, lon, ts
	}
}

func (s *shadow) alert(n *alertNote) {
	switch n.State {
	case alertFiring:
		if s.Active == nil {
			s.Active = map[string]int64{}
		}
		s.Active[n.AlertID] = n.FiredAt
	case alertResolved:
		delete(s.Active, n.AlertID)
	}
	if n.Tenant != "" && s.Tenant == "" {
		s.Tenant = n.Tenant
	}
}

// setDesired merges a desired-state update and reports whether it
// changed anything; each change increments Version.
func (s *shadow) setDesired(d map[string]string) bool {
	changed := false
	for k, v := range d {
		old, had := s.Desired[k]
		switch {
		case v == "" && had:
			delete(s.Desired, k)
			changed = true
		case v != "" && (!had || old != v):
			if s.Desired == nil {
				s.Desired = map[string]string{}
			}
			s.Desired[k] = v
			changed = true
		}
	}
	if changed {
		s.Version++
	}
	return changed
}

// checkOnline marks the device offline when no live record arrived for
// offlineAfter; it reports whether that changed anything.
func (s *shadow) checkOnline(now, offlineAfter int64) bool {
	if s.Online && now-s.LastWall >= offlineAfter {
		s.Online = false
		s.Updated = now
		return true
	}
	return false
}

func ms(t int64) time.Time { return time.UnixMilli(t).UTC() }

// record returns the shadow as the state.latest record.
func (s *shadow) record(device string) *schemas.DeviceState {
	ds := &schemas.DeviceState{
		Tenant:       s.Tenant,
		DeviceID:     device,
		TS:           ms(s.LastSeen),
		IngestedAt:   ms(s.Ingested),
		Online:       s.Online,
		LastSeen:     ms(s.LastSeen),
		Battery:      s.Battery,
		Metrics:      make(map[string]float64, len(s.Metrics)),
		ActiveAlerts: int32(len(s.Active)),
		UpdatedAt:    ms(s.Updated),
		Desired:      make(map[string]string, len(s.Desired)),
		Version:      s.Version,
	}
	maps.Copy(ds.Desired, s.Desired)
	for k, v := range s.Metrics {
		ds.Metrics[k] = v.V
	}
	if s.PosTS != 0 {
		lat, lon, pts := s.Lat, s.Lon, ms(s.PosTS)
		ds.Lat, ds.Lon, ds.PositionTS = &lat, &lon, &pts
	}
	if s.Firmware != "" {
		fw := s.Firmware
		ds.Firmware = &fw
	}
	return ds
}

// View is the JSON form of a device's state, as `drover state get` and
// GET /devices/{id} print it; field names follow the Avro record.
type View struct {
	Tenant       string             `json:"tenant"`
	DeviceID     string             `json:"device_id"`
	Online       bool               `json:"online"`
	LastSeen     time.Time          `json:"last_seen"`
	IngestedAt   time.Time          `json:"ingested_at"`
	Lat          *float64           `json:"lat,omitempty"`
	Lon          *float64           `json:"lon,omitempty"`
	PositionTS   *time.Time         `json:"position_ts,omitempty"`
	Battery      *float64           `json:"battery,omitempty"`
	Firmware     *string            `json:"firmware,omitempty"`
	Metrics      map[string]float64 `json:"metrics"`
	ActiveAlerts int32              `json:"active_alerts"`
	UpdatedAt    time.Time          `json:"updated_at"`
	// Desired is the desired state, Version its version, Delta the
	// desired keys whose reported value differs (pending).
	Desired map[string]string `json:"desired"`
	Version int64             `json:"version"`
	Delta   map[string]string `json:"delta"`
}

// Reported returns the device's reported value of key: the metric of
// that name (shortest decimal form), or for "firmware" the firmware.
func Reported(ds *schemas.DeviceState, key string) (string, bool) { return control.Reported(ds, key) }

// Delta returns the pending delta: the desired keys whose reported value
// is missing or differs (control.Delta).
func Delta(ds *schemas.DeviceState) map[string]string { return control.Delta(ds) }

// ViewOf converts a state.latest record to its JSON form.
func ViewOf(ds *schemas.DeviceState) View {
	m := ds.Metrics
	if m == nil {
		m = map[string]float64{}
	}
	des := ds.Desired
	if des == nil {
		des = map[string]string{}
	}
	return View{
		Tenant: ds.Tenant, DeviceID: ds.DeviceID, Online: ds.Online, LastSeen: ds.LastSeen, IngestedAt: ds.IngestedAt,
		Lat: ds.Lat, Lon: ds.Lon, PositionTS: ds.PositionTS, Battery: ds.Battery, Firmware: ds.Firmware,
		Metrics: m, ActiveAlerts: ds.ActiveAlerts, UpdatedAt: ds.UpdatedAt,
		Desired: des, Version: ds.Version, Delta: Delta(ds),
	}
}
