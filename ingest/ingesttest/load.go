package ingesttest

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CPUTime is the process's user + system CPU time so far.
func CPUTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Load sends requests first+1 … first+n from clients concurrent workers,
// the doors' benchmark load: each worker is made by worker (its request
// function and what closes it) and takes the next number until none is
// left. It returns the wall time and the process CPU time the requests
// took; the first error of any worker fails tb.
func Load(tb testing.TB, clients, first, n int, worker func() (do func(i int) error, closeFn func(), err error)) (wall, cpu time.Duration) {
	tb.Helper()
	cpu0 := CPUTime(tb)
	start := time.Now()
	var next atomic.Int64
	next.Store(int64(first))
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do, closeFn, err := worker()
			if err != nil {
				errs <- err
				return
			}
			if closeFn != nil {
				defer closeFn()
			}
			for i := int(next.Add(1)); i <= first+n; i = int(next.Add(1)) {
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return time.Since(start), CPUTime(tb) - cpu0
}
