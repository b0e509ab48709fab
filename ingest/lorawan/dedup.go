package lorawan

import (
	"sync"
	"time"
)

// Dedup remembers the uplink frames whose records Kafka acknowledged, for a
// while, so that a copy of one (another gateway's reception forwarded by a
// second network server, a retried webhook) yields no second record. It is
// per process: replicas behind a load balancer each keep their own, and
// the frame-derived event ids make a copy that slips past recognisable
// downstream.
type Dedup struct {
	ttl   time.Duration
	max   int
	mu    sync.Mutex
	seen  map[string]time.Time
	order []entry // insertion order, for expiry
}

type entry struct {
	key string
	at  time.Time
}

// NewDedup returns a Dedup that remembers a frame for ttl, at most max
// frames (the oldest are forgotten first).
func NewDedup(ttl time.Duration, max int) *Dedup {
	return &Dedup{ttl: ttl, max: max, seen: map[string]time.Time{}}
}

// Key returns the dedup key of an uplink event ("" for other kinds, which
// are never deduplicated).
func Key(e *Event) string {
	if e.Kind != KindUp {
		return ""
	}
	return string(frameKey(e))
}

// Seen reports whether the frame with key was marked within the ttl before
// now.
func (d *Dedup) Seen(key string, now time.Time) bool {
	if key == "" {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.seen[key]
	return ok && now.Sub(at) < d.ttl
}

// Mark remembers the frame with key as delivered at now. Call it once
// Kafka acknowledged the frame's records: a frame whose produce failed must
// be accepted when the network server retries it.
func (d *Dedup) Mark(key string, now time.Time) {
	if key == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[key] = now
	d.order = append(d.order, entry{key, now})
	for len(d.order) > 0 && (len(d.order) > d.max || now.Sub(d.order[0].at) >= d.ttl) {
		old := d.order[0]
		d.order = d.order[1:]
		if d.seen[old.key].Equal(old.at) {
			delete(d.seen, old.key)
		}
	}
}

// Len returns how many frames d remembers.
func (d *Dedup) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}
