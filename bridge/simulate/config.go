package simulate

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Clock gives the event time stamped on generated messages. Tests inject a
// fake one; the wall clock only paces publishing.
type Clock interface {
	Now() time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// Config is one simulation. The zero value of every field means its
// documented default; Validate checks the assembled config once, and Run
// calls it.
type Config struct {
	// MQTTURL is the broker (tcp://, mqtt://, ssl://, tls://, mqtts://, ws://,
	// wss://); user and password may ride in the URL. Required.
	MQTTURL string
	// MQTTUser and MQTTPassword authenticate to the broker (override the URL's).
	MQTTUser     string
	MQTTPassword string
	// TLS is used for ssl://, tls://, mqtts:// and wss:// URLs (nil = system roots).
	TLS TLSFiles
	// ClientID prefixes the MQTT client ids (default "drover-simulate-<pid>");
	// connection i uses ClientID-i.
	ClientID string
	// Connections is the number of MQTT connections devices share
	// (default 1; devices are spread over them). Ignored with Credentials.
	Connections int
	// Credentials, when set, make every device connect as itself, as a
	// broker that enforces the device registry requires: one connection per
	// device with client id and username TENANT/DEVICE and the device's
	// secret (Credentials[device id]) as password. Malformed classes whose
	// topic lies outside the device's own (unknown_topic, invalid_identity,
	// a WildFi type from a non-WildFi device) are not sent then: such a
	// broker refuses them. Every device of the herd (Herd) needs a secret.
	Credentials map[string]string
	// AnswerCommands makes every device (with Credentials only: it needs
	// a connection of its own) subscribe to its commands and reply to each:
	// "fail" fails, anything else succeeds.
	AnswerCommands bool
	// FollowShadow makes every device (with Credentials only) subscribe to
	// its shadow delta (devices/TENANT/DEVICE/shadow/delta) and report the
	// desired values back: numbers as measurements of the key's name,
	// "firmware" as the firmware attribute, so the delta clears.
	FollowShadow bool
	// InFlight bounds the QoS 1 publishes awaiting PUBACK (default 32).
	InFlight int
	// ConnectTimeout bounds the wait for the first MQTT connection
	// (default DefaultConnectTimeout); Run fails with ErrNotConnected after it.
	ConnectTimeout time.Duration

	// Tenant owns the simulated devices (default "demo"). Letters, digits,
	// '.', '_' and '-', at most 64, starting with a letter or digit.
	Tenant string
	// DevicePrefix names devices <prefix>-0001 ... (default "collar");
	// WildFi collars are wildfi-0001 ...
	DevicePrefix string
	// Devices is the herd size (default 10).
	Devices int
	// Rate is the steady publish rate across all devices in messages per
	// second (default 10).
	Rate float64
	// Burst is how many messages may go at once after a stall (default
	// max(1, Rate/10)).
	Burst int
	// Duration stops the run after this long (0 = no limit).
	Duration time.Duration
	// Count stops the run after this many messages (0 = no limit).
	Count int64
	// InvalidRatio is the share of malformed messages, 0..1 (default 0).
	// They cycle through every class of Classes().
	InvalidRatio float64
	// Seed makes the traffic reproducible (same seed and event times, same
	// messages). Default 1.
	Seed uint64

	// Pasture is where GPS fixes fall (default DefaultPasture()).
	Pasture *Polygon
	// SenMLRatio is the share of devices that send SenML arrays on their
	// sensor channel (default 0.2; negative = none).
	SenMLRatio float64
	// WildFiRatio is the share of devices that are WildFi collars on
	// wildfi/{device}/{type} (default 0.1; negative = none).
	WildFiRatio float64
	// MediaRatio is the share of messages that are media uploads from
	// camera-fitted devices (default 0.002; negative = none).
	MediaRatio float64
	// FeverRate is fever episodes per device per day of event time
	// (default 1; negative = none). An episode keeps body temperature above
	// 39.5 °C for 15 to 60 minutes.
	FeverRate float64
	// SilenceRate is silent spells per device per day of event time
	// (default 6; negative = none); a spell lasts 3 to 15 minutes.
	SilenceRate float64
	// MaxSilentShare caps the share of devices silent at once (default 0.1).
	MaxSilentShare float64

	// Bucket receives media objects (default DefaultBucket).
	Bucket string
	// S3 says where the bucket lives. Media uploads need it when MediaRatio > 0.
	S3 S3Config

	// SummaryEvery is the period of the one-line progress log (default 10s;
	// negative = off).
	SummaryEvery time.Duration
	// Clock stamps event times (default the wall clock).
	Clock Clock
	// Metrics, when set, receives the simulator's Prometheus metrics.
	Metrics prometheus.Registerer
	// OnConnect, when set, is called each time an MQTT connection is up
	// (readiness checks use it).
	OnConnect func()

	defaulted bool // withDefaults ran (it must not run twice: 0 means default, negative none)
}

// TLSFiles names PEM files for the MQTT TLS connection.
type TLSFiles struct {
	CA, Cert, Key string
}

// Defaults.
const (
	DefaultTenant       = "demo"
	DefaultDevicePrefix = "collar"
	DefaultDevices      = 10
	DefaultRate         = 10.0
	DefaultInFlight     = 32
	DefaultSenMLRatio   = 0.2
	DefaultWildFiRatio  = 0.1
	DefaultMediaRatio   = 0.002
	DefaultFeverRate    = 1.0
	DefaultSilenceRate  = 6.0
	DefaultSilentShare  = 0.1
	DefaultSummaryEvery = 10 * time.Second
	// MaxDevices bounds the herd (and the ids' width).
	MaxDevices = 1_000_000
	// MinRate and MaxRate bound Config.Rate (messages per second).
	MinRate = 0.001
	MaxRate = 10_000_000
	// MaxBurst bounds Config.Burst.
	MaxBurst = 1_000_000
)

// ConfigError is a bad Config field, named by its `drover simulate` flag.
type ConfigError struct {
	Flag   string // e.g. "devices"
	Reason string
}

func (e *ConfigError) Error() string { return "--" + e.Flag + ": " + e.Reason }

func bad(flag, format string, args ...any) error {
	return &ConfigError{Flag: flag, Reason: fmt.Sprintf(format, args...)}
}

// NameRE is what tenants and device prefixes must match: safe in an MQTT
// topic level and a Kafka key.
var NameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// withDefaults returns c with zero fields set to their defaults; negative
// ratios and rates become 0.
func (c Config) withDefaults() Config {
	if c.defaulted {
		return c
	}
	c.defaulted = true
	if c.Tenant == "" {
		c.Tenant = DefaultTenant
	}
	if c.DevicePrefix == "" {
		c.DevicePrefix = DefaultDevicePrefix
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst == 0 {
		c.Burst = max(1, int(c.Rate/10))
	}
	if c.Connections == 0 {
		c.Connections = 1
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.InFlight == 0 {
		c.InFlight = DefaultInFlight
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Pasture == nil {
		p := DefaultPasture()
		c.Pasture = &p
	}
	def := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	def(&c.SenMLRatio, DefaultSenMLRatio)
	def(&c.WildFiRatio, DefaultWildFiRatio)
	def(&c.MediaRatio, DefaultMediaRatio)
	def(&c.FeverRate, DefaultFeverRate)
	def(&c.SilenceRate, DefaultSilenceRate)
	if c.MaxSilentShare == 0 {
		c.MaxSilentShare = DefaultSilentShare
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.SummaryEvery == 0 {
		c.SummaryEvery = DefaultSummaryEvery
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	return c
}

// Validate reports the first bad field as a *ConfigError naming its flag.
// Zero values are fine (they mean the default); negative counts and
// out-of-range ratios are not.
func (c Config) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case c.Devices < 0 || c.Devices > MaxDevices:
		return bad("devices", "must be between 1 and %d, got %d", MaxDevices, c.Devices)
	case !finite(c.Rate) || c.Rate < 0 || (c.Rate > 0 && c.Rate < MinRate) || c.Rate > MaxRate:
		return bad("rate", "must be between %v and %v messages per second, got %v", MinRate, MaxRate, c.Rate)
	case c.Burst < 0 || c.Burst > MaxBurst:
		return bad("burst", "must be between 1 and %d, got %d", MaxBurst, c.Burst)
	case c.Duration < 0:
		return bad("duration", "must not be negative, got %s", c.Duration)
	case c.Count < 0:
		return bad("count", "must not be negative, got %d", c.Count)
	case !finite(c.InvalidRatio) || c.InvalidRatio < 0 || c.InvalidRatio > 1:
		return bad("invalid-ratio", "must be between 0 and 1, got %v", c.InvalidRatio)
	case c.Tenant != "" && !NameRE.MatchString(c.Tenant):
		return bad("tenant", "%q: use letters, digits, '.', '_' or '-' (at most 64, no '/', '+', '#' or spaces), starting with a letter or digit", c.Tenant)
	case c.DevicePrefix != "" && !NameRE.MatchString(c.DevicePrefix):
		return bad("device-prefix", "%q: use letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit", c.DevicePrefix)
	case c.Connections < 0 || c.Connections > 1000:
		return bad("connections", "must be between 1 and 1000, got %d", c.Connections)
	case c.ConnectTimeout < 0:
		return bad("connect-timeout", "must not be negative, got %s", c.ConnectTimeout)
	case c.InFlight < 0 || c.InFlight > 65535:
		return bad("in-flight", "must be between 1 and 65535, got %d", c.InFlight)
	case !finite(c.SenMLRatio) || c.SenMLRatio > 1:
		return bad("senml-ratio", "must be at most 1, got %v", c.SenMLRatio)
	case !finite(c.WildFiRatio) || c.WildFiRatio > 1:
		return bad("wildfi-ratio", "must be at most 1, got %v", c.WildFiRatio)
	case max(c.SenMLRatio, 0)+max(c.WildFiRatio, 0) > 1:
		return bad("senml-ratio", "--senml-ratio plus --wildfi-ratio must be at most 1, got %v", max(c.SenMLRatio, 0)+max(c.WildFiRatio, 0))
	case !finite(c.MediaRatio) || c.MediaRatio > 1:
		return bad("media-ratio", "must be at most 1, got %v", c.MediaRatio)
	case !finite(c.FeverRate):
		return bad("fever-rate", "must be a number, got %v", c.FeverRate)
	case !finite(c.SilenceRate):
		return bad("silence-rate", "must be a number, got %v", c.SilenceRate)
	case !finite(c.MaxSilentShare) || c.MaxSilentShare < 0 || c.MaxSilentShare > 1:
		return bad("max-silent-share", "must be between 0 and 1, got %v", c.MaxSilentShare)
	case c.Bucket != "" && !bucketRE.MatchString(c.Bucket):
		return bad("s3-bucket", "%q is not a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')", c.Bucket)
	}
	if c.Pasture != nil {
		if err := c.Pasture.Validate(); err != nil {
			return bad("pasture", "%v", err)
		}
	}
	if c.MQTTURL == "" {
		return bad("mqtt-url", "required")
	}
	if _, err := brokerURL(c.MQTTURL); err != nil {
		return bad("mqtt-url", "%v", err)
	}
	return nil
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// brokerURL parses and normalises a broker URL for autopaho (which dials
// mqtt/tcp, ssl/tls/mqtts, ws and wss).
func brokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("%q: unsupported scheme %q (want tcp, mqtt, ssl, tls, mqtts, ws or wss)", s, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	return u, nil
}
