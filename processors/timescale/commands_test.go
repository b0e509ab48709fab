package timescale

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/schemas"
)

// TestIntegrationWriterCommands folds commands.status records into the
// commands table: in order, out of order, replayed, with a late reply and
// a second terminal record, and reads the round trip back with psql too.
func TestIntegrationWriterCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()
	deadline := at(4, 1)
	rec := func(id string, s control.Status, sec int) schemas.CommandStatus {
		r := schemas.CommandStatus{CommandID: id, Tenant: "farm", DeviceID: "cow-1", Name: "ping", Status: string(s),
			CreatedAt: at(4, 0), ExpiresAt: &deadline, TS: at(4, 0).Add(time.Duration(sec) * time.Second), IngestedAt: at(4, 0)}
		switch s {
		case control.Queued:
			r.Payload = ptr(`{"n":1}`)
		case control.Succeeded, control.LateReply:
			r.Result = ptr(`{"ok":true}`)
		case control.Failed:
			r.Result, r.Message = ptr("not json"), ptr("battery low")
		}
		return r
	}
	type want struct {
		status string
		rttMS  *float64
		late   bool
	}
	steps := []struct {
		name  string
		recs  []schemas.CommandStatus
		wrote int64
		want  map[string]want
	}{
		{"lifecycle", []schemas.CommandStatus{rec("c1", control.Queued, 0), rec("c1", control.Sent, 1), rec("c1", control.Delivered, 1), rec("c1", control.Succeeded, 3)},
			4, map[string]want{"c1": {status: "succeeded", rttMS: ptr(2000.0)}}},
		{"replay changes nothing", []schemas.CommandStatus{rec("c1", control.Queued, 0), rec("c1", control.Sent, 1), rec("c1", control.Succeeded, 3)},
			0, map[string]want{"c1": {status: "succeeded", rttMS: ptr(2000.0)}}},
		{"second terminal loses", []schemas.CommandStatus{rec("c1", control.Expired, 60)},
			0, map[string]want{"c1": {status: "succeeded", rttMS: ptr(2000.0)}}},
		{"out of order", []schemas.CommandStatus{rec("c2", control.Delivered, 2), rec("c2", control.Failed, 4), rec("c2", control.Sent, 1), rec("c2", control.Queued, 0)},
			4, map[string]want{"c2": {status: "failed", rttMS: ptr(3000.0)}}},
		{"reply before its delivered", []schemas.CommandStatus{rec("c4", control.Queued, 0), rec("c4", control.Sent, 1), rec("c4", control.Succeeded, 2), rec("c4", control.Delivered, 1)},
			4, map[string]want{"c4": {status: "succeeded", rttMS: ptr(1000.0)}}},
		{"late reply recorded, not applied", []schemas.CommandStatus{rec("c3", control.Queued, 0), rec("c3", control.Sent, 1), rec("c3", control.Expired, 60), rec("c3", control.LateReply, 70)},
			4, map[string]want{"c3": {status: "expired", late: true}}},
	}
	for _, s := range steps {
		res, err := w.Write(ctx, &Batch{Commands: s.recs})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Written["commands"] != s.wrote {
			t.Errorf("%s: wrote %d rows, want %d", s.name, res.Written["commands"], s.wrote)
		}
		for id, wt := range s.want {
			var status string
			var rtt *float64
			var late *time.Time
			if err := c.QueryRow(ctx, "SELECT status, round_trip_ms, late_reply_at FROM commands WHERE tenant = 'farm' AND command_id = $1", id).Scan(&status, &rtt, &late); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			if status != wt.status || (rtt == nil) != (wt.rttMS == nil) || (rtt != nil && *rtt != *wt.rttMS) || (late != nil) != wt.late {
				t.Errorf("%s: %s = %s rtt %v late %v; want %+v", s.name, id, status, rtt, late, wt)
			}
		}
	}
	// psql reads the same: the failed command's result is stored as a
	// JSON string, its parameters as the object sent.
	out, err := exec.Command("psql", url, "-Atc", "SELECT command_id, status, result, params->>'n', message FROM commands WHERE command_id = 'c2'").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != `c2|failed|"not json"|1|battery low` {
		t.Errorf("psql: %q", got)
	}
}
