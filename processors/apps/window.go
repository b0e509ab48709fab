package apps

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// WindowPayload is the payload of a windowed app's record: one SELECT
// item's aggregates over one window of one device (the features engine's
// aggregates).
type WindowPayload struct {
	Name        string    `json:"name"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Count       int64     `json:"count"`
	Min         *float64  `json:"min"`
	Max         *float64  `json:"max"`
	Mean        *float64  `json:"mean"`
	Stddev      *float64  `json:"stddev"`
	First       *float64  `json:"first"`
	Last        *float64  `json:"last"`
	LateUpdates int64     `json:"late_updates"`
}

func windowState(ctx goka.Context) *features.WindowState {
	if st, ok := ctx.Value().(*features.WindowState); ok && st != nil {
		return st
	}
	return &features.WindowState{}
}

// windowed adds an admitted record's aggregated values to its device's
// windows and writes the windows that closed.
func (p *Processor) windowed(ctx goka.Context, src Source) {
	tenant, _, out, err := p.app.admit(src)
	if err != nil {
		p.m.errors.Inc()
		p.warn("query failed on a record; it counts as filtered", ctx, err)
	}
	switch out {
	case filtered:
		p.m.filtered.Inc()
		return
	case skipped:
		p.m.skipped.Inc()
		return
	}
	ts, ok := src.Value["ts"].(time.Time)
	if !ok {
		p.m.errors.Inc()
		p.warn("record without an event time (ts); it counts as filtered", ctx, nil)
		p.m.filtered.Inc()
		return
	}
	st := windowState(ctx)
	if next := nextOffset(st, src.Topic); next != nil {
		// goka redelivers what was processed but not committed after a
		// crash; the state remembers the next offset of its input, as the
		// features group's does, so a record counts once.
		if src.Offset < *next {
			p.m.duplicates.Inc()
			return
		}
		*next = src.Offset + 1
	}
	now := p.clock()
	for _, it := range p.app.Window.Aggregated {
		v, err := it.Expr.Eval(src.Value)
		f, isNum := toFloat(v)
		if err != nil || !isNum {
			p.m.errors.Inc()
			if err == nil {
				err = fmt.Errorf("%s is %v, not a number", it.Name, v)
			}
			p.warn("value to aggregate is no number; skipped", ctx, err)
			continue
		}
		fs, late := p.win.Add(st, ctx.Key(), tenant, it.Name, ts, f, now)
		if late {
			p.m.tooLate.Inc()
		}
		p.emitWindows(ctx, src.Topic, fs)
	}
	ctx.SetValue(st)
}

// onWindowTick closes windows by wall clock (idle devices).
func (p *Processor) onWindowTick(ctx goka.Context, msg interface{}) {
	if _, ev := ctx.Value().(*evidenceState); ev {
		p.onTick(ctx, msg) // a window share's evidence
		return
	}
	st, ok := ctx.Value().(*features.WindowState)
	if !ok || st == nil {
		return
	}
	if fs := p.win.Tick(st, ctx.Key(), tickTime(msg, p.clock)); len(fs) > 0 {
		p.emitWindows(ctx, strings.Join(p.app.Topics, ","), fs)
		ctx.SetValue(st)
	}
}

func (p *Processor) emitWindows(ctx goka.Context, topic string, fs []*schemas.Feature) {
	sh := p.app.Share
	if sh != nil && p.cfg.Revocations != nil {
		if _, revoked := p.cfg.Revocations.Revoked(sh.Agreement); revoked {
			p.m.revoked.Add(float64(len(fs)))
			return
		}
	}
	for _, f := range fs {
		payload, _ := json.Marshal(WindowPayload{Name: f.Metric, WindowStart: f.WindowStart, WindowEnd: f.WindowEnd, Count: f.Count,
			Min: f.Min, Max: f.Max, Mean: f.Mean, Stddev: f.Stddev, First: f.First, Last: f.Last, LateUpdates: f.LateUpdates})
		rec := &schemas.AppRecord{
			// One row per window version: a late record re-emits the
			// window with late_updates + 1 under a new id.
			EventID: EventID(p.app.Name, "window", fmt.Sprintf("%s#%d", f.FeatureID, f.LateUpdates)), App: p.app.Name,
			Tenant: p.app.OwnerTenant(f.Tenant), SourceTenant: f.Tenant, DeviceID: f.DeviceID, TS: f.WindowEnd, IngestedAt: f.IngestedAt,
			SourceTopic: topic, SourceEventIDs: []string{}, Payload: string(payload),
		}
		if sh != nil {
			// A window share: each window record written counts in the
			// evidence of its window end's hour, once (by event id).
			rec.Agreement = &sh.Agreement
			ctx.Loopback(evidenceKey(hourOf(rec.TS.UnixMilli())), &shareMark{TS: rec.TS.UnixMilli(), ID: idKey(rec.EventID)})
		}
		ctx.Emit(goka.Stream(p.app.Target), ctx.Key(), rec)
		p.m.out.Inc()
	}
}

func toFloat(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int64:
		return float64(t), true
	case float32:
		return float64(t), true
	case int32:
		return float64(t), true
	case int:
		return float64(t), true
	}
	return 0, false
}

// nextOffset is where the state keeps the next offset of topic: the
// features state's fields for raw.sensor and raw.gps (a device's records
// are on one partition of each), nil for other topics (not deduplicated).
func nextOffset(st *features.WindowState, topic string) *int64 {
	switch topic {
	case topics.RawSensor:
		return &st.SensorNext
	case topics.RawGPS:
		return &st.GPSNext
	}
	return nil
}
