package groupkit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
)

// Handle is what a group's public surface needs of its running goka
// processor: the /readyz check and manual wall-clock ticks. Embed it in the
// group's Processor, set Name, Store the processor when Run builds it and
// set Running from RunOptions' OnReady/OnStop.
type Handle struct {
	// Name is the group's name in messages ("features", "state").
	Name string
	// Proc is the running processor (nil before Run).
	Proc atomic.Pointer[goka.Processor]
	// Running is true between the processor's start and its stop.
	Running atomic.Bool
}

// Ready reports nil once the processor has recovered its table and is
// processing; it is the /readyz check.
func (h *Handle) Ready(context.Context) error {
	if !h.Running.Load() {
		return fmt.Errorf("%s group not running yet", h.Name)
	}
	if proc := h.Proc.Load(); proc != nil && !proc.Recovered() {
		return fmt.Errorf("%s group recovering its table (rebalance)", h.Name)
	}
	return nil
}

// TickAll sends one tick with time now to every key of the group table
// (TickVisitor) and returns the number of keys visited.
func (h *Handle) TickAll(ctx context.Context, now time.Time) (int64, error) {
	proc := h.Proc.Load()
	if proc == nil {
		return 0, errors.New(h.Name + " processor is not running")
	}
	return proc.VisitAllWithStats(ctx, TickVisitor, now)
}
