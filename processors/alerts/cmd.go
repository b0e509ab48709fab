package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/processors/groupkit"
)

// DefaultAdminAddr is where `drover alerts run` serves /metrics, /healthz
// and /readyz.
const DefaultAdminAddr = ":9468"

// Flags are the command-line settings of the alerts group, shared by
// `drover alerts run` and `drover process` (which registers them with the
// prefix "alerts-": --alerts-rules, ...). Register them, then call Options.
type Flags struct {
	RulesFile       string
	CheckInterval   time.Duration
	CatchUpDelay    time.Duration
	Horizon         time.Duration
	AlertOnReplayed bool
	DeadLetters     bool

	prefix string
}

// Register adds the flags to fs, each name prefixed with prefix.
func (f *Flags) Register(fs *pflag.FlagSet, prefix string) {
	f.prefix = prefix
	fs.StringVar(&f.RulesFile, prefix+"rules", "", "alert rules file (YAML), merged with the embedded default rules (see 'drover alerts rules --defaults')")
	fs.DurationVar(&f.CheckInterval, prefix+"check-interval", DefaultCheckInterval, "how often offline rules are checked against the wall clock (an offline alert fires within two intervals of its deadline)")
	fs.DurationVar(&f.CatchUpDelay, prefix+"catch-up-delay", DefaultCatchUpDelay, "offline checks skip a partition while the records it processes are older than this (it is catching up a backlog; 0 = never skip)")
	fs.DurationVar(&f.Horizon, prefix+"horizon", DefaultHorizon, "records with an event time older than this (against the wall clock) update state but fire no alerts (0 = no limit)")
	fs.BoolVar(&f.AlertOnReplayed, prefix+"alert-on-replayed", false, "let replayed and old records fire and resolve alerts")
	fs.BoolVar(&f.DeadLetters, prefix+"dead-letters", true, "write undecodable input records to dlq.events")
}

// Options validates the flags, loads the rules file and returns the
// options they stand for. Problems are usage errors naming the flag, and
// for the rules file the file, the rule and the field.
func (f *Flags) Options() ([]Option, error) {
	if f.CheckInterval <= 0 {
		return nil, cli.Usagef("--%scheck-interval: must be positive, got %s", f.prefix, f.CheckInterval)
	}
	if f.Horizon < 0 {
		return nil, cli.Usagef("--%shorizon: must not be negative, got %s", f.prefix, f.Horizon)
	}
	if f.CatchUpDelay < 0 {
		return nil, cli.Usagef("--%scatch-up-delay: must not be negative, got %s", f.prefix, f.CatchUpDelay)
	}
	rules := DefaultRules()
	if f.RulesFile != "" {
		var err error
		if rules, err = LoadRules(f.RulesFile); err != nil {
			return nil, cli.Usagef("--%srules: %w", f.prefix, err)
		}
	}
	return []Option{
		WithRules(rules),
		WithCheckInterval(f.CheckInterval),
		WithCatchUpDelay(f.CatchUpDelay),
		WithHorizon(f.Horizon),
		AlertOnReplayed(f.AlertOnReplayed),
		DeadLetters(f.DeadLetters),
	}, nil
}

// Command returns `drover alerts`: `run` runs the alerts group on its own
// (`drover process` runs it with the other groups), `rules` checks and
// prints rule files.
func Command(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Run the alerts processor or check alert rule files",
		Long: `The alerts processor evaluates alert rules (thresholds with a duration, rates
of change, geofences, low battery, device offline) on raw.sensor and raw.gps
and writes alert lifecycle events (firing, resolved) to alerts.events.

Rules are data: an embedded default rule set plus an optional --rules file.`,
	}
	cmd.AddCommand(runCommand(conn), rulesCommand())
	return cmd
}

