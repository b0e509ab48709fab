package console

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// AlertRow is one alert (the alerts table keeps one row per alert through
// its lifecycle).
type AlertRow struct {
	AlertID    string     `json:"alert_id"`
	Rule       string     `json:"rule"`
	Kind       string     `json:"kind"`
	Tenant     string     `json:"tenant"`
	DeviceID   string     `json:"device_id"`
	State      string     `json:"state"`
	Severity   string     `json:"severity"`
	Value      *float64   `json:"value"`
	Threshold  *float64   `json:"threshold"`
	Message    string     `json:"message"`
	FiredAt    time.Time  `json:"fired_at"`
	ResolvedAt *time.Time `json:"resolved_at"`
	// Seconds is how long it fired (until now while active).
	Seconds float64 `json:"seconds"`
}

type alertQuery struct {
	State          string // firing, resolved or "" for both
	Tenant, Device string
	Limit          int
}

func (s *Server) queryAlerts(ctx context.Context, q alertQuery) ([]AlertRow, error) {
	rows, err := s.query(ctx, `SELECT alert_id, rule, kind, tenant, device_id, state, severity, value, threshold, message, fired_at, resolved_at,
		extract(epoch FROM coalesce(resolved_at, now()) - fired_at)::float8
		FROM alerts WHERE ($1 = '' OR state = $1) AND ($2 = '' OR tenant = $2) AND ($3 = '' OR device_id = $3)
		ORDER BY fired_at DESC LIMIT $4`, q.State, q.Tenant, q.Device, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	defer rows.Close()
	out := []AlertRow{}
	for rows.Next() {
		var a AlertRow
		if err := rows.Scan(&a.AlertID, &a.Rule, &a.Kind, &a.Tenant, &a.DeviceID, &a.State, &a.Severity, &a.Value, &a.Threshold,
			&a.Message, &a.FiredAt, &a.ResolvedAt, &a.Seconds); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// serveAlerts lists alerts: ?state=firing|resolved (default both), newest
// first, at most 500.
func (s *Server) serveAlerts(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DB == nil {
		writeError(w, http.StatusServiceUnavailable, errNoDB)
		return
	}
	state := r.URL.Query().Get("state")
	if state != "" && state != "firing" && state != "resolved" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("state: %q is not firing or resolved", state))
		return
	}
	list, err := s.alerts.get(r.Context(), state, func(ctx context.Context) ([]AlertRow, error) {
		return s.queryAlerts(ctx, alertQuery{State: state, Limit: 500})
	})
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, list)
}
