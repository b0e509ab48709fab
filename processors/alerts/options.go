package alerts

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
)

// Clock tells the wall-clock time (the processors' shared clock type).
// Offline rules and the replay horizon use it; threshold durations use
// event time.
type Clock = groupkit.Clock

// Defaults of the options.
const (
	DefaultCheckInterval = 30 * time.Second
	DefaultHorizon       = time.Hour
	DefaultCatchUpDelay  = time.Minute
)

// Option configures NewProcessor, Graph and Run.
type Option func(*config)

type config struct {
	rules           *RuleSet
	serde           *schemas.Serde
	registry        *sr.Client
	clock           Clock
	checkInterval   time.Duration
	catchUpDelay    time.Duration
	horizon         time.Duration
	alertOnReplayed bool
	deadLetters     bool
	registerer      prometheus.Registerer
	log             *slog.Logger
	tester          goka.Tester
	kafka           *groupkit.Kafka
	gokaOpts        []goka.ProcessorOption
	offlineTimeout  func(tenant, device string) time.Duration
}

// WithOfflineTimeouts gives offline rules each device's own timeout:
// timeout(tenant, device) > 0 replaces a rule's "after" for that device
// (the device registry's offline_timeout; 0 = the rule's). It is called
// from the group's goroutines and must be fast and safe for concurrent
// use. Default: every device takes the rule's.
func WithOfflineTimeouts(timeout func(tenant, device string) time.Duration) Option {
	return func(c *config) { c.offlineTimeout = timeout }
}

func newConfig(opts []Option) (*config, error) {
	c := &config{
		clock:         groupkit.SystemClock{},
		checkInterval: DefaultCheckInterval,
		catchUpDelay:  DefaultCatchUpDelay,
		horizon:       DefaultHorizon,
		deadLetters:   true,
	}
	for _, o := range opts {
		o(c)
	}
	if c.rules == nil {
		c.rules = DefaultRules()
	}
	if c.clock == nil {
		c.clock = groupkit.SystemClock{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.serde == nil {
		if c.registry == nil {
			return nil, errors.New("alerts: no schema registry: pass WithSerde or WithRegistry")
		}
		s, err := schemas.NewSerde(c.registry)
		if err != nil {
			return nil, fmt.Errorf("alerts: %w", err)
		}
		c.serde = s
	}
	if c.checkInterval <= 0 {
		return nil, fmt.Errorf("alerts: check interval %s: must be positive", c.checkInterval)
	}
	if c.catchUpDelay < 0 {
		return nil, fmt.Errorf("alerts: catch-up delay %s: must not be negative", c.catchUpDelay)
	}
	if c.horizon < 0 {
		return nil, fmt.Errorf("alerts: horizon %s: must not be negative", c.horizon)
	}
	return c, nil
}

// WithRules sets the rule set, overriding the default (DefaultRules).
func WithRules(s *RuleSet) Option { return func(c *config) { c.rules = s } }

// WithSerde sets the serde for raw.sensor, raw.gps, alerts.events and
// dlq.events. One of WithSerde and WithRegistry is required.
func WithSerde(s *schemas.Serde) Option { return func(c *config) { c.serde = s } }

// WithRegistry builds the serde from a schema registry client (ignored when
// WithSerde is given).
func WithRegistry(cl *sr.Client) Option { return func(c *config) { c.registry = cl } }

// WithClock sets the wall clock, overriding the default (time.Now); nil
// keeps the default.
func WithClock(cl Clock) Option { return func(c *config) { c.clock = cl } }

// WithCheckInterval sets how often the offline sweep runs, overriding the
// default (30s). An offline alert fires at most two intervals after its
// deadline.
func WithCheckInterval(d time.Duration) Option { return func(c *config) { c.checkInterval = d } }

// WithCatchUpDelay sets when a partition counts as catching up a backlog,
// overriding the default (1m): while the raw.sensor or raw.gps record it
// processed last was produced (Kafka timestamp) more than d before the
// wall clock, the offline sweep skips the partition, so a processor that
// restarts after an outage does not report devices offline whose records
// are still in the backlog. 0 turns the check off (needed when producers
// set record timestamps to event time).
func WithCatchUpDelay(d time.Duration) Option { return func(c *config) { c.catchUpDelay = d } }

// WithHorizon sets how old (event time against the wall clock) a record may
// be and still fire or resolve alerts, overriding the default (1h). 0 means
// no limit. Older records only update state.
func WithHorizon(d time.Duration) Option { return func(c *config) { c.horizon = d } }

// AlertOnReplayed makes replayed and old records fire and resolve alerts
// like live ones, overriding the default (false: they only update state).
func AlertOnReplayed(on bool) Option { return func(c *config) { c.alertOnReplayed = on } }

// DeadLetters sets whether undecodable input records are written to
// dlq.events, overriding the default (true). They are counted and logged
// either way.
func DeadLetters(on bool) Option { return func(c *config) { c.deadLetters = on } }

// WithRegisterer registers the processor's metrics, overriding the default
// (not registered anywhere). Pass the admin server's registry.
func WithRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// WithLogger sets the logger, overriding the default (slog.Default()).
// goka's own messages are logged at debug level.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithTester runs the processor against goka's tester instead of Kafka.
func WithTester(t goka.Tester) Option { return func(c *config) { c.tester = t } }

// WithKafka sets the Kafka connection (sarama configuration with TLS and
// SASL, protocol version, replication of the topics goka creates, local
// storage directory), overriding the default groupkit.NewKafka(brokers):
// protocol groupkit.ProtocolVersion, plain text, replication 1, table in
// memory. Build it from the command line with groupkit.FromConn. The
// brokers passed to NewProcessor or Run, when not empty, replace k.Brokers.
func WithKafka(k groupkit.Kafka) Option { return func(c *config) { c.kafka = &k } }

// WithProcessorOptions appends raw goka processor options (applied last).
func WithProcessorOptions(opts ...goka.ProcessorOption) Option {
	return func(c *config) { c.gokaOpts = append(c.gokaOpts, opts...) }
}