func runCommand(conn *cli.Conn) *cobra.Command {
	var (
		f           Flags
		adminAddr   string
		replication int
		storageDir  string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the alerts goka group until SIGTERM",
		Long: `Run the alerts goka group (group "alerts", table alerts-table, loop topic
alerts-loop) until SIGINT or SIGTERM, then drain, commit and exit. Several
instances split the partitions of raw.sensor and raw.gps between them.

Serves /metrics, /healthz and /readyz (ready once the group table is
restored) on --admin-addr.`,
		Example: `  # defaults plus a farm's own rules
  drover alerts run --rules /etc/drover/rules.yaml

  # check offline rules every 10 s
  drover alerts run --check-interval 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.Options()
			if err != nil {
				return err
			}
			if replication < 1 {
				return cli.Usagef("--table-replication: must be at least 1, got %d", replication)
			}
			k, err := groupkit.FromConn(conn)
			if err != nil {
				return err
			}
			k.TableReplication = replication
			k.StorageDir = storageDir
			reg, err := conn.Registry()
			if err != nil {
				return err
			}
			if err := conn.ConfigChecked(); err != nil {
				return err
			}
			return serve(cmd.Context(), conn.Logger(), adminAddr, k, reg, opts)
		},
	}
	cli.ChecksConfig(cmd)
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	f.Register(fs, "")
	admin.AddFlag(fs, &adminAddr, DefaultAdminAddr)
	fs.IntVar(&replication, "table-replication", 1, "replication factor of alerts-table and alerts-loop when goka creates them")
	fs.StringVar(&storageDir, "storage-dir", "", "keep the group table's local copy in LevelDB below this directory (empty = in memory, restored from Kafka at start)")
	return cmd
}

// serve runs the processor with an admin server until ctx is done.
func serve(ctx context.Context, log *slog.Logger, adminAddr string, k groupkit.Kafka, reg *sr.Client, opts []Option) error {
	adm := admin.New(adminAddr, log)
	if err := adm.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	p, err := NewProcessor(k.Brokers, append([]Option{WithKafka(k), WithRegistry(reg), WithRegisterer(adm.Registry), WithLogger(log)}, opts...)...)
	if err != nil {
		return err
	}
	adm.AddCheck("alerts", p.Ready)
	log.Info("alerts processor starting", "brokers", strings.Join(k.Brokers, ","), "rules", p.Rules().Len(), "admin", adm.Addr())
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stop := context.WithCancel(gctx)
	g.Go(func() error { defer stop(); return p.Run(runCtx) })
	g.Go(func() error { return adm.Run(runCtx) })
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("alerts processor stopped")
	return nil
}

func rulesCommand() *cobra.Command {
	var file string
	var defaults bool
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "Validate a rules file and print the effective rules",
		Long: `Validate a rules file (merged with the embedded defaults, as the processor
does) and print the effective rules; with --defaults print the embedded
default rules file. An invalid file exits with code 2 and one line per
problem, naming the file, the rule and the field.`,
		Example: `  drover alerts rules --rules rules.yaml
  drover alerts rules --defaults > rules.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if defaults {
				_, err := out.Write(DefaultRulesYAML())
				return err
			}
			rs := DefaultRules()
			if file != "" {
				var err error
				if rs, err = LoadRules(file); err != nil {
					return cli.Usagef("--rules: %w", err)
				}
			}
			return PrintRules(out, rs)
		},
	}
	cmd.Flags().StringVar(&file, "rules", "", "rules file to check (empty = the embedded defaults)")
	cmd.Flags().BoolVar(&defaults, "defaults", false, "print the embedded default rules file")
	return cmd
}

// PrintRules writes one line per rule: name, kind, severity, scope and
// condition.
func PrintRules(w io.Writer, rs *RuleSet) error {
	for _, r := range rs.Rules() {
		var cond string
		switch r.Kind {
		case KindThreshold, KindBattery, KindRate:
			unit := ""
			if r.Kind == KindRate {
				unit = "/min"
			}
			cond = fmt.Sprintf("%s %s %s%s", r.Metric, r.Op, num(r.Threshold), unit)
			if r.For > 0 {
				cond += " for " + r.For.String()
			}
			if r.Hysteresis > 0 {
				cond += fmt.Sprintf(", resolves beyond %s", num(r.resolveLevel()))
			}
		case KindGeofence:
			cond = fmt.Sprintf("%s a %d-point polygon", r.Trigger, len(r.Polygon))
			if r.Hysteresis > 0 {
				cond += fmt.Sprintf(", resolves %s m back", num(r.Hysteresis))
			}
		case KindOffline:
			cond = "silent for " + r.After.String()
		}
		scope := "all devices"
		if len(r.Tenants) > 0 || len(r.Devices) > 0 {
			scope = fmt.Sprintf("tenants %s, devices %s", orAll(r.Tenants), orAll(r.Devices))
		}
		if _, err := fmt.Fprintf(w, "%-20s %-10s %-9s %s (%s)\n", r.Name, r.Kind, r.Severity, cond, scope); err != nil {
			return err
		}
	}
	return nil
}

func orAll(p []string) string {
	if len(p) == 0 {
		return "*"
	}
	return strings.Join(p, ",")
}

// DevStage returns the alerts stage of `drover dev`: the processor on the
// embedded stack with the default rules (plus opts).
func DevStage(opts ...Option) devstage.Stage {
	return devstage.Stage{
		Name: "alerts",
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return fmt.Errorf("alerts: schema registry %s: %w", ep.SchemaRegistryURL, err)
			}
			var brokers []string
			for _, b := range strings.Split(ep.KafkaBrokers, ",") {
				if b = strings.TrimSpace(b); b != "" {
					brokers = append(brokers, b)
				}
			}
			err = Run(ctx, brokers, append([]Option{WithRegistry(reg), WithLogger(log)}, opts...)...)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
}
