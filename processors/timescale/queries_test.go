package timescale

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/drover-iot/drover/schemas"
)

// exampleQueries reads queries.sql: name → SQL (without comment lines).
func exampleQueries(t *testing.T) (names []string, sql map[string]string) {
	t.Helper()
	b, err := os.ReadFile("queries.sql")
	if err != nil {
		t.Fatal(err)
	}
	sql = map[string]string{}
	var name string
	var lines []string
	flush := func() {
		if name != "" {
			sql[name] = strings.TrimSpace(strings.Join(lines, "\n"))
			names = append(names, name)
		}
		lines = nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(line, "-- name: "); ok {
			flush()
			name = strings.TrimSpace(n)
			continue
		}
		if strings.HasPrefix(line, "--") {
			continue
		}
		lines = append(lines, line)
	}
	flush()
	return names, sql
}

func TestReadmeHasExampleQueries(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	names, sql := exampleQueries(t)
	if len(names) != 6 {
		t.Fatalf("queries.sql has %d queries, want 6", len(names))
	}
	for _, n := range names {
		if !strings.Contains(string(readme), sql[n]) {
			t.Errorf("README.md does not contain query %s verbatim:\n%s", n, sql[n])
		}
	}
}

// analystDataset is the known data the example queries are checked on.
func analystDataset() *Batch {
	d1 := day0.AddDate(0, 0, 1)
	reading := func(dev string, ts time.Time, v float64) schemas.SensorReading {
		return schemas.SensorReading{EventID: dev + ts.String(), Tenant: "demo", DeviceID: dev, TS: ts, IngestedAt: ts, Metric: "temperature", Value: v, Unit: ptr("Cel"), Source: "mqtt"}
	}
	fix := func(dev string, ts time.Time, lat float64) schemas.GPSFix {
		return schemas.GPSFix{EventID: dev + ts.String(), Tenant: "demo", DeviceID: dev, TS: ts, IngestedAt: ts, Lat: lat, Lon: 8, Source: "mqtt"}
	}
	alert := func(id, rule string, fired time.Time) schemas.Alert {
		return schemas.Alert{AlertID: id, Rule: rule, Kind: "threshold", Tenant: "demo", DeviceID: "collar-1", State: "firing", Severity: "warning", Message: rule, FiredAt: fired, TS: fired, IngestedAt: fired}
	}
	dl := func(id, reason string, at time.Time) DeadLetter {
		return DeadLetter{DeadLetter: schemas.DeadLetter{ID: id, Stage: "validate", Reason: reason, Message: reason, Source: "devices/demo/collar-1/sensor", Payload: []byte("x"), PayloadSize: 1, ReceivedAt: at, TS: at, IngestedAt: at}}
	}
	resolved := alert("a2", "fever", at(9, 0))
	resolved.State, resolved.ResolvedAt, resolved.TS = "resolved", ptr(at(10, 0)), at(10, 0)
	return &Batch{
		Readings: []schemas.SensorReading{
			reading("collar-1", at(1, 0), 38.0), reading("collar-1", at(1, 30), 39.0), reading("collar-1", at(2, 15), 40.0),
			reading("collar-2", at(1, 10), 38.2),
			{EventID: "b", Tenant: "demo", DeviceID: "collar-1", TS: at(1, 5), IngestedAt: at(1, 5), Metric: "battery", Value: 3.7, Unit: ptr("V")},
		},
		Fixes: []schemas.GPSFix{
			fix("collar-1", at(6, 0), 47.000), fix("collar-1", at(7, 0), 47.001), fix("collar-1", at(8, 0), 47.002),
			fix("collar-1", d1.Add(time.Hour), 47.003),
			fix("collar-2", at(6, 0), 46.5),
		},
		Alerts: []schemas.Alert{alert("a1", "fever", at(8, 0)), alert("a2", "fever", at(9, 0)), resolved, alert("a3", "low_battery", at(9, 30)), alert("a4", "fever", d1.Add(2*time.Hour))},
		States: []schemas.DeviceState{
			{Tenant: "demo", DeviceID: "collar-1", TS: at(10, 0), IngestedAt: at(10, 0), Online: true, LastSeen: at(10, 0), Battery: ptr(3.7), Lat: ptr(47.002), Lon: ptr(8.0), ActiveAlerts: 2, UpdatedAt: at(10, 0)},
			{Tenant: "demo", DeviceID: "collar-2", TS: at(6, 0), IngestedAt: at(6, 0), Online: false, LastSeen: at(6, 0), UpdatedAt: at(6, 0)},
			{Tenant: "demo", DeviceID: "cam-1", TS: at(6, 0), IngestedAt: at(6, 0), Online: true, LastSeen: at(6, 0), UpdatedAt: at(6, 0)},
		},
		Devices: []Device{
			{Tenant: "demo", DeviceID: "collar-1", Status: "active", Type: "collar", Labels: map[string]string{"herd": "north"}, CreatedAt: at(0, 0), UpdatedAt: at(0, 0), IngestedAt: at(0, 0)},
			{Tenant: "demo", DeviceID: "collar-2", Status: "active", Type: "collar", Labels: map[string]string{"herd": "south"}, CreatedAt: at(0, 0), UpdatedAt: at(0, 0), IngestedAt: at(0, 0)},
			{Tenant: "demo", DeviceID: "cam-1", Status: "active", Type: "camera-trap", CreatedAt: at(0, 0), UpdatedAt: at(0, 0), IngestedAt: at(0, 0)},
		},
		DeadLetters: []DeadLetter{dl("d1", "schema_mismatch", at(3, 0)), dl("d2", "schema_mismatch", at(4, 0)), dl("d3", "schema_mismatch", at(5, 0)), dl("d4", "not_json", at(5, 0))},
	}
}

