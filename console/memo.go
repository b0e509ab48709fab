package console

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// memo caches the result of an expensive read per key for ttl, and lets
// concurrent callers of the same key share one read: ten open pages cost
// what one costs. Errors are not cached. Safe for concurrent use.
type memo[T any] struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]memoEntry[T]
	flight  singleflight.Group
}

type memoEntry[T any] struct {
	val T
	at  time.Time
}

func newMemo[T any](ttl time.Duration, now func() time.Time) *memo[T] {
	return &memo[T]{ttl: ttl, now: now, entries: map[string]memoEntry[T]{}}
}

// get returns the cached value of key or calls read. The read runs on a
// context of its own (bounded by 30 s) so one caller going away does not
// fail the others waiting for it.
func (m *memo[T]) get(ctx context.Context, key string, read func(context.Context) (T, error)) (T, error) {
	m.mu.Lock()
	e, ok := m.entries[key]
	if ok && m.now().Sub(e.at) < m.ttl {
		m.mu.Unlock()
		return e.val, nil
	}
	m.mu.Unlock()
	ch := m.flight.DoChan(key, func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		v, err := read(rctx)
		if err != nil {
			return v, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		now := m.now()
		for k, old := range m.entries { // keep the map small
			if now.Sub(old.at) >= m.ttl {
				delete(m.entries, k)
			}
		}
		m.entries[key] = memoEntry[T]{val: v, at: now}
		return v, nil
	})
	select {
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	case r := <-ch:
		v, _ := r.Val.(T)
		return v, r.Err
	}
}
