package backfill

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Layout is a key layout such as "{kind}/{tenant}/{device}/YYYY/MM/DD/...":
// "/"-separated segments that are literals, variables ({kind}, {tenant},
// {device} or any {name}), the date parts YYYY, MM, DD and HH (UTC, in
// that order, consecutive), and an optional final "..." standing for one
// or more remaining segments.
type Layout struct {
	text string
	segs []layoutSeg
	// dateAt is the index of the first date segment, -1 without one;
	// dateN the number of date segments.
	dateAt, dateN int
	rest          bool
}

type layoutSeg struct {
	lit  string
	name string // variable name, or "YYYY", "MM", "DD", "HH" for dates
	date bool
}

var varSegRE = regexp.MustCompile(`^\{([a-z][a-z0-9_]*)\}$`)

var dateOrder = []string{"YYYY", "MM", "DD", "HH"}

// ParseLayout parses a layout; see Layout.
func ParseLayout(s string) (*Layout, error) {
	if s == "" {
		return nil, errors.New("empty layout")
	}
	parts := strings.Split(s, "/")
	l := &Layout{text: s, dateAt: -1}
	for i, p := range parts {
		switch {
		case p == "...":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("layout %q: ... must be the last segment", s)
			}
			l.rest = true
			continue
		case p == "":
			return nil, fmt.Errorf("layout %q: empty segment %d", s, i+1)
		case varSegRE.MatchString(p):
			l.segs = append(l.segs, layoutSeg{name: varSegRE.FindStringSubmatch(p)[1]})
		case p == "YYYY" || p == "MM" || p == "DD" || p == "HH":
			if l.dateAt < 0 {
				l.dateAt = len(l.segs)
			}
			if len(l.segs) != l.dateAt+l.dateN || dateOrder[l.dateN] != p {
				return nil, fmt.Errorf("layout %q: date segments must be consecutive and in the order YYYY/MM/DD/HH", s)
			}
			l.dateN++
			l.segs = append(l.segs, layoutSeg{name: p, date: true})
		case strings.ContainsAny(p, "{}"):
			return nil, fmt.Errorf("layout %q: segment %q: a variable is a whole segment like {device}", s, p)
		default:
			l.segs = append(l.segs, layoutSeg{lit: p})
		}
	}
	if len(l.segs) == 0 {
		return nil, fmt.Errorf("layout %q: no segments before ...", s)
	}
	return l, nil
}

// String returns the layout text.
func (l *Layout) String() string { return l.text }

// Match matches key against the layout and returns its variables (date
// parts under YYYY, MM, DD, HH). The file name (last segment) is never a
// variable of the layout unless the layout has no "...".
func (l *Layout) Match(key string) (map[string]string, bool) {
	parts := strings.Split(key, "/")
	if l.rest {
		if len(parts) <= len(l.segs) {
			return nil, false
		}
	} else if len(parts) != len(l.segs) {
		return nil, false
	}
	vars := map[string]string{}
	for i, s := range l.segs {
		p := parts[i]
		switch {
		case s.date:
			if !dateSegOK(s.name, p) {
				return nil, false
			}
			vars[s.name] = p
		case s.name != "":
			if p == "" {
				return nil, false
			}
			vars[s.name] = p
		case p != s.lit:
			return nil, false
		}
	}
	return vars, true
}

func dateSegOK(name, p string) bool {
	want := map[string]int{"YYYY": 4, "MM": 2, "DD": 2, "HH": 2}[name]
	if len(p) != want {
		return false
	}
	for _, c := range p { // digits only: Atoi would take "-001" and "+001"
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// prunable reports whether listing can be limited to date partitions.
func (l *Layout) prunable() bool { return l != nil && l.dateAt >= 0 }

// granularity is the time span of the finest date segment.
func datePrefix(t time.Time, n int) string {
	t = t.UTC()
	parts := []string{fmt.Sprintf("%04d", t.Year()), fmt.Sprintf("%02d", int(t.Month())), fmt.Sprintf("%02d", t.Day()), fmt.Sprintf("%02d", t.Hour())}
	return strings.Join(parts[:n], "/") + "/"
}

func dateStep(t time.Time, n int) time.Time {
	switch n {
	case 1:
		return time.Date(t.Year()+1, 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	case 3:
		return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
	default:
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour()+1, 0, 0, 0, time.UTC)
	}
}

func dateTrunc(t time.Time, n int) time.Time {
	t = t.UTC()
	switch n {
	case 1:
		return time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	case 2:
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	case 3:
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	default:
		return t.Truncate(time.Hour)
	}
}

// maxDatePrefixes bounds the date partitions listed per identity prefix;
// a longer window lists coarser partitions (months instead of days, then
// years, then decimal runs of years).
const maxDatePrefixes = 400

// Keys carry four-digit years, so no date partition lies outside
// [firstKeyYear, endKeyYear).
var (
	firstKeyYear = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	endKeyYear   = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// datePrefixes returns key prefixes (relative to the identity prefix) that
// together cover every date partition of [from, to): the partitions
// themselves at the finest granularity the layout has that needs at most
// maxDatePrefixes of them, or, for a window of centuries, runs of years
// merged into their common decimal prefix ("19" for 1900–1999, "" for
// every year). The window is always covered entirely: a wide window lists
// more, never less. nil means no four-digit year lies in the window.
func (l *Layout) datePrefixes(from, to time.Time) []string {
	from, to = maxTime(from.UTC(), firstKeyYear), minTime(to.UTC(), endKeyYear)
	if !from.Before(to) {
		return nil
	}
	for n := l.dateN; n >= 1; n-- {
		var out []string
		for t := dateTrunc(from, n); t.Before(to) && len(out) <= maxDatePrefixes; t = dateStep(t, n) {
			out = append(out, datePrefix(t, n))
		}
		if len(out) <= maxDatePrefixes {
			return out
		}
	}
	return yearPrefixes(from.Year(), to.Add(-time.Nanosecond).Year())
}

// yearPrefixes returns the fewest key prefixes matching exactly the
// four-digit years first..last: whole years as "2026/", aligned runs as
// their shared leading digits ("20" for 2000–2099).
func yearPrefixes(first, last int) []string {
	var out []string
	var walk func(prefix string, lo, span int)
	walk = func(prefix string, lo, span int) {
		hi := lo + span - 1
		switch {
		case hi < first || lo > last:
		case first <= lo && hi <= last:
			if span == 1 {
				prefix += "/"
			}
			out = append(out, prefix)
		default:
			for d := range 10 {
				walk(prefix+strconv.Itoa(d), lo+d*span/10, span/10)
			}
		}
	}
	walk("", 0, 10000)
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
