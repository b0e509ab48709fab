package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultAdminAddr is where `drover bridge` serves /metrics, /healthz and
// /readyz by default.
const DefaultAdminAddr = ":9410"

// flags are the command-line settings of `drover bridge`.
type flags struct {
	clientID       string
	group          string
	username       string
	passwordFile   string
	tlsCA          string
	tlsCert        string
	tlsKey         string
	sessionExpiry  time.Duration
	receiveMaximum int
	keepAlive      time.Duration
	ackInterval    time.Duration
	filters        []string

	routesFile    string
	printRoutes   bool
	defaultTenant string
	maxPayload    int
	maxFuture     time.Duration
	maxAge        time.Duration
	workers       int
	drainTimeout  time.Duration

	compression  string
	linger       time.Duration
	autoRegister bool

	downlink      bool
	commandsGroup string
	presence      string
	shadowDeltas  bool

	registryMode  string
	registryTopic string

	adminAddr string
}

// Command returns `drover bridge`.
func Command(conn *cli.Conn) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "bridge",
		Short: "Bridge MQTT device messages into Kafka (validated Avro records or dead letters) and Kafka commands back to devices",
		Long: `bridge subscribes to the MQTT broker with shared subscriptions
($share/<group>/ + each prefix of the routes table: devices/#, spBv1.0/#, wildfi/#; QoS 1, persistent
session), decodes every message by its topic (routes), validates it and
produces Avro records to raw.sensor, raw.gps and raw.{image2d,image3d,
video2d,video3d}.meta, or a dead letter with stage and reason to dlq.events.

A message is acknowledged on MQTT only after Kafka acknowledged its records
(or its dead letter), so nothing is lost when the bridge, the broker
connection or Kafka fails: unacknowledged messages stay in the broker session
and are redelivered. At most --mqtt-receive-maximum messages are in flight;
when Kafka is slow or down the bridge stops acknowledging and the broker
holds the backlog.

The downlink (--downlink) consumes commands.devices and publishes each
command to devices/{tenant}/{device_id}/commands with QoS 1, committing the
offset after the broker's PUBACK; expired commands become dead letters.

Replicas share the load through the subscription group; give each replica a
stable, distinct --mqtt-client-id (the default derives it from the host
name). SIGTERM drains in-flight messages (up to --drain-timeout) and exits.

The accepted payloads, the routes file and the dead-letter reasons are
documented in bridge/README.md; --print-routes shows the default routes.`,
		Example: `  # against the dev stack (endpoints from .drover/dev.env)
  drover bridge

  # production-like: TLS broker, two replicas share "ingestors"
  drover bridge --mqtt-url mqtts://broker:8883 --mqtt-tls-ca ca.pem \
    --mqtt-username bridge --mqtt-password-file /run/secrets/mqtt \
    --mqtt-client-id bridge-0 --kafka-brokers kafka:9092

  # custom routes
  drover bridge --print-routes > routes.yaml && $EDITOR routes.yaml
  drover bridge --routes routes.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.Usagef("%s takes no arguments, got %q (see '%s --help')", cli.Path(cmd), args, cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.printRoutes {
				_, err := cmd.OutOrStdout().Write(routes.DefaultYAML())
				return err
			}
			return run(cmd.Context(), conn, &f)
		},
	}
	cli.ChecksConfig(cmd)
	fs := cmd.Flags()
	conn.AddMQTTFlags(fs)
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&f.clientID, "mqtt-client-id", "", "stable MQTT client id of this replica; the broker keeps the session under it (default drover-bridge-<hostname>)")
	fs.StringVar(&f.group, "mqtt-group", DefaultGroup, "shared subscription group: replicas in one group split the messages")
	fs.StringSliceVar(&f.filters, "mqtt-topics", nil, "MQTT topic filters to subscribe to, each as $share/<group>/<filter> (default: the routes table's prefixes, devices/#, spBv1.0/# and wildfi/# with the default table)")
	fs.StringVar(&f.username, "mqtt-username", "", "MQTT user name")
	fs.StringVar(&f.passwordFile, "mqtt-password-file", "", "file holding the MQTT password (a mounted secret)")
	fs.StringVar(&f.tlsCA, "mqtt-tls-ca", "", "PEM file of CAs to trust for ssl:// and mqtts:// brokers (default: system roots)")
	fs.StringVar(&f.tlsCert, "mqtt-tls-cert", "", "PEM client certificate for MQTT mTLS")
	fs.StringVar(&f.tlsKey, "mqtt-tls-key", "", "PEM client key for MQTT mTLS")
	fs.DurationVar(&f.sessionExpiry, "mqtt-session-expiry", DefaultSessionExpiry, "MQTT session expiry: how long the broker keeps queueing for this bridge while it is away")
	fs.IntVar(&f.receiveMaximum, "mqtt-receive-maximum", DefaultReceiveMaximum, "most unacknowledged messages the broker may send (MQTT v5 Receive Maximum, 1-65535): the in-flight bound")
	fs.DurationVar(&f.keepAlive, "mqtt-keepalive", DefaultKeepAlive, "MQTT keep-alive interval")
	fs.DurationVar(&f.ackInterval, "mqtt-ack-interval", DefaultAckInterval, "how often ready acknowledgements are sent (in receive order)")
	fs.StringVar(&f.routesFile, "routes", "", "routes file (YAML) replacing the embedded default routing table")
	fs.BoolVar(&f.printRoutes, "print-routes", false, "print the embedded default routes file and exit")
	fs.StringVar(&f.defaultTenant, "default-tenant", DefaultTenant, "tenant of routes whose topic has no {tenant} (WildFi collars)")
	fs.IntVar(&f.maxPayload, "max-payload", decode.DefaultMaxPayload, "largest accepted payload in bytes; larger ones are dead letters (truncated to this size)")
	fs.DurationVar(&f.maxFuture, "max-future", decode.DefaultLimits().MaxFuture, "how far a ts may lie in the future (device clock skew); 0 = unchecked")
	fs.DurationVar(&f.maxAge, "max-age", decode.DefaultLimits().MaxAge, "how far a ts may lie in the past; 0 = unchecked")
	fs.IntVar(&f.workers, "workers", 0, "decode/produce workers; one device always uses the same one (default 2 × CPUs)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", DefaultDrainTimeout, "on SIGTERM, how long to wait for in-flight messages to reach Kafka")
	fs.StringVar(&f.compression, "kafka-compression", "snappy", "producer compression: snappy, lz4, zstd, gzip or none (snappy: lz4 and zstd cost 15-20 MB more memory)")
	fs.DurationVar(&f.linger, "kafka-linger", 5*time.Millisecond, "producer linger: how long a batch may wait for more records")
	fs.BoolVar(&f.autoRegister, "schema-auto-register", false, "register missing schemas at start (default: require 'drover schemas register')")
	fs.StringVar(&f.registryMode, "registry", string(ingest.RegistryAuto), "device registry check per message: enforce (unknown_device and device_revoked dead letters), observe (count and mark with the drover.registry header), off, or auto = enforce when the registry topic exists in Kafka, else off")
	fs.StringVar(&f.registryTopic, "registry-topic", topics.DevicesRegistry, "the device registry's compacted topic")
	fs.BoolVar(&f.downlink, "downlink", true, "publish commands from commands.devices to devices")
	fs.StringVar(&f.commandsGroup, "commands-group", DefaultCommandsGroup, "Kafka consumer group of the downlink")
	fs.BoolVar(&f.shadowDeltas, "shadow-deltas", true, "with the downlink: follow state.latest and publish each device's pending desired-state delta on devices/{tenant}/{device}/shadow/delta when it connects and when its desired state changes")
	fs.StringVar(&f.presence, "command-presence", PresenceEvents, "when the downlink sends a command: events = once the broker's client-connected events ($SYS/brokers/+/clients/#: the embedded broker, EMQX) say the device is connected; none = at once (Mosquitto, which has no such events: the device's session holds it)")
	admin.AddFlag(fs, &f.adminAddr, DefaultAdminAddr)
	return cmd
}

// buildConfig turns flags into a Config; errors are usage errors naming
// the flag.
func buildConfig(conn *cli.Conn, f *flags) (Config, error) {
	cfg := Config{
		MQTTURL:        conn.MQTTURL,
		ClientID:       f.clientID,
		Group:          f.group,
		Filters:        f.filters,
		Username:       f.username,
		SessionExpiry:  f.sessionExpiry,
		ReceiveMaximum: f.receiveMaximum,
		KeepAlive:      f.keepAlive,
		AckInterval:    f.ackInterval,
		Workers:        f.workers,
		DefaultTenant:  f.defaultTenant,
		Limits:         decode.Limits{MaxPayload: f.maxPayload, MaxFuture: f.maxFuture, MaxAge: f.maxAge},
		Downlink:       f.downlink,
		CommandsGroup:  f.commandsGroup,
		Presence:       f.presence,
		ShadowDeltas:   f.downlink && f.shadowDeltas,
		DrainTimeout:   f.drainTimeout,
		Log:            conn.Logger(),
	}
	u, err := url.Parse(conn.MQTTURL)
	if err != nil || u.Host == "" {
		return cfg, cli.Usagef("--mqtt-url %q: want scheme://host:port (tcp, mqtt, ssl, tls, mqtts, ws, wss)", conn.MQTTURL)
	}
	switch s := strings.ToLower(u.Scheme); s {
	case "tcp", "mqtt", "ws":
		if f.tlsCA != "" || f.tlsCert != "" {
			return cfg, cli.Usagef("--mqtt-tls-ca/--mqtt-tls-cert need an ssl://, tls://, mqtts:// or wss:// --mqtt-url, got %s://", s)
		}
	case "ssl", "tls", "mqtts", "wss":
		tc, err := cli.TLSConfig("mqtt-tls", f.tlsCA, f.tlsCert, f.tlsKey)
		if err != nil {
			return cfg, err
		}
		tc.ServerName = u.Hostname()
		cfg.TLS = tc
	default:
		return cfg, cli.Usagef("--mqtt-url %q: unsupported scheme %q (want tcp, mqtt, ssl, tls, mqtts, ws or wss)", conn.MQTTURL, u.Scheme)
	}
	if f.passwordFile != "" {
		b, err := readSecret(f.passwordFile)
		if err != nil {
			return cfg, cli.Usagef("--mqtt-password-file: %w", err)
		}
		cfg.Password = b
		if f.username == "" {
			return cfg, cli.Usagef("--mqtt-password-file needs --mqtt-username")
		}
	}
	switch {
	case f.group == "" || strings.ContainsAny(f.group, "/+#"):
		return cfg, cli.Usagef("--mqtt-group %q: must be non-empty without '/', '+' or '#'", f.group)
	case f.receiveMaximum < 1 || f.receiveMaximum > 65535:
		return cfg, cli.Usagef("--mqtt-receive-maximum %d: want 1 to 65535", f.receiveMaximum)
	case f.sessionExpiry < time.Second:
		return cfg, cli.Usagef("--mqtt-session-expiry %s: want at least 1s (0 would drop the backlog on every disconnect)", f.sessionExpiry)
	case f.keepAlive < time.Second || f.keepAlive > 65535*time.Second:
		return cfg, cli.Usagef("--mqtt-keepalive %s: want 1s to 18h", f.keepAlive)
	case f.ackInterval <= 0 || f.ackInterval > 10*time.Second:
		return cfg, cli.Usagef("--mqtt-ack-interval %s: want more than 0 and at most 10s", f.ackInterval)
	case f.maxPayload < 1:
		return cfg, cli.Usagef("--max-payload %d: want a positive number of bytes", f.maxPayload)
	case f.maxFuture < 0:
		return cfg, cli.Usagef("--max-future %s: must not be negative", f.maxFuture)
	case f.maxAge < 0:
		return cfg, cli.Usagef("--max-age %s: must not be negative", f.maxAge)
	case f.workers < 0:
		return cfg, cli.Usagef("--workers %d: must not be negative", f.workers)
	case f.drainTimeout <= 0:
		return cfg, cli.Usagef("--drain-timeout %s: must be positive", f.drainTimeout)
	case identity.ValidTenant(f.defaultTenant) != nil:
		return cfg, cli.Usagef("--default-tenant: %v", identity.ValidTenant(f.defaultTenant))
	case f.linger < 0:
		return cfg, cli.Usagef("--kafka-linger %s: must not be negative", f.linger)
	}
	for _, flt := range f.filters {
		if flt == "" || strings.HasPrefix(flt, "$share/") {
			return cfg, cli.Usagef("--mqtt-topics %q: give plain filters; the bridge adds $share/<group>/", flt)
		}
	}
	if _, err := ingest.ParseRegistryMode(f.registryMode); err != nil {
		return cfg, cli.Usagef("--registry %w", err)
	}
	if f.registryTopic == "" {
		return cfg, cli.Usagef("--registry-topic: empty")
	}
	if f.routesFile != "" {
		r, err := routes.Load(f.routesFile)
		if err != nil {
			return cfg, cli.Usagef("--routes: %w", err)
		}
		cfg.Routes = r
	}
	comp, err := compression(f.compression)
	if err != nil {
		return cfg, err
	}
	cfg.ProducerOpts = []kgo.Opt{kgo.ProducerBatchCompression(comp...), kgo.ProducerLinger(f.linger)}
	return cfg, nil
}

func compression(name string) ([]kgo.CompressionCodec, error) {
	switch strings.ToLower(name) {
	case "lz4":
		return []kgo.CompressionCodec{kgo.Lz4Compression(), kgo.NoCompression()}, nil
	case "zstd":
		return []kgo.CompressionCodec{kgo.ZstdCompression(), kgo.NoCompression()}, nil
	case "snappy":
		return []kgo.CompressionCodec{kgo.SnappyCompression(), kgo.NoCompression()}, nil
	case "gzip":
		return []kgo.CompressionCodec{kgo.GzipCompression(), kgo.NoCompression()}, nil
	case "none", "":
		return []kgo.CompressionCodec{kgo.NoCompression()}, nil
	}
	return nil, cli.Usagef("--kafka-compression %q: want lz4, zstd, snappy, gzip or none", name)
}

func run(ctx context.Context, conn *cli.Conn, f *flags) error {
	cfg, err := buildConfig(conn, f)
	if err != nil {
		return err
	}
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return err
	}
	cfg.KafkaOpts = kopts
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	if err := conn.ConfigChecked(); err != nil {
		return err
	}
	adm := admin.New(f.adminAddr, cfg.Log)
	if err := adm.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	return serve(ctx, cfg, reg, serveOpts{autoRegister: f.autoRegister, registryMode: ingest.RegistryMode(f.registryMode),
		registryTopic: f.registryTopic}, adm, func(ctx context.Context, cl *kgo.Client) error {
		return conn.PingKafka(ctx, cl, 15*time.Second)
	})
}

// serveOpts are serve's settings beyond the Config.
type serveOpts struct {
	autoRegister  bool
	registryMode  ingest.RegistryMode // "" = auto
	registryTopic string              // "" = topics.DevicesRegistry
}

// serve prepares the schemas, builds the bridge with kprom metrics and runs
// it next to the admin server (and the registry view, when the registry is
// checked).
func serve(ctx context.Context, cfg Config, reg *sr.Client, o serveOpts, adm *admin.Server, ping func(context.Context, *kgo.Client) error) error {
	serde, err := schemas.NewSerde(reg, schemas.AutoRegister(o.autoRegister))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = serde.Prepare(pctx, append(cfg.routesOrDefault().Topics(), cfg.dlqOrDefault())...)
	cancel()
	if err != nil {
		if errors.Is(err, schemas.ErrNotRegistered) {
			return fmt.Errorf("schemas: %w (or pass --schema-auto-register)", err)
		}
		return fmt.Errorf("schemas: %w", err)
	}
	cfg.Serde = serde
	km := adm.KafkaMetrics("bridge")
	cfg.ProducerOpts = append(cfg.ProducerOpts, km("producer"))
	cfg.DownlinkOpts = append(cfg.DownlinkOpts, km("downlink"))
	cfg.Metrics = adm.Registry
	if cfg.Admission, err = registryAdmission(ctx, cfg, serde, o, adm); err != nil {
		return err
	}
	b, err := New(cfg)
	if err != nil {
		if errors.Is(err, ErrConfig) {
			return cli.Usagef("%w", err)
		}
		return err
	}
	if ping != nil {
		if err := ping(ctx, b.Kafka()); err != nil {
			b.Kafka().Close()
			return err
		}
	}
	adm.AddCheck("bridge", b.Ready)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return adm.Run(gctx) })
	if v := cfg.Admission.View(); v != nil {
		adm.AddCheck("registry", v.Check)
		g.Go(func() error { return v.Run(gctx) })
	}
	g.Go(func() error {
		err := b.Run(gctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("bridge stopped unexpectedly")
		}
		return err
	})
	err = g.Wait()
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// registryAdmission builds the bridge's registry check.
func registryAdmission(ctx context.Context, cfg Config, serde *schemas.Serde, o serveOpts, adm *admin.Server) (*ingest.Admission, error) {
	return ingest.OpenAdmission(ctx, cfg.KafkaOpts, serde, o.registryMode, o.registryTopic, cfg.Log, adm.Registry)
}

func (c *Config) routesOrDefault() *routes.Table {
	if c.Routes != nil {
		return c.Routes
	}
	return routes.Default()
}

func (c *Config) dlqOrDefault() string {
	if c.DLQTopic != "" {
		return c.DLQTopic
	}
	return "dlq.events"
}

// DevStage returns the bridge as a `drover dev` stage: it bridges the
// embedded MQTT broker into the embedded Kafka with the default routes,
// registering missing schemas, as the bridge principal (client id
// drover-bridge-dev, which the embedded broker reserves to it), and logs a
// one-line summary every interval (0 = every 10s). Its admin server is the
// one `drover dev` gives it (/metrics, /healthz, /readyz; port 9410 unless
// taken).
func DevStage(interval time.Duration) devstage.Stage {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	// The bridge is ready once serve registered its check and the check
	// passes (connected, subscribed, Kafka reachable).
	var stageAdmin atomic.Pointer[admin.Server]
	return devstage.Stage{
		Name:      "bridge",
		AdminPort: admin.Port(DefaultAdminAddr),
		Admin:     func(a *admin.Server) { stageAdmin.Store(a) },
		Ready: func(ctx context.Context) error {
			adm := stageAdmin.Load()
			if adm == nil {
				return errors.New("bridge not started")
			}
			failed := adm.Ready(ctx)
			if len(failed) == 0 {
				if _, registered := adm.Checks()["bridge"]; !registered {
					return errors.New("bridge not started")
				}
				return nil
			}
			return fmt.Errorf("bridge not ready: %v", failed)
		},
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return fmt.Errorf("bridge: registry: %w", err)
			}
			cfg := Config{
				MQTTURL:      ep.MQTTURL,
				ClientID:     devstage.BridgePrincipal + "-dev",
				Username:     ep.MQTTUsername,
				KafkaOpts:    []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)},
				Downlink:     true,
				ShadowDeltas: true,
				Log:          log,
			}
			if ep.MQTTPasswordFile != "" {
				if cfg.Password, err = readSecret(ep.MQTTPasswordFile); err != nil {
					return fmt.Errorf("bridge: %w", err)
				}
			}
			adm := stageAdmin.Load()
			if adm == nil { // run outside drover dev (tests): metrics and checks only
				adm = admin.New("", log)
				stageAdmin.Store(adm)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						logSummary(log, adm.Registry)
					}
				}
			}()
			return serve(ctx, cfg, reg, serveOpts{autoRegister: true, registryMode: ingest.RegistryAuto}, adm, nil)
		},
	}
}

// readSecret reads a secret file (a password), without its trailing line
// break.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimRight(string(b), "\r\n")), nil
}

// logSummary logs one line: messages in, records out per topic, dead
// letters per reason.
func logSummary(log *slog.Logger, g prometheus.Gatherer) {
	mfs, err := g.Gather()
	if err != nil {
		return
	}
	var in float64
	out := map[string]float64{}
	dead := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			label := func(name string) string {
				for _, l := range m.GetLabel() {
					if l.GetName() == name {
						return l.GetValue()
					}
				}
				return ""
			}
			switch mf.GetName() {
			case "drover_bridge_messages_received_total":
				in += m.GetCounter().GetValue()
			case "drover_bridge_records_produced_total":
				out[label("topic")] += m.GetCounter().GetValue()
			case "drover_bridge_dead_letters_total":
				dead[label("reason")] += m.GetCounter().GetValue()
			}
		}
	}
	log.Info("bridge summary", "messages_in", in, "records_out", summarise(out), "dead_letters", summarise(dead))
}

func summarise(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%.0f", k, m[k])
	}
	return b.String()
}
