package control

import (
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
)

func TestFold(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	deadline := t0.Add(time.Minute)
	rec := func(s Status, sec int) *schemas.CommandStatus {
		return &schemas.CommandStatus{CommandID: "c1", Tenant: "farm1", DeviceID: "cow-1", Name: "ping", Status: string(s),
			CreatedAt: t0, ExpiresAt: &deadline, TS: t0.Add(time.Duration(sec) * time.Second)}
	}
	tests := []struct {
		name    string
		recs    []*schemas.CommandStatus
		want    Status
		rtt     time.Duration
		late    bool
		endedAt int
	}{
		{name: "in order", recs: []*schemas.CommandStatus{rec(Queued, 0), rec(Sent, 1), rec(Delivered, 1), rec(Succeeded, 3)}, want: Succeeded, rtt: 2 * time.Second, endedAt: 3},
		{name: "first terminal wins", recs: []*schemas.CommandStatus{rec(Queued, 0), rec(Sent, 1), rec(Failed, 2), rec(Succeeded, 3), rec(Expired, 60)}, want: Failed, rtt: time.Second, endedAt: 2},
		{name: "late reply is not applied", recs: []*schemas.CommandStatus{rec(Queued, 0), rec(Sent, 1), rec(Expired, 60), rec(LateReply, 61)}, want: Expired, late: true, endedAt: 60},
		{name: "reply before its delivered", recs: []*schemas.CommandStatus{rec(Queued, 0), rec(Sent, 1), rec(Succeeded, 2), rec(Delivered, 1)}, want: Succeeded, rtt: time.Second, endedAt: 2},
		{name: "earlier state after a later one", recs: []*schemas.CommandStatus{rec(Delivered, 1), rec(Sent, 1), rec(Queued, 0)}, want: Delivered},
		{name: "resend keeps the first send", recs: []*schemas.CommandStatus{rec(Queued, 0), rec(Sent, 1), rec(Sent, 5), rec(Succeeded, 6)}, want: Succeeded, rtt: 5 * time.Second, endedAt: 6},
		{name: "unknown status ignored", recs: []*schemas.CommandStatus{rec(Queued, 0), rec("bogus", 1)}, want: Queued},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Command
			for _, r := range tt.recs {
				Fold(&c, r)
			}
			if c.Status != tt.want || c.RoundTrip() != tt.rtt || (!c.LateReplyAt.IsZero()) != tt.late {
				t.Errorf("status %s rtt %s late %v; want %s %s %v", c.Status, c.RoundTrip(), !c.LateReplyAt.IsZero(), tt.want, tt.rtt, tt.late)
			}
			if tt.endedAt > 0 && !c.EndedAt.Equal(t0.Add(time.Duration(tt.endedAt)*time.Second)) {
				t.Errorf("ended at %s", c.EndedAt)
			}
			// Folding the same records again (a replay) changes nothing.
			before := c
			for _, r := range tt.recs {
				Fold(&c, r)
			}
			if c.Status != before.Status || c.SentAt != before.SentAt || c.EndedAt != before.EndedAt {
				t.Errorf("replay changed %+v to %+v", before, c)
			}
		})
	}
	var c Command
	Fold(&c, rec(Delivered, 1))
	if !c.Overdue(deadline) || c.Overdue(deadline.Add(-time.Millisecond)) {
		t.Error("Overdue wrong around the deadline")
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"c-1": true, "c-0123abcd": true, "": false, "a/b": false, "+": false, "-x": false} {
		if err := ValidID(id); (err == nil) != ok {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	if !ValidReplyTopic("f", "d", "devices/f/d/replies/x") || ValidReplyTopic("f", "d", "devices/f/e/replies/x") || ValidReplyTopic("f", "d", "devices/f/d/replies/x/y") {
		t.Error("ValidReplyTopic")
	}
}
