package features

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/processors/groupkit"
)

// Defaults of Config.
const (
	DefaultWindow       = time.Minute
	DefaultLateness     = 30 * time.Second
	DefaultIdleTimeout  = 2 * time.Minute
	DefaultTickInterval = 10 * time.Second
	DefaultTableFlush   = 100 * time.Millisecond
	DefaultMovingSpeed  = 0.3 // m/s; a grazing cow walks at 0.3–1 m/s
	DefaultGPSMaxGap    = 5 * time.Minute
	DefaultMaxFuture    = time.Hour
)

// Config configures the features group. The zero value of each field means
// its default; Validate checks the assembled config once.
type Config struct {
	// Windows are the tumbling window sizes (default [1m]); each between
	// 1s and 24h, no duplicates, whole seconds.
	Windows []time.Duration
	// Lateness is how long after a window's end (in the device's event
	// time) late records still update it; later ones are dropped and
	// counted (default 30s; 0 is allowed with ExactLateness).
	Lateness time.Duration
	// ExactLateness makes a zero Lateness mean zero, not the default.
	ExactLateness bool
	// IdleTimeout is the wall-clock silence after which a device's
	// windows close without newer event time (default 2m).
	IdleTimeout time.Duration
	// TickInterval is how often the wall clock visits every device to
	// close idle windows (default 10s; negative disables ticking).
	TickInterval time.Duration
	// MovingSpeed is the speed (m/s) at or above which a GPS segment
	// counts as moving time, below it as stationary (default 0.3).
	MovingSpeed float64
	// GPSMaxGap is the longest gap between two fixes that still makes a
	// motion segment (default 5m); longer gaps start afresh.
	GPSMaxGap time.Duration
	// MaxFuture drops records whose event time is further than this ahead
	// of the wall clock (default 1h), so one bad device clock cannot
	// close every window early.
	MaxFuture time.Duration
	// DeadLetters writes undecodable input records (not wire format,
	// unknown schema id, body not matching) to dlq.events, stage
	// "process" (default false: counted and logged only). drover's
	// default is that only the alerts group dead-letters bad raw.* input,
	// so a bad record is dead-lettered once; turn this on only where the
	// alerts group does not run (see processors/README.md).
	DeadLetters bool
	// TableFlush writes the group table behind (groupkit.WriteBehind):
	// the latest state of every changed device goes to the changelog this
	// often, and input offsets are committed after it (default 100ms;
	// negative writes every state change through, goka's own behaviour).
	// Re-applying a record after a crash is harmless: the state keeps the
	// next input offset per device and skips older records.
	TableFlush time.Duration
	// Clock is the wall clock (default the system clock).
	Clock groupkit.Clock
	// Registerer receives the group's metrics (default none).
	Registerer prometheus.Registerer
	// Log is the logger (default discards).
	Log *slog.Logger
}

// ErrConfig marks an invalid Config; the error is a *ConfigError.
var ErrConfig = errors.New("invalid features config")

// ConfigError is an invalid Config field. Field is the setting's name as
// the `drover process` flag spells it (window, lateness, idle-timeout,
// moving-speed, gps-max-gap, max-future).
type ConfigError struct {
	Field  string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid features config: %s %s: %s", e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func configErr(field string, value any, reason string) error {
	return &ConfigError{Field: field, Value: fmt.Sprint(value), Reason: reason}
}

func (c Config) withDefaults() Config {
	if len(c.Windows) == 0 {
		c.Windows = []time.Duration{DefaultWindow}
	}
	if c.Lateness == 0 && !c.ExactLateness {
		c.Lateness = DefaultLateness
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.TableFlush == 0 {
		c.TableFlush = DefaultTableFlush
	}
	if c.MovingSpeed == 0 {
		c.MovingSpeed = DefaultMovingSpeed
	}
	if c.GPSMaxGap == 0 {
		c.GPSMaxGap = DefaultGPSMaxGap
	}
	if c.MaxFuture == 0 {
		c.MaxFuture = DefaultMaxFuture
	}
	if c.Clock == nil {
		c.Clock = groupkit.SystemClock{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks c (after defaults) and returns an error wrapping
// ErrConfig that names the bad field.
func (c Config) Validate() error {
	c = c.withDefaults()
	seen := map[time.Duration]bool{}
	for _, w := range c.Windows {
		switch {
		case w < time.Second || w > 24*time.Hour:
			return configErr("window", w, "must be between 1s and 24h")
		case w%time.Second != 0:
			return configErr("window", w, "must be whole seconds")
		case seen[w]:
			return configErr("window", w, "given twice")
		}
		seen[w] = true
	}
	switch {
	case c.Lateness < 0:
		return configErr("lateness", c.Lateness, "must not be negative")
	case c.IdleTimeout < 0:
		return configErr("idle-timeout", c.IdleTimeout, "must be positive")
	case c.MovingSpeed < 0 || math.IsNaN(c.MovingSpeed) || math.IsInf(c.MovingSpeed, 0):
		return configErr("moving-speed", c.MovingSpeed, "must be a non-negative number")
	case c.GPSMaxGap < 0:
		return configErr("gps-max-gap", c.GPSMaxGap, "must be positive")
	case c.MaxFuture < 0:
		return configErr("max-future", c.MaxFuture, "must be positive")
	case c.TableFlush > time.Minute:
		return configErr("features-table-flush", c.TableFlush, "must be at most 1m (offsets are committed only after a flush)")
	}
	return nil
}
