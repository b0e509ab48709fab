package schedule

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	cases := []struct{ name, yaml, wantErr string }{
		{name: "ok", yaml: "jobs:\n - name: a\n   schedule: '5 * * * *'\n   type: backfill-media\n   window: previous-hour\n - name: b\n   schedule: '@every 10m'\n   type: dlq-redrive\n   since: 1h\n"},
		{name: "no jobs", yaml: "jobs: []\n", wantErr: "jobs: no jobs"},
		{name: "unknown key", yaml: "jobs:\n - name: a\n   schedual: x\n", wantErr: "field schedual not found"},
		{name: "bad cron", yaml: "jobs:\n - name: a\n   schedule: '99 * * * *'\n   type: dlq-redrive\n   since: 1h\n", wantErr: "job a: schedule"},
		{name: "bad type", yaml: "jobs:\n - name: a\n   schedule: '@hourly'\n   type: mow\n", wantErr: "job a: type: unknown"},
		{name: "bad window", yaml: "jobs:\n - name: a\n   schedule: '@hourly'\n   type: backfill-media\n   window: lastweek\n", wantErr: "job a: window"},
		{name: "redrive since", yaml: "jobs:\n - name: r\n   schedule: '@hourly'\n   type: dlq-redrive\n", wantErr: "job r: since"},
		{name: "duplicate", yaml: "jobs:\n - {name: a, schedule: '@hourly', type: dlq-redrive, since: 1h}\n - {name: a, schedule: '@hourly', type: dlq-redrive, since: 1h}\n", wantErr: "job a: name: duplicate"},
		{name: "missing name", yaml: "jobs:\n - {schedule: '@hourly', type: dlq-redrive, since: 1h}\n", wantErr: "job #1: name: required"},
		{name: "unknown reason", yaml: "jobs:\n - {name: r, schedule: '@hourly', type: dlq-redrive, since: 1h, reason: not_jsn}\n", wantErr: `job r: reason: unknown reason "not_jsn" (re-drivable reasons: `},
		{name: "known reason", yaml: "jobs:\n - {name: r, schedule: '@hourly', type: dlq-redrive, since: 1h, reason: not_json}\n"},
		// The runs of a job must cover time without gaps.
		{name: "previous-hour every two hours", yaml: "jobs:\n - {name: m, schedule: '@every 2h', type: backfill-media, window: previous-hour}\n", wantErr: `job m: window: previous-hour with schedule "@every 2h" leaves [`},
		{name: "previous-day on weekdays", yaml: "jobs:\n - {name: m, schedule: '30 1 * * 1-5', type: backfill-media, window: previous-day}\n", wantErr: "job m: window: previous-day with schedule \"30 1 * * 1-5\" leaves ["},
		{name: "previous-day every day", yaml: "jobs:\n - {name: m, schedule: '30 1 * * *', type: backfill-media, window: previous-day}\n"},
		{name: "last:29m every 30 minutes", yaml: "jobs:\n - {name: m, schedule: '*/30 * * * *', type: backfill-media, window: 'last:29m'}\n", wantErr: "job m: window: last:29m with schedule"},
		{name: "last:30m every 30 minutes", yaml: "jobs:\n - {name: m, schedule: '*/30 * * * *', type: backfill-media, window: 'last:30m'}\n"},
		{name: "since shorter than the interval", yaml: "jobs:\n - {name: r, schedule: '*/15 * * * *', type: dlq-redrive, since: 10m}\n", wantErr: "job r: since: 10m with schedule \"*/15 * * * *\" leaves ["},
		{name: "since equal to the interval", yaml: "jobs:\n - {name: r, schedule: '*/15 * * * *', type: dlq-redrive, since: 15m}\n"},
		{name: "monthly with previous-day", yaml: "jobs:\n - {name: m, schedule: '@monthly', type: backfill-media, window: previous-day}\n", wantErr: "job m: window: previous-day with schedule \"@monthly\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("jobs.yaml", []byte(c.yaml))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
		})
	}
}

func TestWindowAt(t *testing.T) {
	at := time.Date(2026, 11, 23, 6, 5, 30, 0, time.UTC)
	cases := []struct{ spec, start, end string }{
		{"previous-hour", "2026-11-23T05:00:00Z", "2026-11-23T06:00:00Z"},
		{"previous-day", "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"},
		{"last:30m", "2026-11-23T05:35:00Z", "2026-11-23T06:05:00Z"},
	}
	for _, c := range cases {
		s, e, err := WindowAt(c.spec, at)
		if err != nil || s.Format(time.RFC3339) != c.start || e.Format(time.RFC3339) != c.end {
			t.Errorf("%s: [%s, %s) %v", c.spec, s, e, err)
		}
	}
}