// cell formats one result value for comparison.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04")
	case pgtype.Numeric:
		f, _ := x.Float64Value()
		return strconv.FormatFloat(f.Float64, 'f', -1, 64)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmtID(v), "\n", " "), "  ", " "))
}

func TestIntegrationExampleQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	ctx := context.Background()
	if _, err := w.Write(ctx, analystDataset()); err != nil {
		t.Fatal(err)
	}
	c := connect(t, url)
	if _, err := RefreshRollups(ctx, c, layout); err != nil {
		t.Fatal(err)
	}
	// Run the queries as the analyst, as the README tells analysts to.
	setRole(t, c, AnalystRole)
	d := func(days, h, m int) string {
		return cell(day0.AddDate(0, 0, days).Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute))
	}
	want := map[string][][]string{
		"hourly_body_temperature": {
			{d(0, 1, 0), "collar-1", "38.5", "2"},
			{d(0, 2, 0), "collar-1", "40", "1"},
			{d(0, 1, 0), "collar-2", "38.2", "1"},
		},
		// 0.001° of latitude is 111.2 m on the mean Earth sphere.
		"distance_per_day": {
			{d(0, 0, 0), "collar-1", "222", "3"},
			{d(1, 0, 0), "collar-1", "111", "1"},
			{d(0, 0, 0), "collar-2", "0", "1"},
		},
		"alerts_per_rule_per_day": {
			{d(0, 0, 0), "fever", "2"},
			{d(0, 0, 0), "low_battery", "1"},
			{d(1, 0, 0), "fever", "1"},
		},
		"dead_letter_rate_by_reason": {
			{"schema_mismatch", "3", "75"},
			{"not_json", "1", "25"},
		},
		"temperature_by_herd": {
			{"north", "1", "3", "39"},
			{"south", "1", "1", "38.2"},
		},
		"herd_latest_state": {
			{"collar-1", "true", d(0, 10, 0), "3.7", "47.002", "8", "2"},
			{"collar-2", "false", d(0, 6, 0), "NULL", "NULL", "NULL", "0"},
		},
	}
	names, sql := exampleQueries(t)
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			rows, err := c.Query(ctx, sql[n])
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			var got [][]string
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				var r []string
				for _, v := range vals {
					r = append(r, cell(v))
				}
				got = append(got, r)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if fmtID(got) != fmtID(want[n]) {
				t.Fatalf("%s (%s path):\n got %v\nwant %v", n, layout.Path(), got, want[n])
			}
		})
	}
}
