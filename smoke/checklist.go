package smoke

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Status is the outcome of one check.
type Status int

// Statuses of a check.
const (
	Pass Status = iota
	Fail
	Skip
)

func (s Status) mark() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	}
	return "–"
}

// Result is one line of the checklist.
type Result struct {
	Name   string
	Status Status
	Detail string
	Took   time.Duration
}

// Checklist collects results and prints each as it is added, so a run cut
// short still shows the checks so far. It is safe for concurrent use.
type Checklist struct {
	mu      sync.Mutex
	out     io.Writer
	results []Result
}

// NewChecklist prints to out (nil = nowhere).
func NewChecklist(out io.Writer) *Checklist {
	if out == nil {
		out = io.Discard
	}
	return &Checklist{out: out}
}

// Add records r and prints its line.
func (c *Checklist) Add(r Result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results = append(c.results, r)
	line := fmt.Sprintf("%s %s", r.Status.mark(), r.Name)
	if took := r.Took.Round(10 * time.Millisecond); took > 0 {
		line += fmt.Sprintf(" (%s)", took)
	}
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	fmt.Fprintln(c.out, line)
}

// Results returns a copy of the results so far.
func (c *Checklist) Results() []Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Result(nil), c.results...)
}

// Failed returns the names of the failed checks.
func (c *Checklist) Failed() []string {
	var out []string
	for _, r := range c.Results() {
		if r.Status == Fail {
			out = append(out, r.Name)
		}
	}
	return out
}

// Summary prints the totals line.
func (c *Checklist) Summary() {
	var p, f, s int
	for _, r := range c.Results() {
		switch r.Status {
		case Pass:
			p++
		case Fail:
			f++
		default:
			s++
		}
	}
	fmt.Fprintf(c.out, "smoke: %d passed, %d failed, %d skipped\n", p, f, s)
}
