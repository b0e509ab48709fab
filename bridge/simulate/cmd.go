package simulate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/schemas"
)

// DefaultAdminAddr is where `drover simulate` serves /metrics, /healthz and
// /readyz unless --admin-addr says otherwise.
const DefaultAdminAddr = ":9470"

// ErrPublishFailed is returned by the command when some messages were
// never acknowledged by the broker.
var ErrPublishFailed = errors.New("some messages were not acknowledged by the broker")

type flags struct {
	cfg          Config
	pasture      string
	passwordFile string
	secretsFile  string
	register     bool
	registerOnly bool
	adminAddr    string
	seed         int64
}

// Command returns `drover simulate`.
func Command(conn *cli.Conn) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Publish realistic livestock telemetry (and a chosen share of malformed messages) over MQTT",
		Long: `simulate plays a herd of collar trackers and camera traps publishing to an MQTT
broker with QoS 1, in the payload forms the bridge accepts:

  devices/{tenant}/{device}/sensor     body temperature (with fever episodes) and
                                       IMU activity as JSON, or SenML arrays
  devices/{tenant}/{device}/gps        a random walk inside the pasture polygon
  devices/{tenant}/{device}/heartbeat  battery (only ever drains), RSSI, firmware
  devices/{tenant}/{device}/media/...  an object put into S3, then its metadata
  wildfi/{device}/{type}               WildFi collars (gps, imu, env, move, ...)

Devices go silent for a while now and then. --invalid-ratio mixes in malformed
messages of every bad-input class the bridge dead-letters, each class in turn.

The rate is steady across devices (a token bucket). The run ends after
--duration or --count, or on SIGTERM/Ctrl-C; outstanding acknowledgements are
awaited, then a final summary is printed. The same --seed gives the same
traffic. Exits 1 when some messages were never acknowledged.`,
		Example: `  # 100 devices, 50 msg/s for 10 minutes, 5% malformed, against drover dev
  drover simulate --devices 100 --rate 50 --duration 10m --invalid-ratio 0.05

  # exactly 10000 messages for tenant farm7 on a real broker with TLS
  drover simulate --mqtt-url ssl://broker:8883 --mqtt-tls-ca ca.pem --tenant farm7 --count 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd, conn)
		},
	}
	conn.AddMQTTFlags(cmd.Flags())
	conn.AddS3Flags(cmd.Flags())
	conn.AddKafkaFlags(cmd.Flags())
	conn.AddRegistryFlags(cmd.Flags())
	fs := cmd.Flags()
	c := &f.cfg
	fs.IntVar(&c.Devices, "devices", DefaultDevices, "number of simulated devices")
	fs.Float64Var(&c.Rate, "rate", DefaultRate, "messages per second across all devices (steady)")
	fs.IntVar(&c.Burst, "burst", 0, "messages that may go at once to catch up after a stall (default rate/10, at least 1)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop after this long, e.g. 10m (0 = no limit)")
	fs.Int64Var(&c.Count, "count", 0, "stop after this many messages (0 = no limit)")
	fs.Float64Var(&c.InvalidRatio, "invalid-ratio", 0, "share of malformed messages, 0 to 1")
	fs.Int64Var(&f.seed, "seed", 1, "random seed: the same seed gives the same traffic")
	fs.StringVar(&c.Tenant, "tenant", DefaultTenant, "tenant of the devices (letters, digits, '.', '_', '-')")
	fs.StringVar(&c.DevicePrefix, "device-prefix", DefaultDevicePrefix, "device ids are <prefix>-0001, ... (WildFi collars wildfi-0001, ...)")
	fs.StringVar(&f.pasture, "pasture", "", "GeoJSON file with the pasture polygon (default: a built-in paddock)")
	fs.Float64Var(&c.SenMLRatio, "senml-ratio", DefaultSenMLRatio, "share of devices sending SenML arrays (0 = none)")
	fs.Float64Var(&c.WildFiRatio, "wildfi-ratio", DefaultWildFiRatio, "share of devices that are WildFi collars (0 = none)")
	fs.Float64Var(&c.MediaRatio, "media-ratio", DefaultMediaRatio, "share of messages that are media uploads (0 = none)")
	fs.Float64Var(&c.FeverRate, "fever-rate", DefaultFeverRate, "fever episodes per device per day of event time (0 = none)")
	fs.Float64Var(&c.SilenceRate, "silence-rate", DefaultSilenceRate, "silent spells per device per day (0 = none)")
	fs.Float64Var(&c.MaxSilentShare, "max-silent-share", DefaultSilentShare, "largest share of devices silent at once")
	fs.StringVar(&c.Bucket, "s3-bucket", DefaultBucket, "bucket for media objects")
	fs.BoolVar(&c.S3.CreateBucket, "s3-create-bucket", true, "create the bucket when it does not exist")
	fs.StringVar(&c.ClientID, "mqtt-client-id", "", "MQTT client id prefix (default drover-simulate-<pid>)")
	fs.StringVar(&c.MQTTUser, "mqtt-user", "", "MQTT user name")
	fs.StringVar(&f.passwordFile, "mqtt-password-file", "", "file holding the MQTT password (a mounted secret)")
	fs.StringVar(&f.secretsFile, "secrets-file", "", "CSV tenant,device_id,secret of the registered devices (drover dev writes one; DROVER_SECRETS_FILE): each device connects as itself, TENANT/DEVICE with its secret, as a broker that enforces the device registry requires")
	fs.BoolVar(&c.FollowShadow, "follow-shadow", true, "with --secrets-file, every device subscribes to devices/TENANT/DEVICE/shadow/delta and reports the desired values back (numbers as measurements of that name, firmware as the firmware attribute), so the delta clears")
	fs.BoolVar(&c.AnswerCommands, "answer-commands", true, "with --secrets-file, every device subscribes to devices/TENANT/DEVICE/commands/+ and replies to each command (\"fail\" fails, anything else succeeds)")
	fs.BoolVar(&f.registerOnly, "register-only", false, "register the herd as --register does, write --secrets-file and exit without publishing: for a broker that must know the devices before it starts (compose's Mosquitto renders its dynamic security file from the registry)")
	fs.BoolVar(&f.register, "register", false, "first register the herd in the device registry (tenant, missing devices, a new secret for every device --secrets-file lacks) and write the secrets to --secrets-file; needs Kafka and the schema registry")
	fs.StringVar(&c.TLS.CA, "mqtt-tls-ca", "", "PEM file of CAs to trust for ssl:// brokers (default system roots)")
	fs.StringVar(&c.TLS.Cert, "mqtt-tls-cert", "", "PEM client certificate for MQTT mTLS")
	fs.StringVar(&c.TLS.Key, "mqtt-tls-key", "", "PEM client key for MQTT mTLS")
	fs.IntVar(&c.Connections, "connections", 1, "MQTT connections the devices share")
	fs.IntVar(&c.InFlight, "in-flight", DefaultInFlight, "QoS 1 publishes awaiting PUBACK at once")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", DefaultConnectTimeout, "give up when the broker is not reachable within this long")
	fs.DurationVar(&c.SummaryEvery, "summary-every", DefaultSummaryEvery, "period of the one-line progress log (0 = off)")
	admin.AddFlag(fs, &f.adminAddr, DefaultAdminAddr)
	cmd.AddCommand(fixturesCommand())
	return cmd
}

// fixtureJSON is one line of `drover simulate fixtures`.
type fixtureJSON struct {
	Name        string `json:"name"`
	Topic       string `json:"topic"`
	Valid       bool   `json:"valid"`
	Class       Class  `json:"class,omitempty"`
	ExpectTopic string `json:"expect_topic"`
	Records     int    `json:"records,omitempty"`
	Size        int    `json:"size"`
	Payload     []byte `json:"payload_base64"`
}

func fixturesCommand() *cobra.Command {
	var tenant, device string
	cmd := &cobra.Command{
		Use:   "fixtures",
		Short: "Print the fixture catalogue (every payload form and bad-input class) as JSON lines",
		Long: `fixtures prints one JSON object per line for every fixture: name, MQTT topic,
