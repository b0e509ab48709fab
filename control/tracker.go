package control

import (
	"sync"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// Tracker is the folded view of every command seen on commands.status.
// Safe for concurrent use.
type Tracker struct {
	mu   sync.Mutex
	cmds map[string]*Command
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{cmds: map[string]*Command{}} }

// Apply folds r into its command and returns the command after it.
func (t *Tracker) Apply(r *schemas.CommandStatus) Command {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cmds[r.CommandID]
	if c == nil {
		c = &Command{}
		t.cmds[r.CommandID] = c
	}
	Fold(c, r)
	return *c
}

// Get returns the command with id, if the tracker knows it.
func (t *Tracker) Get(id string) (Command, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.cmds[id]
	if !ok {
		return Command{}, false
	}
	return *c, true
}

// Len returns the number of commands known.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.cmds)
}

// Overdue returns the open commands whose deadline passed before now.
func (t *Tracker) Overdue(now time.Time) []Command {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Command
	for _, c := range t.cmds {
		if c.Overdue(now) {
			out = append(out, *c)
		}
	}
	return out
}

// Open returns the commands of tenant/device that are not ended and not
// yet delivered (queued, or sent without the broker's acknowledgement).
func (t *Tracker) Open(tenant, device string) []Command {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Command
	for _, c := range t.cmds {
		if c.Tenant == tenant && c.Device == device && (c.Status == Queued || c.Status == Sent) {
			out = append(out, *c)
		}
	}
	return out
}

// Prune forgets commands that ended before before (a reply to one of them
// later is a reply to an unknown command).
func (t *Tracker) Prune(before time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for id, c := range t.cmds {
		if c.Status.Terminal() && c.EndedAt.Before(before) {
			delete(t.cmds, id)
			n++
		}
	}
	return n
}
