package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/bridge/simulate"
)

// errNoDB answers the database pages of a console started without one.
var errNoDB = errors.New("no database configured (--console-database-url): devices and alerts need it")

// Device is one row of the Devices page (from device_state, which the sink
// keeps from state.latest).
type Device struct {
	Tenant       string     `json:"tenant"`
	DeviceID     string     `json:"device_id"`
	Online       bool       `json:"online"`
	LastSeen     time.Time  `json:"last_seen"`
	Lat          *float64   `json:"lat"`
	Lon          *float64   `json:"lon"`
	PositionTS   *time.Time `json:"position_ts"`
	Battery      *float64   `json:"battery"`
	Firmware     *string    `json:"firmware"`
	ActiveAlerts int        `json:"active_alerts"`
	UpdatedAt    time.Time  `json:"updated_at"`
	// Registry is the device's registry entry (status unregistered when
	// the registry does not know it); nil when the registry could not be
	// read.
	Registry *RegistryInfo `json:"registry"`
}

const deviceColumns = `tenant, device_id, online, last_seen, lat, lon, position_ts, battery, firmware, active_alerts, updated_at`

func scanDevice(row pgx.Row, d *Device, extra ...any) error {
	return row.Scan(append([]any{&d.Tenant, &d.DeviceID, &d.Online, &d.LastSeen, &d.Lat, &d.Lon, &d.PositionTS, &d.Battery,
		&d.Firmware, &d.ActiveAlerts, &d.UpdatedAt}, extra...)...)
}

// maxDevices bounds the table; search narrows it on the server.
const maxDevices = 5000

