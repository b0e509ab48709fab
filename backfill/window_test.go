package backfill

import (
	"strings"
	"testing"
	"time"
)

func TestWindowAt(t *testing.T) {
	at := time.Date(2026, 11, 23, 6, 42, 17, 0, time.UTC)
	tests := []struct {
		name, spec string
		start, end string
		wantErr    string
	}{
		{name: "previous hour", spec: "previous-hour", start: "2026-11-23T05:00:00Z", end: "2026-11-23T06:00:00Z"},
		{name: "previous day", spec: "previous-day", start: "2026-11-22T00:00:00Z", end: "2026-11-23T00:00:00Z"},
		{name: "last", spec: "last:30m", start: "2026-11-23T06:12:00Z", end: "2026-11-23T06:42:00Z"},
		{name: "last negative", spec: "last:-5m", wantErr: "positive duration"},
		{name: "unknown", spec: "tomorrow", wantErr: "unknown window"},
		{name: "empty", spec: "", wantErr: "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e, err := WindowAt(tt.spec, at)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Format(time.RFC3339) + " " + e.Format(time.RFC3339); got != tt.start+" "+tt.end {
				t.Fatalf("got %s, want %s %s", got, tt.start, tt.end)
			}
		})
	}
}
