package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/backfill/dlq"
)

// Job types.
const (
	TypeBackfillMedia = "backfill-media"
	TypeDLQRedrive    = "dlq-redrive"
)

// Job is one configured job.
type Job struct {
	Name     string `yaml:"name"`
	Schedule string `yaml:"schedule"` // cron: 5 fields, or @hourly, @every 10m
	Type     string `yaml:"type"`
	// Backfill: Window is previous-hour, previous-day or last:<duration>
	// (e.g. last:30m), aligned to the scheduled time.
	Window  string   `yaml:"window"`
	Buckets []string `yaml:"buckets"`
	Prefix  string   `yaml:"prefix"`
	Rate    float64  `yaml:"rate"`
	Mapping string   `yaml:"mapping"`
	// Redrive: Since is a duration back from the scheduled time; Reason
	// optional.
	Since  string `yaml:"since"`
	Reason string `yaml:"reason"`
	DryRun bool   `yaml:"dry_run"`

	sched cron.Schedule
}

// File is a jobs file.
type File struct {
	Jobs []*Job `yaml:"jobs"`
}

// ConfigError locates a problem in a jobs file.
type ConfigError struct {
	File, Job, Field string
	Err              error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Job != "" {
		fmt.Fprintf(&b, ": job %s", e.Job)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Load reads and validates a jobs file.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Err: err}
	}
	return Parse(path, b)
}

// Parse validates a jobs file strictly (unknown keys are errors); errors
// are *ConfigError naming the job and field.
func Parse(name string, b []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, &ConfigError{File: name, Err: err}
	}
	if len(f.Jobs) == 0 {
		return nil, &ConfigError{File: name, Field: "jobs", Err: errors.New("no jobs")}
	}
	seen := map[string]bool{}
	for i, j := range f.Jobs {
		id := j.Name
		if id == "" {
			id = fmt.Sprintf("#%d", i+1)
		}
		fail := func(field, format string, args ...any) (*File, error) {
			return nil, &ConfigError{File: name, Job: id, Field: field, Err: fmt.Errorf(format, args...)}
		}
		if j.Name == "" {
			return fail("name", "required")
		}
		if seen[j.Name] {
			return fail("name", "duplicate job name")
		}
		seen[j.Name] = true
		if j.Schedule == "" {
			return fail("schedule", "required (cron like \"5 * * * *\", or @hourly)")
		}
		s, err := parser.Parse(j.Schedule)
		if err != nil {
			return fail("schedule", "%v", err)
		}
		j.sched = s
		switch j.Type {
		case TypeBackfillMedia:
			if _, _, err := WindowAt(j.Window, time.Now()); err != nil {
				return fail("window", "%v", err)
			}
			if j.Rate < 0 {
				return fail("rate", "negative")
			}
			if j.Since != "" || j.Reason != "" {
				return fail("since", "only for type %s", TypeDLQRedrive)
			}
		case TypeDLQRedrive:
			d, err := time.ParseDuration(j.Since)
			if err != nil || d <= 0 {
				return fail("since", "want a positive duration like 1h, got %q", j.Since)
			}
			if j.Window != "" || len(j.Buckets) > 0 || j.Prefix != "" || j.Mapping != "" {
				return fail("window", "only for type %s", TypeBackfillMedia)
			}
			if err := dlq.CheckReason(j.Reason); err != nil {
				return fail("reason", "%v", err)
			}
		case "":
			return fail("type", "required (%s or %s)", TypeBackfillMedia, TypeDLQRedrive)
		default:
			return fail("type", "unknown %q (want %s or %s)", j.Type, TypeBackfillMedia, TypeDLQRedrive)
		}
		if err := j.checkCoverage(time.Now()); err != nil {
			field := "window"
			if j.Type == TypeDLQRedrive {
				field = "since"
			}
			return fail(field, "%v", err)
		}
	}
	return &f, nil
}

// RunWindow returns the window of the run scheduled at at: the backfill's
// window, or [at - since, at) for a re-drive.
func (j *Job) RunWindow(at time.Time) (start, end time.Time, err error) {
	if j.Type == TypeDLQRedrive {
		d, err := time.ParseDuration(j.Since)
		if err != nil {
			return start, end, err
		}
		return at.Add(-d), at, nil
	}
	return WindowAt(j.Window, at)
}

// Command is the drover command line that does by hand the run of window
// [start, end) (for a run that was skipped or failed).
func (j *Job) Command(start, end time.Time) string {
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	var b strings.Builder
	if j.Type == TypeDLQRedrive {
		fmt.Fprintf(&b, "drover dlq redrive --since %s --until %s", f(start), f(end))
		if j.Reason != "" {
			fmt.Fprintf(&b, " --reason %s", j.Reason)
		}
	} else {
		fmt.Fprintf(&b, "drover backfill media --window-start %s --window-end %s", f(start), f(end))
		for _, bk := range j.Buckets {
			fmt.Fprintf(&b, " --bucket %s", bk)
		}
		if j.Prefix != "" {
			fmt.Fprintf(&b, " --prefix %q", j.Prefix)
		}
		if j.Mapping != "" {
			fmt.Fprintf(&b, " --mapping %s", j.Mapping)
		}
	}
	if j.DryRun {
		b.WriteString(" --dry-run")
	}
	return b.String()
}

// coverageRuns caps the runs checkCoverage looks at.
const coverageRuns = 20000

// repeatPeriod is how long a schedule takes to repeat its pattern of runs,
// so that checking that long (plus one run) sees every gap between runs:
// a constant delay repeats at once, a cron expression every day when it
// names no day, month or weekday, every week when it names only weekdays,
// else (days of the month, months) within 400 days.
func repeatPeriod(s cron.Schedule) time.Duration {
	const star = 1 << 63 // robfig/cron's bit for a field given as *
	switch t := s.(type) {
	case cron.ConstantDelaySchedule:
		return t.Delay
	case *cron.SpecSchedule:
		allDays := t.Dom&star != 0 && t.Month&star != 0
		switch {
		case allDays && t.Dow&star != 0:
			return 24 * time.Hour
		case allDays:
			return 7 * 24 * time.Hour
		}
	}
	return 400 * 24 * time.Hour
}

// checkCoverage refuses a job whose consecutive runs leave time between
// their windows that no run covers (previous-hour every two hours, a
// weekday schedule with previous-day, since shorter than the interval):
// the scheduled runs of a job must cover time without gaps. It looks at
// the runs of one repeat period of the schedule after from.
func (j *Job) checkCoverage(from time.Time) error {
	at := j.sched.Next(from)
	horizon := at.Sub(from) + repeatPeriod(j.sched) + time.Minute
	_, prevEnd, err := j.RunWindow(at)
	if err != nil {
		return err
	}
	for range coverageRuns {
		next := j.sched.Next(at)
		if next.IsZero() || next.Sub(from) > horizon {
			return nil
		}
		start, end, err := j.RunWindow(next)
		if err != nil {
			return err
		}
		if start.After(prevEnd) {
			spec := j.Window
			if j.Type == TypeDLQRedrive {
				spec = j.Since
			}
			return fmt.Errorf("%s with schedule %q leaves [%s, %s) uncovered between the runs at %s and %s; widen it or run more often",
				spec, j.Schedule, prevEnd.UTC().Format(time.RFC3339), start.UTC().Format(time.RFC3339),
				at.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339))
		}
		at, prevEnd = next, maxTime(prevEnd, end)
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// WindowAt returns the backfill window of spec for a run scheduled at t
// (see backfill.WindowAt).
func WindowAt(spec string, t time.Time) (start, end time.Time, err error) {
	return backfill.WindowAt(spec, t)
}
