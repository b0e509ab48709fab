package state

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/processors/groupkit"
)

// Defaults of Config.
const (
	DefaultOfflineAfter = 10 * time.Minute
	DefaultTickInterval = 30 * time.Second
)

// DefaultBatteryMetrics are the metric names whose value becomes the
// shadow's battery field.
var DefaultBatteryMetrics = []string{"battery", "battery_pct", "battery_percent", "battery_level"}

// DefaultFirmwareAttrs are the record attributes whose value becomes the
// shadow's firmware field.
var DefaultFirmwareAttrs = []string{"firmware", "firmware_version", "fw"}

// Config configures the state group. Zero fields take their defaults.
type Config struct {
	// OfflineAfter is the wall-clock silence after which a device is
	// offline (default 10m).
	OfflineAfter time.Duration
	// TickInterval is how often every device is checked for silence
	// (default 30s; negative disables ticking). A device goes offline
	// within OfflineAfter + TickInterval.
	TickInterval time.Duration
	// BatteryMetrics name the metrics that carry the battery level
	// (default DefaultBatteryMetrics).
	BatteryMetrics []string
	// FirmwareAttrs name the record attributes that carry the firmware
	// version (default DefaultFirmwareAttrs).
	FirmwareAttrs []string
	// DeadLetters writes undecodable raw.sensor and raw.gps records (not
	// wire format, unknown schema id, body not matching) to dlq.events,
	// stage "process" (default false: counted and logged only). drover's
	// default is that only the alerts group dead-letters bad raw.* input,
	// so a bad record is dead-lettered once; turn this on only where the
	// alerts group does not run (see processors/README.md).
	DeadLetters bool
	// Clock is the wall clock (default the system clock).
	Clock groupkit.Clock
	// Registerer receives the group's metrics (default none).
	Registerer prometheus.Registerer
	// Log is the logger (default discards).
	Log *slog.Logger
}

// ErrConfig marks an invalid Config; the error is a *ConfigError.
var ErrConfig = errors.New("invalid state config")

// ConfigError is an invalid Config field. Field is the setting's name as
// the `drover process` flag spells it (offline-after).
type ConfigError struct {
	Field  string
	Value  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("invalid state config: %s %s: %s", e.Field, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrConfig) true.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func (c Config) withDefaults() Config {
	if c.OfflineAfter == 0 {
		c.OfflineAfter = DefaultOfflineAfter
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.BatteryMetrics == nil {
		c.BatteryMetrics = DefaultBatteryMetrics
	}
	if c.FirmwareAttrs == nil {
		c.FirmwareAttrs = DefaultFirmwareAttrs
	}
	if c.Clock == nil {
		c.Clock = groupkit.SystemClock{}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate checks c and returns an error wrapping ErrConfig that names the
// bad field.
func (c Config) Validate() error {
	if c.OfflineAfter < 0 {
		return &ConfigError{Field: "offline-after", Value: c.OfflineAfter.String(), Reason: "must be positive"}
	}
	if c.OfflineAfter != 0 && c.OfflineAfter < time.Second {
		return &ConfigError{Field: "offline-after", Value: c.OfflineAfter.String(), Reason: "must be at least 1s"}
	}
	return nil
}
