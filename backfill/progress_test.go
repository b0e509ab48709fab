package backfill

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestProgressModes(t *testing.T) {
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	j := &Job{}
	j.Stats.Prefixes.Store(4)
	j.Stats.PrefixesDone.Store(1)
	j.Stats.Listed.Store(1234)

	var bar lockedBuf
	stop := showProgress(MediaOptions{Progress: "bar"}, j, slog.New(slog.DiscardHandler), &bar)
	waitFor("the bar", func() bool { return strings.Contains(bar.String(), "listed 1234") })
	stop()

	var logs lockedBuf
	stop = showProgress(MediaOptions{Progress: "log", ProgressInterval: 10 * time.Millisecond}, j, slog.New(slog.NewJSONHandler(&logs, nil)), &bar)
	waitFor("a JSON progress line", func() bool {
		return strings.Contains(logs.String(), `"msg":"backfill progress"`) && strings.Contains(logs.String(), `"listed":1234`)
	})
	stop()

	// auto on a non-terminal writer is log lines.
	var auto lockedBuf
	stop = showProgress(MediaOptions{Progress: "auto", ProgressInterval: 10 * time.Millisecond}, j, slog.New(slog.NewJSONHandler(&auto, nil)), &bar)
	waitFor("auto → log", func() bool { return strings.Contains(auto.String(), "backfill progress") })
	stop()
}
