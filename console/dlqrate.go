package console

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// dlqRateWindow is the span dead letters per minute are averaged over.
const dlqRateWindow = 5 * time.Minute

// DLQRate is dead letters per minute over the last few minutes, read from
// dlq.events itself (so it counts every stage's dead letters, whichever
// process wrote them).
type DLQRate struct {
	WindowMinutes float64 `json:"window_minutes"`
	PerMinute     float64 `json:"per_minute"`
	// ByStage and ByReason are per minute, keyed by the dead letter's
	// stage (decode, validate, route, produce, ...) and stage/reason.
	ByStage  map[string]float64 `json:"by_stage"`
	ByReason map[string]float64 `json:"by_reason"`
}

type dlqEvent struct {
	at            time.Time
	stage, reason string
}

// dlqWindow follows dlq.events while the pipeline page is open: a consumer
// that starts at the records of the last dlqRateWindow and keeps the
// stage and reason of each new dead letter. close stops it; the next rate
// starts over. Not safe for concurrent use.
type dlqWindow struct {
	s      *Server
	cl     *kgo.Client
	events []dlqEvent
}

func newDLQWindow(s *Server) *dlqWindow { return &dlqWindow{s: s} }

func (w *dlqWindow) start(ctx context.Context, now time.Time) error {
	offs, err := w.s.adm.ListOffsetsAfterMilli(ctx, now.Add(-dlqRateWindow).UnixMilli(), topics.DLQ)
	if err != nil {
		return fmt.Errorf("offsets of %s: %w", topics.DLQ, err)
	}
	if err := offs.Error(); err != nil {
		return fmt.Errorf("offsets of %s: %w", topics.DLQ, err)
	}
	parts := map[int32]kgo.Offset{}
	for p, o := range offs[topics.DLQ] {
		parts[p] = kgo.NewOffset().At(o.Offset)
	}
	cl, err := kgo.NewClient(append(w.s.kc.Opts(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topics.DLQ: parts}),
		kgo.FetchMaxWait(5*time.Second))...)
	if err != nil {
		return err
	}
	w.cl, w.events = cl, nil
	return nil
}

// rate takes in what arrived since the last call and returns the rates.
func (w *dlqWindow) rate(ctx context.Context, now time.Time) (DLQRate, error) {
	r := DLQRate{WindowMinutes: dlqRateWindow.Minutes(), ByStage: map[string]float64{}, ByReason: map[string]float64{}}
	if w.cl == nil {
		if err := w.start(ctx, now); err != nil {
			return r, err
		}
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		fs := w.cl.PollFetches(pctx)
		cancel()
		n := 0
		fs.EachRecord(func(rec *kgo.Record) {
			n++
			var dl schemas.DeadLetter
			if _, err := w.s.cfg.Serde.Decode(ctx, rec.Value, &dl); err != nil {
				dl.Stage, dl.Reason = "undecodable", "undecodable"
			}
			w.events = append(w.events, dlqEvent{at: rec.Timestamp, stage: dl.Stage, reason: dl.Stage + "/" + dl.Reason})
		})
		if n == 0 || ctx.Err() != nil {
			break
		}
	}
	cut := now.Add(-dlqRateWindow)
	kept := w.events[:0]
	for _, e := range w.events {
		if e.at.After(cut) {
			kept = append(kept, e)
			r.PerMinute++
			r.ByStage[e.stage]++
			r.ByReason[e.reason]++
		}
	}
	w.events = kept
	m := dlqRateWindow.Minutes()
	r.PerMinute /= m
	for k := range r.ByStage {
		r.ByStage[k] /= m
	}
	for k := range r.ByReason {
		r.ByReason[k] /= m
	}
	return r, nil
}

func (w *dlqWindow) close() {
	if w.cl != nil {
		w.cl.Close()
		w.cl = nil
	}
}
