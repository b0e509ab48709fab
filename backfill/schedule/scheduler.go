package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Clock is the scheduler's time source.
type Clock interface {
	Now() time.Time
	// After fires once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RealClock is the wall clock.
var RealClock Clock = realClock{}

// RunFunc runs one job for the run scheduled at at.
type RunFunc func(ctx context.Context, j *Job, at time.Time) error

// Scheduler runs the jobs of a File.
type Scheduler struct {
	Jobs  []*Job
	Run   RunFunc
	Clock Clock // default RealClock
	Log   *slog.Logger

	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	running  *prometheus.GaugeVec
	last     *prometheus.GaugeVec
	afterRun func(j *Job) // test hook: called once a run is over and the job free again
}

// Register adds the scheduler's metrics to reg.
func (s *Scheduler) Register(reg prometheus.Registerer) {
	s.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_schedule_runs_total",
		Help: "job runs by job and result (ok, error, skipped: the previous run was still going)"}, []string{"job", "result"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "drover_schedule_run_seconds",
		Help: "duration of job runs", Buckets: prometheus.ExponentialBuckets(0.1, 4, 10)}, []string{"job"})
	s.running = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drover_schedule_running", Help: "1 while a job runs"}, []string{"job"})
	s.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "drover_schedule_last_success_timestamp_seconds",
		Help: "when each job last succeeded"}, []string{"job"})
	reg.MustRegister(s.runs, s.duration, s.running, s.last)
}

// Start runs until ctx is cancelled, then waits for running jobs (whose
// context is cancelled too) to return.
func (s *Scheduler) Start(ctx context.Context) error {
	if s.Clock == nil {
		s.Clock = RealClock
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	for _, j := range s.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, j, &wg)
		}()
	}
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, j *Job, wg *sync.WaitGroup) {
	var busy atomic.Bool
	now := s.Clock.Now()
	for {
		next := j.sched.Next(now)
		s.Log.Debug("next run", "job", j.Name, "at", next)
		select {
		case <-ctx.Done():
			return
		case <-s.Clock.After(next.Sub(now)):
		}
		now = s.Clock.Now()
		if now.Before(next) {
			continue // woke early: wait again
		}
		if !busy.CompareAndSwap(false, true) {
			s.count(j.Name, "skipped")
			start, end, _ := j.RunWindow(next)
			s.Log.Warn("job still running; skipping this run, whose window no run covers: run the command by hand",
				"job", j.Name, "scheduled", next, "window_start", start.UTC().Format(time.RFC3339), "window_end", end.UTC().Format(time.RFC3339),
				"command", j.Command(start, end))
			now = next
			continue
		}
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			s.runOne(ctx, j, at)
			busy.Store(false)
			if s.afterRun != nil {
				s.afterRun(j)
			}
		}(next)
		now = next
	}
}

func (s *Scheduler) runOne(ctx context.Context, j *Job, at time.Time) {
	log := s.Log.With("job", j.Name, "type", j.Type, "scheduled", at.UTC().Format(time.RFC3339))
	log.Info("job run starting")
	if s.running != nil {
		s.running.WithLabelValues(j.Name).Set(1)
		defer s.running.WithLabelValues(j.Name).Set(0)
	}
	start := time.Now()
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("job panicked: %v", r)
			}
		}()
		return s.Run(ctx, j, at)
	}()
	took := time.Since(start)
	if s.duration != nil {
		s.duration.WithLabelValues(j.Name).Observe(took.Seconds())
	}
	if err != nil {
		s.count(j.Name, "error")
		start, end, _ := j.RunWindow(at)
		log.Error("job run failed; run the command by hand to finish its window", "err", err, "took", took.Round(time.Millisecond).String(),
			"command", j.Command(start, end))
		return
	}
	s.count(j.Name, "ok")
	if s.last != nil {
		s.last.WithLabelValues(j.Name).SetToCurrentTime()
	}
	log.Info("job run finished", "took", took.Round(time.Millisecond).String())
}

func (s *Scheduler) count(job, result string) {
	if s.runs != nil {
		s.runs.WithLabelValues(job, result).Inc()
	}
}
