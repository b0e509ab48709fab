package processors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/apps"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
)

// DefaultAdminAddr is the admin address of `drover process`.
const DefaultAdminAddr = ":9471"

type flags struct {
	groups      []string
	adminAddr   string
	stateDir    string
	replication int
	saramaProd  bool
	maxRestarts int

	windows     []time.Duration
	lateness    time.Duration
	idle        time.Duration
	tableFlush  time.Duration
	featureTick time.Duration
	movingSpeed float64
	gpsMaxGap   time.Duration
	maxFuture   time.Duration

	offlineAfter time.Duration
	stateTick    time.Duration
	battery      []string
	firmware     []string

	rules           string
	alertCheck      time.Duration
	horizon         time.Duration
	alertOnReplayed bool

	apps string
}

// Command returns `drover process`.
func Command(conn *cli.Conn) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "process",
		Short: "Run the stateful processors (features, alerts, state) as goka groups",
		Long: `process runs drover's stateful stream processors as goka consumer groups:

  features  raw.sensor, raw.gps → features.events: tumbling event-time windows
            per device and metric (count, min, max, mean, stddev, first, last)
            and GPS motion (distance, speeds, moving/stationary time)
  alerts    raw.sensor, raw.gps → alerts.events: rule-driven alerts with a
            lifecycle (threshold, rate, geofence, battery, offline)
  state     raw.sensor, raw.gps, alerts.events → state.latest: the device
            shadow (last values, position, online, battery, firmware, alerts)

Group state lives in goka group tables (Kafka topics <group>-table); a
restarted or rebalanced instance recovers it from there (faster with
--state-dir). Run several instances to split the partitions.

The admin port serves /metrics, /healthz, /readyz (ready when every group
runs) and, with the state group, GET /devices/{id}.`,
		Example: `  # every group, against the embedded stack of 'drover dev'
  drover process

  # features only, with minute and hour windows
  drover process --groups features --window 1m --window 1h

  # the groups and the stream apps of a file
  drover process --apps processors/apps/example.yaml

  # a device's shadow from a running process
  curl localhost:9471/devices/cow-0042`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), conn, f)
		},
	}
	cli.ChecksConfig(cmd)
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	admin.AddFlag(fs, &f.adminAddr, DefaultAdminAddr)
	fs.StringSliceVar(&f.groups, "groups", AllGroups, "groups to run, comma separated: features, alerts, state")
	fs.StringVar(&f.stateDir, "state-dir", "", "keep group tables in LevelDB under this directory so restarts replay only the tail (empty = in memory, full restore from Kafka)")
	fs.IntVar(&f.replication, "table-replication", 1, "replication factor of the group-table and loop topics goka creates; also caps the replication of app target topics")
	fs.IntVar(&f.maxRestarts, "max-restarts", 0, "restart a failed group (e.g. after a Kafka restart) at most this often in a row before exiting (0 = always restart)")
	fs.BoolVar(&f.saramaProd, "sarama-producer", false, "produce with goka's own sarama producer instead of franz-go (slower; a fallback)")

	fs.DurationSliceVar(&f.windows, "window", []time.Duration{features.DefaultWindow}, "features: tumbling window size; repeat or comma-separate for several (e.g. 1m,1h)")
	fs.DurationVar(&f.lateness, "lateness", features.DefaultLateness, "features: how long after a window's end (device event time) late records still update it")
	fs.DurationVar(&f.idle, "idle-timeout", features.DefaultIdleTimeout, "features: wall-clock silence after which a device's due windows close")
	fs.DurationVar(&f.tableFlush, "features-table-flush", features.DefaultTableFlush, "features: write the group table behind, the latest state per device this often, committing offsets after it (negative = every change, goka's default)")
	fs.DurationVar(&f.featureTick, "features-tick", features.DefaultTickInterval, "features: how often the wall clock checks every device for idle windows")
	fs.Float64Var(&f.movingSpeed, "moving-speed", features.DefaultMovingSpeed, "features: speed (m/s) from which a GPS segment counts as moving")
	fs.DurationVar(&f.gpsMaxGap, "gps-max-gap", features.DefaultGPSMaxGap, "features: longest gap between two fixes that still counts as a motion segment")
	fs.DurationVar(&f.maxFuture, "max-future", features.DefaultMaxFuture, "features: drop records whose event time is further ahead of the wall clock")

	fs.DurationVar(&f.offlineAfter, "offline-after", state.DefaultOfflineAfter, "state: wall-clock silence after which a device is offline")
	fs.DurationVar(&f.stateTick, "state-tick", state.DefaultTickInterval, "state: how often the wall clock checks every device for silence")
	fs.StringSliceVar(&f.battery, "battery-metrics", state.DefaultBatteryMetrics, "state: metrics whose value is the battery level")
	fs.StringSliceVar(&f.firmware, "firmware-attrs", state.DefaultFirmwareAttrs, "state: record attributes that carry the firmware version")

	fs.StringVar(&f.rules, "rules", "", "alerts: YAML rule file (empty = the embedded default rules)")
	fs.DurationVar(&f.alertCheck, "alert-check-interval", alerts.DefaultCheckInterval, "alerts: how often the offline sweep runs")
	fs.DurationVar(&f.horizon, "alert-horizon", alerts.DefaultHorizon, "alerts: records older than this (event time) update state but do not fire (0 = no limit)")
	fs.BoolVar(&f.alertOnReplayed, "alert-on-replayed", false, "alerts: let replayed and old records fire alerts")
	fs.StringVar(&f.apps, "apps", "", "stream apps file (YAML, see drover apps): run each app as its own goka group app-NAME beside the groups (empty = none)")
	return cmd
}