// fakeClock fires After channels when Advance passes their deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) pending() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.waiters) }

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSchedulerFiresWithInjectedClock(t *testing.T) {
	f, err := Parse("jobs.yaml", []byte("jobs:\n - {name: media, schedule: '5 * * * *', type: backfill-media, window: previous-hour}\n"))
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var runs []time.Time
	release := make(chan struct{})
	s := &Scheduler{Jobs: f.Jobs, Clock: clk, Run: func(ctx context.Context, j *Job, at time.Time) error {
		mu.Lock()
		runs = append(runs, at)
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}}
	var logs lockedBuffer
	s.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	var finished sync.WaitGroup
	finished.Add(1)
	s.afterRun = func(*Job) { finished.Done() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Start(ctx); close(done) }()
	nruns := func() int { mu.Lock(); defer mu.Unlock(); return len(runs) }

	waitUntil(t, "the scheduler to wait", func() bool { return clk.pending() == 1 })
	clk.Advance(4 * time.Minute) // 05:04: not yet
	waitUntil(t, "re-arm", func() bool { return clk.pending() == 1 })
	if nruns() != 0 {
		t.Fatal("fired early")
	}
	clk.Advance(time.Minute) // 05:05
	waitUntil(t, "the first run", func() bool { return nruns() == 1 })
	// The run blocks; at 06:05 the next is due and must be skipped.
	waitUntil(t, "re-arm", func() bool { return clk.pending() == 1 })
	clk.Advance(time.Hour)
	waitUntil(t, "re-arm after skip", func() bool { return clk.pending() == 1 })
	if nruns() != 1 {
		t.Fatalf("%d runs while the first was still going, want 1 (skip)", nruns())
	}
	// The skipped run's window is named, with the command that covers it.
	if l := logs.String(); !strings.Contains(l, `"window_start":"2026-11-23T05:00:00Z","window_end":"2026-11-23T06:00:00Z","command":"drover backfill media --window-start 2026-11-23T05:00:00Z --window-end 2026-11-23T06:00:00Z"`) {
		t.Errorf("skip log does not name the uncovered window and its command:\n%s", l)
	}
	close(release)
	finished.Wait()
	finished.Add(1)
	clk.Advance(time.Hour) // 07:05
	waitUntil(t, "the second run", func() bool { return nruns() == 2 })
	mu.Lock()
	got := []string{runs[0].Format("15:04"), runs[1].Format("15:04")}
	mu.Unlock()
	if got[0] != "05:05" || got[1] != "07:05" {
		t.Fatalf("runs at %v, want 05:05 and 07:05", got)
	}
	start, end, _ := WindowAt(f.Jobs[0].Window, runs[1])
	if start.Format("15:04") != "06:00" || end.Format("15:04") != "07:00" {
		t.Fatalf("window [%s, %s)", start, end)
	}
	cancel()
	<-done
	finished.Wait() // the cancelled second run ended too
}

// TestCoverageGapNamesTheHole checks the reported gap on a fixed clock.
func TestCoverageGapNamesTheHole(t *testing.T) {
	f, err := Parse("jobs.yaml", []byte("jobs:\n - {name: m, schedule: '5 * * * *', type: backfill-media, window: previous-hour}\n"))
	if err != nil {
		t.Fatal(err)
	}
	j := f.Jobs[0]
	j.Schedule = "5 */3 * * *"
	if j.sched, err = parser.Parse(j.Schedule); err != nil {
		t.Fatal(err)
	}
	err = j.checkCoverage(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
	want := "previous-hour with schedule \"5 */3 * * *\" leaves [2026-11-23T00:00:00Z, 2026-11-23T02:00:00Z) uncovered between the runs at 2026-11-23T00:05:00Z and 2026-11-23T03:05:00Z"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err %v, want %q", err, want)
	}
	if got := j.Command(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)); got != "drover backfill media --window-start 2026-11-23T00:00:00Z --window-end 2026-11-23T02:00:00Z" {
		t.Fatalf("command %q", got)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