whether it is valid, its class (the bridge's dead-letter reason), the Kafka
topic it must land on, how many records a valid one yields, and the payload
in base64. Event times are around now. Smoke and chaos scripts publish these
and check the outcome.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, v := range map[string]string{"tenant": tenant, "device": device} {
				if !NameRE.MatchString(v) {
					return cli.Usagef("--%s: %q: use letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit", flag, v)
				}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, f := range FixturesAt(time.Now(), tenant, device) {
				if err := enc.Encode(fixtureJSON{Name: f.Name, Topic: f.Topic, Valid: f.Valid, Class: f.Class,
					ExpectTopic: f.ExpectTopic, Records: f.Records, Size: len(f.Payload), Payload: f.Payload}); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", FixtureTenant, "tenant in the fixtures' topics")
	cmd.Flags().StringVar(&device, "device", FixtureDevice, "device id in the fixtures' topics")
	return cmd
}

func (f *flags) run(cmd *cobra.Command, conn *cli.Conn) error {
	ctx := cmd.Context()
	log := conn.Logger()
	cfg, err := f.config(cmd, conn)
	if err != nil {
		return err
	}
	if f.register || f.registerOnly {
		if f.secretsFile == "" {
			return cli.Usagef("--register needs --secrets-file (where the new secrets go)")
		}
		kopts, err := conn.KafkaOpts()
		if err != nil {
			return err
		}
		serde, err := schemas.ConnSerde(conn)
		if err != nil {
			return err
		}
		if cfg.Credentials, err = RegisterHerd(ctx, cfg, kopts, serde, f.secretsFile, log); err != nil {
			return err
		}
		if f.registerOnly {
			fmt.Fprintf(cmd.OutOrStdout(), "simulate: %d device(s) registered, secrets in %s\n", len(cfg.Credentials), f.secretsFile)
			return nil
		}
	}
	srv := admin.New(f.adminAddr, log)
	cfg.Metrics = srv.Registry
	connected := make(chan struct{})
	var once sync.Once
	cfg.OnConnect = func() { once.Do(func() { close(connected) }) }
	srv.AddCheck("mqtt", func(context.Context) error {
		select {
		case <-connected:
			return nil
		default:
			return errors.New("not connected to the MQTT broker yet")
		}
	})
	if err := srv.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopAdmin := context.WithCancel(context.WithoutCancel(gctx))
	var sum Summary
	g.Go(func() error { return srv.Run(runCtx) })
	g.Go(func() error {
		defer stopAdmin()
		// Run stops on ctx (the signal), not on the errgroup: the admin
		// server must not stop the simulator early.
		s, err := Run(ctx, cfg, log)
		sum = s
		return err
	})
	if err := g.Wait(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return &cli.UsageError{Err: err}
		}
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), "simulate: "+sum.String())
	if sum.PublishErrors > 0 {
		return fmt.Errorf("%w: %d of %d", ErrPublishFailed, sum.PublishErrors, sum.PublishErrors+sum.Total())
	}
	return nil
}

