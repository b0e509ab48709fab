package features

import (
	"errors"
	"fmt"
	"time"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/schemas"
)

// Windows is the features engine — the tumbling event-time windows,
// watermark, allowed lateness, idle close and aggregates (count, min, max,
// mean, stddev, first, last) of the features group — for other groups:
// stream apps with GROUP BY device, TUMBLE(size) run their windows on it,
// so there is one window implementation. A Windows is immutable and safe
// for concurrent use; a WindowState is not (goka gives each key's state to
// one goroutine at a time).
type Windows struct{ agg *aggregator }

// WindowState is one key's open windows and watermark: the features
// group's per-device state. Persist it with WindowStateCodec.
type WindowState = deviceState

// WindowStateCodec is the group-table codec of WindowState (the features
// group's versioned codec).
func WindowStateCodec() goka.Codec { return stateCodec }

// NewWindows returns the engine for windows of size with the given allowed
// lateness (event time) and idle timeout (wall clock).
func NewWindows(size, lateness, idle time.Duration) (*Windows, error) {
	if size < time.Second || size%time.Second != 0 {
		return nil, fmt.Errorf("window size %s: want whole seconds, at least 1s", size)
	}
	if lateness < 0 || idle <= 0 {
		return nil, errors.New("lateness must not be negative and the idle timeout must be positive")
	}
	return &Windows{agg: &aggregator{sizes: []int64{size.Milliseconds()}, lateness: lateness.Milliseconds(), idle: idle.Milliseconds()}}, nil
}

// Add adds value v of name (a metric, or an app's SELECT item) at event
// time ts to key's state st (key is TENANT/DEVICE) and returns the windows
// it closed or updated (late), as features; late reports a record
// behind the allowed lateness, which changes nothing.
func (w *Windows) Add(st *WindowState, key, tenant, name string, ts time.Time, v float64, now time.Time) (out []*schemas.Feature, late bool) {
	if tenant != "" {
		st.Tenant = tenant
	}
	em, oc := w.agg.addValue(st, key, name, ts.UnixMilli(), v, now.UnixMilli(), nil, nil)
	for _, e := range em {
		out = append(out, e.f)
	}
	return out, len(oc) == 1 && oc[0] == tooLate
}

// Tick closes key's windows by wall clock (the idle timeout) and returns
// them.
func (w *Windows) Tick(st *WindowState, key string, now time.Time) []*schemas.Feature {
	var out []*schemas.Feature
	for _, e := range w.agg.tick(st, key, now.UnixMilli(), nil) {
		out = append(out, e.f)
	}
	return out
}

// Open reports whether st holds windows not yet emitted or still
// accepting late records.
func (st *deviceState) Open() bool { return len(st.Windows) > 0 }
