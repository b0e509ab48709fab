package control

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Status is a command's state, or (LateReply) a record that is no state.
type Status string

// The states of a command, in order, and the late_reply record.
const (
	Queued    Status = "queued"
	Sent      Status = "sent"
	Delivered Status = "delivered"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Expired   Status = "expired"
	// LateReply records a reply that came after the deadline or after the
	// command ended; it does not change the command's status.
	LateReply Status = "late_reply"
)

// Terminal reports whether s ends a command.
func (s Status) Terminal() bool { return s == Succeeded || s == Failed || s == Expired }

func (s Status) rank() int {
	switch s {
	case Queued:
		return 1
	case Sent:
		return 2
	case Delivered:
		return 3
	case Succeeded, Failed, Expired:
		return 4
	}
	return 0
}

// Valid reports whether s is one of the statuses a record may carry.
func (s Status) Valid() bool { return s.rank() > 0 || s == LateReply }

// CommandTopic returns the MQTT topic a command is published on:
// devices/{tenant}/{device}/commands/{id}.
func CommandTopic(tenant, device, id string) string {
	return "devices/" + tenant + "/" + device + "/commands/" + id
}

// ReplyTopic returns the MQTT topic a device replies on:
// devices/{tenant}/{device}/replies/{id}.
func ReplyTopic(tenant, device, id string) string {
	return "devices/" + tenant + "/" + device + "/replies/" + id
}

// ValidReplyTopic reports whether topic may be a command's reply topic: it
// must lie under the device's own replies/ (a device may publish nowhere
// else, and the bridge reads replies only there).
func ValidReplyTopic(tenant, device, topic string) bool {
	rest, ok := strings.CutPrefix(topic, "devices/"+tenant+"/"+device+"/replies/")
	return ok && rest != "" && !strings.ContainsAny(rest, "/+#\x00")
}

// Command is the folded view of one command's records.
type Command struct {
	ID, Tenant, Device, Name string
	Status                   Status
	CreatedAt                time.Time
	ExpiresAt                *time.Time // deadline; nil = none
	Payload                  *string    // parameters (JSON), from the queued record
	QueuedAt, SentAt         time.Time  // zero until seen; SentAt is the first send
	DeliveredAt, EndedAt     time.Time
	Sends                    int     // sent records (more than one after a resend)
	Result, Message          *string // the applied reply, or why it expired
	LateReplies              int
	LateReplyAt              time.Time // the last late reply
}

// RoundTrip is the time from the first send to the reply (zero when the
// command did not end by a reply).
func (c *Command) RoundTrip() time.Duration {
	if (c.Status != Succeeded && c.Status != Failed) || c.SentAt.IsZero() {
		return 0
	}
	return c.EndedAt.Sub(c.SentAt)
}

// Overdue reports whether the command is still open at now although its
// deadline has passed.
func (c *Command) Overdue(now time.Time) bool {
	return !c.Status.Terminal() && c.ExpiresAt != nil && !now.Before(*c.ExpiresAt)
}

// Fold applies one status record to c (zero for a new command) and reports
// whether it changed c. The first terminal record wins; an earlier state
// arriving late (a replay, a resend) only fills in its time.
func Fold(c *Command, r *schemas.CommandStatus) bool {
	s := Status(r.Status)
	if !s.Valid() {
		return false
	}
	if c.ID == "" {
		c.ID, c.Tenant, c.Device, c.Name = r.CommandID, r.Tenant, r.DeviceID, r.Name
		c.CreatedAt, c.ExpiresAt = r.CreatedAt, r.ExpiresAt
	}
	if c.ExpiresAt == nil && r.ExpiresAt != nil {
		c.ExpiresAt = r.ExpiresAt
	}
	at := r.TS
	changed := false
	setOnce := func(t *time.Time) {
		if t.IsZero() || at.Before(*t) {
			*t, changed = at, true
		}
	}
	switch s {
	case Queued:
		setOnce(&c.QueuedAt)
		if c.Payload == nil && r.Payload != nil {
			c.Payload, changed = r.Payload, true
		}
	case Sent:
		setOnce(&c.SentAt)
		c.Sends++
		changed = true
	case Delivered:
		setOnce(&c.DeliveredAt)
	case LateReply:
		c.LateReplies++
		c.LateReplyAt = at
		return true
	default: // terminal
		if c.Status.Terminal() {
			return changed
		}
		c.Status, c.EndedAt, c.Result, c.Message = s, at, r.Result, r.Message
		return true
	}
	if !c.Status.Terminal() && s.rank() > c.Status.rank() {
		c.Status, changed = s, true
	}
	return changed
}

// Record returns a status record for c moving to s at at.
func (c *Command) Record(s Status, at time.Time) *schemas.CommandStatus {
	return &schemas.CommandStatus{
		CommandID: c.ID, Tenant: c.Tenant, DeviceID: c.Device, Name: c.Name, Status: string(s),
		CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, TS: at.UTC().Truncate(time.Millisecond),
		IngestedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// FromCommand returns the view of a command record not yet queued.
func FromCommand(d *schemas.DeviceCommand) *Command {
	p := d.Payload
	return &Command{ID: d.CommandID, Tenant: d.Tenant, Device: d.DeviceID, Name: d.Name,
		CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt, Payload: &p}
}

// ValidID checks a command id: it becomes an MQTT topic level, so it has
// the identity alphabet (1–128 bytes of A-Z a-z 0-9 . _ : -, starting with
// a letter or digit).
func ValidID(id string) error {
	var ie *identity.Error
	if err := identity.ValidDevice(id); errors.As(err, &ie) {
		return fmt.Errorf("command id %s %s", strconv.Quote(id), ie.Reason)
	} else if err != nil {
		return err
	}
	return nil
}
