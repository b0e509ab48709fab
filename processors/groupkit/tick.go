package groupkit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
)

// TickVisitor is the name of the visitor edge that the tick drives. A group
// that wants wall-clock ticks adds goka.Visitor(TickVisitor, cb); cb
// receives the tick's wall-clock time (a time.Time) as its message.
const TickVisitor = "tick"

// visitTimeout bounds one tick's visit of every key.
const visitTimeout = 10 * time.Minute

// TickTime returns the wall-clock time carried by a tick visit's message,
// or the zero time when msg is not one.
func TickTime(msg interface{}) time.Time {
	if t, ok := msg.(time.Time); ok {
		return t
	}
	return time.Time{}
}

// RunOptions configure Run.
type RunOptions struct {
	// Name names the group in errors and logs.
	Name string
	// Every is the tick interval; <= 0 disables ticking.
	Every time.Duration
	// Clock gives the tick's time (default the system clock).
	Clock Clock
	// Log receives tick failures (default discards).
	Log *slog.Logger
	// OnReady is called once the processor has recovered its table and
	// runs; OnStop when Run is about to return.
	OnReady, OnStop func()
	// OnTick is called after every tick with the keys visited and the
	// visit's error.
	OnTick func(visited int64, err error)
}

// Run runs proc until ctx is done or proc fails, and ticks it: every
// o.Every, goka visits every key of the group table with the clock's time
// (the visitor named TickVisitor), on the key's partition goroutine,
// serialised with that partition's messages.
//
// On shutdown the tick loop stops first and an in-flight tick finishes;
// only then is the processor stopped (drain, flush, commit). goka's
// VisitAll, cut short by a stopping processor, returns while visits of
// that tick still complete asynchronously; stopping in this order keeps
// shutdown free of that race.
func Run(ctx context.Context, proc *goka.Processor, o RunOptions) error {
	if o.Clock == nil {
		o.Clock = SystemClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.OnStop != nil {
		defer o.OnStop()
	}
	procCtx, procCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer procCancel()
	runErr := make(chan error, 1)
	go func() { runErr <- proc.Run(procCtx) }()

	tickCtx, tickCancel := context.WithCancel(ctx)
	defer tickCancel()
	tickDone := make(chan struct{})
	var ready atomic.Bool
	go func() {
		defer close(tickDone)
		if err := proc.WaitForReadyContext(tickCtx); err != nil {
			return
		}
		ready.Store(true)
		if o.OnReady != nil {
			o.OnReady()
		}
		tick(tickCtx, proc, o)
	}()

	select {
	case err := <-runErr:
		// The processor stopped by itself: a failure.
		tickCancel()
		<-tickDone
		if err == nil {
			err = errors.New("processor stopped unexpectedly")
		}
		return fmt.Errorf("%s processor: %w", o.Name, err)
	case <-ctx.Done():
	}
	tickCancel()
	<-tickDone
	procCancel()
	select {
	case err := <-runErr:
		switch {
		case err == nil || errors.Is(err, context.Canceled):
			return nil
		case !ready.Load():
			// Stopped while still starting (goka reports "context closed
			// while waiting for startup tables"): a clean stop.
			o.Log.Debug("processor stopped during startup", "group", o.Name, "err", err)
			return nil
		}
		return fmt.Errorf("%s processor: %w", o.Name, err)
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s processor: did not stop within %s", o.Name, stopTimeout)
	}
}

// stopTimeout bounds a processor's shutdown (drain, flush, commit).
const stopTimeout = 2 * time.Minute

func tick(ctx context.Context, proc *goka.Processor, o RunOptions) {
	if o.Every <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-proc.Done():
			return
		case <-t.C:
		}
		// Not cancelled by ctx: a tick runs to its end (see Run).
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), visitTimeout)
		n, err := proc.VisitAllWithStats(vctx, TickVisitor, o.Clock.Now())
		cancel()
		if err != nil && !errors.Is(err, goka.ErrVisitAborted) {
			o.Log.Warn("tick visit failed", "group", o.Name, "err", err, "visited", n)
		}
		if o.OnTick != nil {
			o.OnTick(n, err)
		}
	}
}