func (s *Server) listDevices(ctx context.Context, q string) ([]Device, error) {
	rows, err := s.query(ctx, `SELECT `+deviceColumns+` FROM device_state
		WHERE $1 = '' OR strpos(lower(tenant || '/' || device_id || ' ' || coalesce(firmware, '')), lower($1)) > 0
		ORDER BY tenant, device_id LIMIT `+fmt.Sprint(maxDevices), q)
	if err != nil {
		return nil, fmt.Errorf("device_state: %w", err)
	}
	defer rows.Close()
	out := []Device{}
	for rows.Next() {
		var d Device
		if err := scanDevice(rows, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (s *Server) serveDevices(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DB == nil {
		writeError(w, http.StatusServiceUnavailable, errNoDB)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	list, err := s.devices.get(r.Context(), q, func(ctx context.Context) ([]Device, error) { return s.listDevices(ctx, q) })
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	// The registry's status is joined at every request (the view is in
	// memory), on a copy: the cached list is shared.
	out := slices.Clone(list)
	if v, err := s.devreg.get(r.Context()); err != nil {
		s.cfg.Log.Debug("console: devices without registry status", "err", err)
	} else {
		for i := range out {
			out[i].Registry = registryInfo(v, out[i].Tenant, out[i].DeviceID)
		}
	}
	writeJSON(w, out)
}

// DeviceDetail is a device's page: its shadow, recent readings per metric,
// last GPS fix, alerts and dead letters.
type DeviceDetail struct {
	Device
	Metrics     map[string]float64 `json:"metrics"`
	Series      map[string][]Point `json:"series"`
	LastFix     *Fix               `json:"last_fix"`
	Alerts      []AlertRow         `json:"alerts"`
	DeadLetters []LetterRow        `json:"dead_letters"`
	// RegistryDevice is the device's registry entry; nil when it is not
	// registered or the registry could not be read (see Problems).
	RegistryDevice *RegistryDevice `json:"registry_device"`
	// Problems are the parts that could not be read.
	Problems []string `json:"problems,omitempty"`
}

// Point is one reading.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Fix is a GPS fix.
type Fix struct {
	TS  time.Time `json:"ts"`
	Lat float64   `json:"lat"`
	Lon float64   `json:"lon"`
}

// seriesPoints is how many of the latest readings per metric the charts get.
const seriesPoints = 300

var errNoDevice = errors.New("no such device")

func (s *Server) deviceDetail(ctx context.Context, tenant, device string) (DeviceDetail, error) {
	d := DeviceDetail{Series: map[string][]Point{}, Alerts: []AlertRow{}, DeadLetters: []LetterRow{}}
	var metrics []byte
	err := scanDevice(s.queryRow(ctx, `SELECT `+deviceColumns+`, metrics FROM device_state WHERE tenant = $1 AND device_id = $2`, tenant, device), &d.Device, &metrics)
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("%w %s/%s in device_state", errNoDevice, tenant, device)
	}
	if err != nil {
		return d, fmt.Errorf("device_state: %w", err)
	}
	if err := json.Unmarshal(metrics, &d.Metrics); err != nil {
		d.Problems = append(d.Problems, "metrics: "+err.Error())
	}
	for metric := range d.Metrics {
		pts, err := s.series(ctx, tenant, device, metric)
		if err != nil {
			d.Problems = append(d.Problems, "readings: "+err.Error())
			break
		}
		d.Series[metric] = pts
	}
	var f Fix
	err = s.queryRow(ctx, `SELECT ts, lat, lon FROM gps_fixes WHERE tenant = $1 AND device_id = $2 ORDER BY ts DESC LIMIT 1`, tenant, device).Scan(&f.TS, &f.Lat, &f.Lon)
	switch {
	case err == nil:
		d.LastFix = &f
	case !errors.Is(err, pgx.ErrNoRows):
		d.Problems = append(d.Problems, "gps_fixes: "+err.Error())
	}
	if d.Alerts, err = s.queryAlerts(ctx, alertQuery{Tenant: tenant, Device: device, Limit: 100}); err != nil {
		d.Problems = append(d.Problems, "alerts: "+err.Error())
	}
	now := s.cfg.Now().Truncate(time.Second)
	letters, err := s.listLetters(ctx, LetterFilter{Since: now.Add(-24 * time.Hour), Tenant: tenant, Device: device, Limit: 50})
	if err != nil {
		d.Problems = append(d.Problems, "dead letters: "+err.Error())
	}
	d.DeadLetters = letters.Letters
	return d, nil
}

// series returns a metric's latest readings, oldest first (the primary
// key's index serves it).
func (s *Server) series(ctx context.Context, tenant, device, metric string) ([]Point, error) {
	rows, err := s.query(ctx, `SELECT ts, value FROM (SELECT ts, value FROM sensor_readings
		WHERE tenant = $1 AND device_id = $2 AND metric = $3 ORDER BY ts DESC LIMIT `+fmt.Sprint(seriesPoints)+`) r ORDER BY ts`, tenant, device, metric)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	pts := []Point{}
	for rows.Next() {
		var p Point
		if err := rows.Scan(&p.T, &p.V); err != nil {
			return nil, err
		}
		pts = append(pts, p)
	}
	return pts, rows.Err()
}

func (s *Server) serveDevice(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DB == nil {
		writeError(w, http.StatusServiceUnavailable, errNoDB)
		return
	}
	tenant, device := r.PathValue("tenant"), r.PathValue("device")
	d, err := s.device.get(r.Context(), tenant+"/"+device, func(ctx context.Context) (DeviceDetail, error) { return s.deviceDetail(ctx, tenant, device) })
	switch {
	case errors.Is(err, errNoDevice):
		writeError(w, http.StatusNotFound, err)
	case err != nil:
		writeError(w, http.StatusBadGateway, err)
	default:
		d.Problems = slices.Clone(d.Problems) // the cached detail is shared
		if v, err := s.devreg.get(r.Context()); err != nil {
			d.Problems = append(d.Problems, err.Error())
		} else {
			d.Registry = registryInfo(v, tenant, device)
			if rd, ok := v.Device(tenant, device); ok {
				e := registryDevice(rd)
				d.RegistryDevice = &e
			}
		}
		writeJSON(w, d)
	}
}

// PaddocksGeoJSON renders a pasture polygon as a GeoJSON FeatureCollection.
func PaddocksGeoJSON(pg simulate.Polygon) []byte {
	ring := func(pts []simulate.Point) [][2]float64 {
		out := make([][2]float64, len(pts))
		for i, p := range pts {
			out[i] = [2]float64{p.Lon, p.Lat}
		}
		return out
	}
	coords := [][][2]float64{ring(pg.Outer)}
	for _, h := range pg.Holes {
		coords = append(coords, ring(h))
	}
	fc := map[string]any{"type": "FeatureCollection", "features": []any{map[string]any{
		"type": "Feature", "properties": map[string]string{"name": "paddock"},
		"geometry": map[string]any{"type": "Polygon", "coordinates": coords},
	}}}
	b, _ := json.Marshal(fc)
	return b
}

func (s *Server) servePaddocks(w http.ResponseWriter, _ *http.Request) {
	b := s.cfg.Paddocks
	if b == nil {
		b = PaddocksGeoJSON(simulate.DefaultPasture())
	}
	w.Header().Set("Content-Type", "application/geo+json")
	_, _ = w.Write(b)
}
