package bridge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Defaults of Config, also the flag defaults of `drover bridge`.
const (
	DefaultGroup          = "ingestors"
	DefaultSessionExpiry  = 24 * time.Hour
	DefaultReceiveMaximum = 1024
	DefaultKeepAlive      = 30 * time.Second
	DefaultAckInterval    = 5 * time.Millisecond
	DefaultDrainTimeout   = 30 * time.Second
	DefaultTenant         = routes.DefaultTenant
	DefaultCommandsGroup  = "drover-bridge-downlink"
)

// Config configures a Bridge. Zero fields take the documented defaults;
// MQTTURL, KafkaOpts and Serde are required.
type Config struct {
	// MQTTURL is the broker: tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// or wss://.
	MQTTURL string
	// ClientID is the stable MQTT client id of this replica; default
	// "drover-bridge-" + hostname. The broker keeps the session under it.
	ClientID string
	// Group is the shared subscription group; default "ingestors".
	Group string
	// Filters are the topic filters to subscribe to, each as a shared
	// subscription $share/<group>/<filter>; default Routes.Filters(), the
	// routes table's prefixes (devices/#, spBv1.0/# and wildfi/# with the default table).
	Filters []string
	// Username and Password authenticate to the broker (optional).
	Username string
	Password []byte
	// TLS configures ssl:// and mqtts:// connections (nil = system roots).
	TLS *tls.Config
	// SessionExpiry is the MQTT v5 session expiry interval; default 24h.
	// While the bridge is away for less than this, the broker queues its
	// messages.
	SessionExpiry time.Duration
	// ReceiveMaximum bounds the unacknowledged messages the broker sends;
	// default 1024.
	ReceiveMaximum int
	// KeepAlive is the MQTT keep-alive; default 30s.
	KeepAlive time.Duration
	// AckInterval is how often paho sends the acknowledgements that became
	// ready (in receive order); default 5ms.
	AckInterval time.Duration
	// Reconnect shapes the MQTT reconnect back-off (jittered, exponential,
	// reset after a stable connection); zero fields take its defaults.
	Reconnect Reconnect
	// Workers decode and produce in parallel; messages of one device stay on
	// one worker, so per-device order holds. Default 2 × GOMAXPROCS.
	Workers int

	// Routes is the routing table; default routes.Default().
	Routes *routes.Table
	// DefaultTenant is the tenant of routes without {tenant} (WildFi);
	// default "default".
	DefaultTenant string
	// Limits are the semantic checks; zero value = decode.DefaultLimits().
	Limits decode.Limits
	// Admission checks every message's device against the device registry
	// (ingest.NewAdmission); nil = no check. With one, Run subscribes only once
	// the registry view is restored: until then the bridge is not ready
	// and acknowledges nothing.
	Admission *ingest.Admission

	// KafkaOpts are the franz-go connection options (seed brokers, TLS,
	// SASL); the bridge adds its producer and consumer settings.
	KafkaOpts []kgo.Opt
	// ProducerOpts are appended to the producer's options (compression,
	// linger, hooks such as kprom).
	ProducerOpts []kgo.Opt
	// DownlinkOpts are appended to the downlink consumer's options (hooks
	// such as kprom).
	DownlinkOpts []kgo.Opt
	// Serde encodes records and decodes commands; required.
	Serde *schemas.Serde
	// DLQTopic is where dead letters go; default topics.DLQ.
	DLQTopic string

	// Downlink enables the commands consumer.
	Downlink bool
	// CommandsTopic is consumed by the downlink; default topics.Commands.
	CommandsTopic string
	// CommandsGroup is the downlink's consumer group; default
	// "drover-bridge-downlink".
	CommandsGroup string
	// Presence is when the downlink sends a command: PresenceEvents (the
	// default) once the broker's client-connected events say the device is
	// connected, PresenceNone at once.
	Presence string
	// ShadowDeltas makes the downlink follow state.latest and publish each
	// device's pending shadow delta on devices/{tenant}/{device}/shadow/delta
	// when the device connects (with PresenceEvents) and when its desired
	// state changes. Off by default in Config; `drover bridge` and drover
	// dev turn it on (--shadow-deltas).
	ShadowDeltas bool
	// ExpiryTick is how often the downlink looks for commands whose
	// deadline passed; default 1s.
	ExpiryTick time.Duration

	// DrainTimeout bounds how long Run waits for in-flight messages after
	// its context is cancelled; default 30s.
	DrainTimeout time.Duration

	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives the bridge's logs; default slog.Default().
	Log *slog.Logger
	// Metrics is where the bridge registers its collectors (nil = none).
	Metrics prometheus.Registerer
}