// options turns the flags into Options, failing with a usage error that
// names the flag.
func (f flags) options() (Options, error) {
	groups, err := ParseGroups(f.groups)
	if err != nil {
		return Options{}, cli.Usagef("--groups: %w", err)
	}
	if f.maxRestarts < 0 {
		return Options{}, cli.Usagef("--max-restarts: must not be negative, got %d", f.maxRestarts)
	}
	o := Options{
		Groups:      groups,
		MaxRestarts: f.maxRestarts,
		Features: features.Config{
			Windows: f.windows, Lateness: f.lateness, ExactLateness: true, IdleTimeout: f.idle,
			TickInterval: f.featureTick, TableFlush: f.tableFlush, MovingSpeed: f.movingSpeed, GPSMaxGap: f.gpsMaxGap, MaxFuture: f.maxFuture,
		},
		State: state.Config{
			OfflineAfter: f.offlineAfter, TickInterval: f.stateTick, BatteryMetrics: f.battery, FirmwareAttrs: f.firmware,
		},
	}
	for _, check := range []struct {
		flag string
		d    time.Duration
	}{{"idle-timeout", f.idle}, {"features-tick", f.featureTick}, {"gps-max-gap", f.gpsMaxGap}, {"max-future", f.maxFuture},
		{"offline-after", f.offlineAfter}, {"state-tick", f.stateTick}, {"alert-check-interval", f.alertCheck}} {
		if check.d <= 0 {
			return Options{}, cli.Usagef("--%s: must be positive, got %s", check.flag, check.d)
		}
	}
	if f.replication < 1 {
		return Options{}, cli.Usagef("--table-replication: must be at least 1, got %d", f.replication)
	}
	if f.horizon < 0 {
		return Options{}, cli.Usagef("--alert-horizon: must not be negative, got %s", f.horizon)
	}
	var fe *features.ConfigError
	if err := o.Features.Validate(); errors.As(err, &fe) {
		return Options{}, cli.Usagef("--%s: %w", fe.Field, err)
	} else if err != nil {
		return Options{}, cli.Usagef("features: %w", err)
	}
	var se *state.ConfigError
	if err := o.State.Validate(); errors.As(err, &se) {
		return Options{}, cli.Usagef("--%s: %w", se.Field, err)
	} else if err != nil {
		return Options{}, cli.Usagef("state: %w", err)
	}
	o.AlertCheckInterval = f.alertCheck
	o.Alerts = append(o.Alerts, alerts.WithHorizon(f.horizon), alerts.AlertOnReplayed(f.alertOnReplayed))
	if f.rules != "" {
		rs, err := alerts.LoadRules(f.rules)
		if err != nil {
			return Options{}, cli.Usagef("--rules: %w", err)
		}
		o.Alerts = append(o.Alerts, alerts.WithRules(rs))
	}
	if f.apps != "" {
		as, err := apps.Load(f.apps)
		if err != nil {
			return Options{}, cli.Usagef("--apps: %w", err)
		}
		o.Apps = as
	}
	return o, nil
}

func run(ctx context.Context, conn *cli.Conn, f flags) error {
	log := conn.Logger()
	o, err := f.options()
	if err != nil {
		return err
	}
	k, err := groupkit.FromConn(conn)
	if err != nil {
		return err
	}
	k.TableReplication = f.replication
	k.StorageDir = f.stateDir
	k.SaramaProducer = f.saramaProd
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return err
	}
	o.KafkaOpts = kopts
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	if err := conn.ConfigChecked(); err != nil {
		return err
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return err
	}
	// Fail fast, naming the brokers, when Kafka is unreachable.
	cl, err := conn.Kafka()
	if err != nil {
		return err
	}
	err = conn.PingKafka(ctx, cl, 15*time.Second)
	cl.Close()
	if err != nil {
		return err
	}
	if len(o.Apps) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		o.AppsSerde, err = PrepareApps(pctx, kopts, reg, o.Apps, int16(f.replication))
		cancel()
		if err != nil {
			return err
		}
	}
	adm := admin.New(f.adminAddr, log)
	if err := adm.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	if o.Devices, err = OpenDevices(ctx, kopts, serde, log, adm.Registry); err != nil {
		return fmt.Errorf("device registry: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stop := context.WithCancel(gctx)
	g.Go(func() error { return adm.Run(runCtx) })
	if v := o.Devices; v != nil {
		g.Go(func() error { return v.Run(runCtx) })
	}
	g.Go(func() error {
		defer stop() // a failed group takes the admin server down with it
		if err := Run(runCtx, k, serde, o, adm, log); err != nil {
			return fmt.Errorf("process: %w", err)
		}
		return nil
	})
	err = g.Wait()
	stop()
	if err == nil {
		log.Info("processors stopped cleanly")
	}
	return err
}
