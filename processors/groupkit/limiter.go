package groupkit

import (
	"sync/atomic"
	"time"
)

// Limiter lets one event through per interval (e.g. a log line about a
// bad record) and counts the ones it held back. The zero value allows one
// event per second. Safe for concurrent use.
type Limiter struct {
	// Interval between allowed events; 0 means one second.
	Interval time.Duration

	next       atomic.Int64 // unix nanos
	suppressed atomic.Int64
}

// Allow reports whether an event at now may pass and, when it may, how
// many events were held back since the last one that passed.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed int64) {
	iv := l.Interval
	if iv <= 0 {
		iv = time.Second
	}
	n := now.UnixNano()
	next := l.next.Load()
	if n < next || !l.next.CompareAndSwap(next, n+int64(iv)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
