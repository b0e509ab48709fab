package simulate

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Summary counts what a run published. Only messages the broker
// acknowledged (PUBACK) count as sent.
type Summary struct {
	// Sent counts valid messages by channel (Channel constants).
	Sent map[string]int64
	// Invalid counts malformed messages by class.
	Invalid map[Class]int64
	// PublishErrors counts messages the broker never acknowledged (after
	// retries), so they may or may not have arrived.
	PublishErrors int64
	// MediaUploads counts objects put into S3; UploadErrors the failed
	// puts (whose metadata message was then not sent).
	MediaUploads int64
	UploadErrors int64
	// SilentTurns counts turns skipped because every device was silent.
	SilentTurns int64
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
}

// Valid returns the number of valid messages sent.
func (s Summary) Valid() int64 {
	var n int64
	for _, v := range s.Sent {
		n += v
	}
	return n
}

// InvalidTotal returns the number of malformed messages sent.
func (s Summary) InvalidTotal() int64 {
	var n int64
	for _, v := range s.Invalid {
		n += v
	}
	return n
}

// Total returns every message sent, valid or not.
func (s Summary) Total() int64 { return s.Valid() + s.InvalidTotal() }

// String is the one-line form printed by the progress log and at the end:
// "sent 1234 (sensor 500, gps 400, ...) invalid 12, publish errors 0, media 3 (0 failed) in 2m3s (10.0 msg/s)".
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d (", s.Total())
	for i, ch := range channels {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", ch, s.Sent[ch])
	}
	fmt.Fprintf(&b, ") invalid %d, publish errors %d, media uploads %d (%d failed)", s.InvalidTotal(), s.PublishErrors, s.MediaUploads, s.UploadErrors)
	if s.Elapsed > 0 {
		fmt.Fprintf(&b, " in %s (%.1f msg/s)", s.Elapsed.Round(time.Millisecond), float64(s.Total())/s.Elapsed.Seconds())
	}
	return b.String()
}

var channels = []string{ChannelSensor, ChannelSenML, ChannelGPS, ChannelHeartbeat, ChannelEvents, ChannelMedia, ChannelWildFi}

// counters is the live, concurrency-safe form of a Summary.
type counters struct {
	sent      map[string]*atomic.Int64
	invalid   map[Class]*atomic.Int64
	pubErrs   atomic.Int64
	uploads   atomic.Int64
	uploadErr atomic.Int64
	silent    atomic.Int64
}

func newCounters() *counters {
	c := &counters{sent: map[string]*atomic.Int64{}, invalid: map[Class]*atomic.Int64{}}
	for _, ch := range channels {
		c.sent[ch] = new(atomic.Int64)
	}
	for _, cl := range Classes() {
		c.invalid[cl] = new(atomic.Int64)
	}
	return c
}

func (c *counters) snapshot(elapsed time.Duration) Summary {
	s := Summary{Sent: map[string]int64{}, Invalid: map[Class]int64{}, Elapsed: elapsed}
	for k, v := range c.sent {
		s.Sent[k] = v.Load()
	}
	for k, v := range c.invalid {
		if n := v.Load(); n > 0 {
			s.Invalid[k] = n
		}
	}
	s.PublishErrors = c.pubErrs.Load()
	s.MediaUploads = c.uploads.Load()
	s.UploadErrors = c.uploadErr.Load()
	s.SilentTurns = c.silent.Load()
	return s
}
