package backfill

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// WindowAt returns the backfill window of spec for a run scheduled at t:
// previous-hour = the last whole hour before t, previous-day = the last
// whole UTC day, last:<d> = [t-d, t) with t truncated to the minute.
func WindowAt(spec string, t time.Time) (start, end time.Time, err error) {
	t = t.UTC()
	switch {
	case spec == "previous-hour":
		end = t.Truncate(time.Hour)
		return end.Add(-time.Hour), end, nil
	case spec == "previous-day":
		end = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		return end.AddDate(0, 0, -1), end, nil
	case strings.HasPrefix(spec, "last:"):
		d, perr := time.ParseDuration(strings.TrimPrefix(spec, "last:"))
		if perr != nil || d <= 0 {
			return start, end, fmt.Errorf("%q: want last:<positive duration>, e.g. last:30m", spec)
		}
		end = t.Truncate(time.Minute)
		return end.Add(-d), end, nil
	case spec == "":
		return start, end, errors.New("required (previous-hour, previous-day or last:<duration>)")
	}
	return start, end, fmt.Errorf("unknown window %q (want previous-hour, previous-day or last:<duration>)", spec)
}