// config assembles the Config from the flags and the connection settings;
// every problem is a usage error naming the flag.
func (f *flags) config(cmd *cobra.Command, conn *cli.Conn) (Config, error) {
	c := f.cfg
	fs := cmd.Flags()
	// A flag given explicitly as 0 means "none" for the ratios and rates
	// (in Config, 0 means the default).
	for name, p := range map[string]*float64{"senml-ratio": &c.SenMLRatio, "wildfi-ratio": &c.WildFiRatio,
		"media-ratio": &c.MediaRatio, "fever-rate": &c.FeverRate, "silence-rate": &c.SilenceRate} {
		if *p < 0 {
			return Config{}, cli.Usagef("--%s: must not be negative, got %v", name, *p)
		}
		if *p == 0 {
			*p = -1
		}
	}
	if c.Devices <= 0 {
		return Config{}, cli.Usagef("--devices: must be at least 1, got %d", c.Devices)
	}
	if c.Rate <= 0 {
		return Config{}, cli.Usagef("--rate: must be a positive number of messages per second, got %v", c.Rate)
	}
	if fs.Changed("max-silent-share") && c.MaxSilentShare == 0 {
		c.SilenceRate = -1
	}
	switch {
	case c.SummaryEvery < 0:
		return Config{}, cli.Usagef("--summary-every: must not be negative, got %s", c.SummaryEvery)
	case c.SummaryEvery == 0:
		c.SummaryEvery = -1 // off
	}
	if f.seed == 0 {
		return Config{}, cli.Usagef("--seed: must not be 0")
	}
	c.Seed = uint64(f.seed)
	c.MQTTURL = conn.MQTTURL
	c.S3 = S3Config{Endpoint: conn.S3Endpoint, Region: conn.S3Region, PathStyle: conn.S3PathStyle, CreateBucket: c.S3.CreateBucket}
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return Config{}, cli.Usagef("--mqtt-password-file: %w", err)
		}
		c.MQTTPassword = strings.TrimRight(string(b), "\r\n")
	}
	if f.secretsFile != "" {
		tenant := c.Tenant
		if tenant == "" {
			tenant = DefaultTenant
		}
		creds, err := ReadSecrets(f.secretsFile, tenant)
		switch {
		case errors.Is(err, os.ErrNotExist) && (f.register || f.registerOnly):
			// --register writes it (RegisterHerd).
		case err != nil:
			return Config{}, cli.Usagef("--secrets-file: %w", err)
		default:
			c.Credentials = creds
		}
	}
	if f.pasture != "" {
		pg, err := LoadPolygon(f.pasture)
		if err != nil {
			return Config{}, cli.Usagef("--pasture: %w", err)
		}
		c.Pasture = &pg
	}
	if err := c.Validate(); err != nil {
		return Config{}, &cli.UsageError{Err: err}
	}
	return c, nil
}

