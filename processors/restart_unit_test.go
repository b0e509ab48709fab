package processors

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

// TestRunRestartingRestartsAFailedGroup: a group that fails is run again
// after the back-off, and a clean stop ends the loop without an error.
func TestRunRestartingRestartsAFailedGroup(t *testing.T) {
	var runs, restarts atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	r := runner{name: "g", run: func(ctx context.Context) error {
		if runs.Add(1) == 1 {
			return errors.New("error consuming from group consumer: EOF")
		}
		cancel() // the second run goes on until the process stops
		<-ctx.Done()
		return ctx.Err()
	}}
	if err := runRestarting(ctx, r, 0, devtest.Logger(), func() { restarts.Add(1) }); err != nil {
		t.Fatalf("runRestarting = %v, want nil after a clean stop", err)
	}
	if runs.Load() != 2 || restarts.Load() != 1 {
		t.Fatalf("runs %d, restarts %d; want 2 runs and 1 restart", runs.Load(), restarts.Load())
	}
}

// TestRunRestartingGivesUp: with a limit, a group that keeps failing ends
// the loop with its error.
func TestRunRestartingGivesUp(t *testing.T) {
	var runs atomic.Int32
	r := runner{name: "g", run: func(context.Context) error {
		runs.Add(1)
		return errors.New("boom")
	}}
	start := time.Now()
	err := runRestarting(context.Background(), r, 1, devtest.Logger(), func() {})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "after 1 restarts") {
		t.Fatalf("runRestarting = %v, want boom after 1 restarts", err)
	}
	if runs.Load() != 2 || time.Since(start) < restartMin {
		t.Fatalf("%d runs in %v; want 2 runs with a back-off of %v between", runs.Load(), time.Since(start), restartMin)
	}
}