// ErrConfig marks an invalid Config; the message names the field.
var ErrConfig = errors.New("invalid bridge config")

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	if cfg.MQTTURL == "" {
		return cfg, fmt.Errorf("%w: MQTTURL: empty", ErrConfig)
	}
	u, err := url.Parse(cfg.MQTTURL)
	if err != nil {
		return cfg, fmt.Errorf("%w: MQTTURL %q: %v", ErrConfig, cfg.MQTTURL, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return cfg, fmt.Errorf("%w: MQTTURL %q: unsupported scheme %q (want tcp, mqtt, ssl, tls, mqtts, ws or wss)", ErrConfig, cfg.MQTTURL, u.Scheme)
	}
	if u.Host == "" {
		return cfg, fmt.Errorf("%w: MQTTURL %q: no host", ErrConfig, cfg.MQTTURL)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID()
	}
	if len(cfg.ClientID) > 65535 {
		return cfg, fmt.Errorf("%w: ClientID: too long", ErrConfig)
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if strings.ContainsAny(cfg.Group, "/+#") {
		return cfg, fmt.Errorf("%w: Group %q: must not contain '/', '+' or '#'", ErrConfig, cfg.Group)
	}
	if cfg.SessionExpiry == 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.SessionExpiry < 0 || cfg.SessionExpiry > time.Duration(1<<32-1)*time.Second {
		return cfg, fmt.Errorf("%w: SessionExpiry %s: want 1s to 136y", ErrConfig, cfg.SessionExpiry)
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = DefaultReceiveMaximum
	}
	if cfg.ReceiveMaximum < 1 || cfg.ReceiveMaximum > 65535 {
		return cfg, fmt.Errorf("%w: ReceiveMaximum %d: want 1 to 65535", ErrConfig, cfg.ReceiveMaximum)
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.KeepAlive < time.Second || cfg.KeepAlive > 65535*time.Second {
		return cfg, fmt.Errorf("%w: KeepAlive %s: want 1s to 18h", ErrConfig, cfg.KeepAlive)
	}
	if cfg.Reconnect, err = cfg.Reconnect.withDefaults(); err != nil {
		return cfg, err
	}
	if cfg.AckInterval <= 0 {
		cfg.AckInterval = DefaultAckInterval
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if cfg.Routes == nil {
		cfg.Routes = routes.Default()
	}
	if len(cfg.Filters) == 0 {
		cfg.Filters = cfg.Routes.Filters()
	}
	if cfg.DefaultTenant == "" {
		cfg.DefaultTenant = DefaultTenant
	}
	if err := identity.ValidTenant(cfg.DefaultTenant); err != nil {
		return cfg, fmt.Errorf("%w: DefaultTenant: %w", ErrConfig, err)
	}
	if cfg.Limits == (decode.Limits{}) {
		cfg.Limits = decode.DefaultLimits()
	}
	if cfg.Limits.MaxPayload <= 0 {
		cfg.Limits.MaxPayload = decode.DefaultMaxPayload
	}
	if len(cfg.KafkaOpts) == 0 {
		return cfg, fmt.Errorf("%w: KafkaOpts: no seed brokers", ErrConfig)
	}
	if cfg.Serde == nil {
		return cfg, fmt.Errorf("%w: Serde: nil", ErrConfig)
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = topics.DLQ
	}
	if cfg.CommandsTopic == "" {
		cfg.CommandsTopic = topics.Commands
	}
	switch cfg.Presence {
	case "":
		cfg.Presence = PresenceEvents
	case PresenceEvents, PresenceNone:
	default:
		return cfg, fmt.Errorf("%w: Presence %q: want %s or %s", ErrConfig, cfg.Presence, PresenceEvents, PresenceNone)
	}
	if cfg.ExpiryTick <= 0 {
		cfg.ExpiryTick = time.Second
	}
	if cfg.CommandsGroup == "" {
		cfg.CommandsGroup = DefaultCommandsGroup
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return cfg, nil
}

// DefaultClientID is "drover-bridge-" + the host name: stable across
// restarts of one replica (a StatefulSet pod, a VM), distinct between
// replicas.
func DefaultClientID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "local"
	}
	return "drover-bridge-" + h
}