// DevDevices and friends are the defaults of the simulator under `drover
// dev`: a gentle rate, a few malformed messages, and fevers often enough to
// see alerts within minutes.
const (
	DevDevices      = 20
	DevRate         = 5.0
	DevInvalidRatio = 0.02
	DevFeverRate    = 8.0
)

// DevStage returns the simulator as a `drover dev` stage ("simulator"): it
// publishes to the embedded broker and S3 at a gentle rate until dev
// stops. Fields set in cfg override the dev defaults (DevDevices, DevRate,
// DevInvalidRatio (negative = none), DevFeverRate, a summary every 30 s); MQTTURL, S3 and
// Bucket come from the stack's endpoints.
//
// The stage registers its herd in the device registry first (RegisterHerd:
// tenant demo, collar-0001 ..., secrets in <data-dir>/simulator-secrets.csv,
// which the env file names as DROVER_SECRETS_FILE) and every device connects
// as itself, so the embedded broker and the bridge, which enforce the
// registry, let it in.
func DevStage(cfg Config) devstage.Stage {
	var secretsPath atomic.Pointer[string] // set once the herd is registered
	return devstage.Stage{
		Name: "simulator",
		Ready: func(context.Context) error {
			if secretsPath.Load() == nil {
				return errors.New("registering the simulated devices")
			}
			return nil
		},
		Env: func() [][2]string {
			if p := secretsPath.Load(); p != nil {
				return [][2]string{{"DROVER_SECRETS_FILE", *p}}
			}
			return nil
		},
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			c := cfg
			if c.Devices == 0 {
				c.Devices = DevDevices
			}
			if c.Rate == 0 {
				c.Rate = DevRate
			}
			switch {
			case c.InvalidRatio == 0:
				c.InvalidRatio = DevInvalidRatio
			case c.InvalidRatio < 0:
				c.InvalidRatio = 0 // none
			}
			if c.FeverRate == 0 {
				c.FeverRate = DevFeverRate
			}
			if c.SummaryEvery == 0 {
				c.SummaryEvery = 30 * time.Second
			}
			if c.ClientID == "" {
				c.ClientID = "drover-dev-simulator"
			}
			c.MQTTURL = ep.MQTTURL
			c.S3 = S3Config{Endpoint: ep.S3Endpoint, PathStyle: true, CreateBucket: true}
			if ep.S3Bucket != "" {
				c.Bucket = ep.S3Bucket
			}
			if ep.S3Endpoint == "" {
				c.MediaRatio = -1
			}
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return err
			}
			serde, err := schemas.NewSerde(reg)
			if err != nil {
				return err
			}
			path := filepath.Join(ep.DataDir, "simulator-secrets.csv")
			kopts := []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}
			if c.Credentials, err = RegisterHerd(ctx, c, kopts, serde, path, log); err != nil {
				return fmt.Errorf("simulator: %w", err)
			}
			secretsPath.Store(&path)
			c.AnswerCommands = true // `drover command send --wait` gets an answer on drover dev
			c.FollowShadow = true   // and `drover state set` a device that follows
			_, err = Run(ctx, c, log)
			return err
		},
	}
}
