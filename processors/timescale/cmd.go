package timescale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// DefaultAdminAddr is where `drover sink` serves /metrics, /healthz and
// /readyz by default.
const DefaultAdminAddr = ":9466"

// flags are the settings `drover sink` and `drover sink migrate` share.
type flags struct {
	mode     string
	layout   Layout
	retryMax time.Duration
}

func (f *flags) add(fs *pflag.FlagSet) {
	d := DefaultLayout(PathPostgres)
	fs.StringVar(&f.mode, "timescale", "auto", "schema path: auto (TimescaleDB when usable), on (require it) or off (plain PostgreSQL)")
	fs.IntVar(&f.layout.RetentionDays, "retention-days", d.RetentionDays, "drop time-series data older than this many days (0 keeps everything)")
	fs.IntVar(&f.layout.AppRecordsRetentionDays, "app-records-retention-days", d.AppRecordsRetentionDays, "delete app_records rows (stream apps' outputs) older than this many days (0 = --retention-days)")
	fs.IntVar(&f.layout.CompressAfterDays, "compress-after-days", d.CompressAfterDays, "TimescaleDB: compress chunks older than this many days (0 = never)")
	fs.IntVar(&f.layout.PartitionsAheadDays, "partitions-ahead-days", d.PartitionsAheadDays, "plain PostgreSQL: daily partitions kept created ahead of today")
	fs.DurationVar(&f.layout.RefreshInterval, "refresh-interval", d.RefreshInterval, "how often the rollup views are refreshed")
}

func (f *flags) parse() (Mode, Layout, error) {
	mode, err := ParseMode(f.mode)
	if err != nil {
		return "", f.layout, cli.Usagef("%w", err)
	}
	f.layout.Schema = "public"
	if err := f.layout.validate(); err != nil {
		return "", f.layout, cli.Usagef("%w", err)
	}
	return mode, f.layout, nil
}

// Command returns `drover sink` (and `drover sink migrate`).
func Command(conn *cli.Conn) *cobra.Command {
	var (
		f         flags
		adminAddr string
		cfg       Config
		topicsCSV []string
		migrate   bool
	)
	cmd := &cobra.Command{
		Use:   "sink",
		Short: "Write every record from Kafka into TimescaleDB (or PostgreSQL), exactly once per natural key",
		Long: `sink consumes raw.sensor, raw.gps, raw.*.meta, features.events, alerts.events,
state.latest and dlq.events with a Kafka consumer group and writes them into the
database in batches: COPY into staging tables, then INSERT ... ON CONFLICT on
each table's natural key, one transaction per batch. Offsets are committed only
after the transaction commits, so a crash loses nothing and a replay writes
nothing twice.

At start it applies the schema migrations (--migrate=false to skip). With
--timescale=auto it uses hypertables, compression, retention and continuous
aggregates when TimescaleDB is usable, and daily partitions, BRIN indexes and
incrementally maintained rollup tables on plain PostgreSQL. Records that cannot be decoded land in
dead_letters with a reason. While the database is down the sink retries with
backoff and /readyz reports not ready.`,
		Example: `  # against the embedded stack of 'drover dev'
  drover sink --database-url postgres://postgres@127.0.0.1:5432/drover

  # apply the schema only
  drover sink migrate --database-url "$DROVER_DATABASE_URL"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, layout, err := f.parse()
			if err != nil {
				return err
			}
			switch {
			case cfg.BatchSize < 1:
				return cli.Usagef("--batch-size: %d, want at least 1", cfg.BatchSize)
			case cfg.FlushInterval <= 0:
				return cli.Usagef("--flush-interval: %s, want a positive duration", cfg.FlushInterval)
			case cfg.MaintenanceInterval <= 0:
				return cli.Usagef("--maintenance-interval: %s, want a positive duration", cfg.MaintenanceInterval)
			case f.retryMax <= 0:
				return cli.Usagef("--retry-max: %s, want a positive duration", f.retryMax)
			case cfg.Group == "":
				return cli.Usagef("--group: empty")
			case cfg.SessionTimeout < time.Second || cfg.SessionTimeout > 30*time.Minute:
				return cli.Usagef("--session-timeout: %s, want 1s..30m", cfg.SessionTimeout)
			case cfg.RebalanceTimeout < time.Second || cfg.RebalanceTimeout > 30*time.Minute:
				return cli.Usagef("--rebalance-timeout: %s, want 1s..30m", cfg.RebalanceTimeout)
			case cfg.StallTimeout < 0:
				return cli.Usagef("--stall-timeout: %s, want a positive duration (or 0 for the default)", cfg.StallTimeout)
			}
			cfg.Mode, cfg.Layout, cfg.Migrate, cfg.RetryMax = mode, &layout, &migrate, f.retryMax
			cfg.Topics = topicsCSV
			return runSink(cmd.Context(), conn, cfg, adminAddr)
		},
	}
	cli.ChecksConfig(cmd)
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	conn.AddDatabaseFlags(fs)
	admin.AddFlag(fs, &adminAddr, DefaultAdminAddr)
	f.add(fs)
	fs.StringVar(&cfg.Group, "group", DefaultGroup, "Kafka consumer group")
	fs.StringSliceVar(&topicsCSV, "topics", SinkTopics, "topics to consume, comma separated")
	fs.BoolVar(&cfg.AppRecords, "app-records", true, "also consume every stream app target topic (apps.*, new ones within 10s) into app_records")
	fs.IntVar(&cfg.BatchSize, "batch-size", 5000, "most records per database transaction")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", time.Second, "longest a record waits for its batch to fill")
	fs.DurationVar(&cfg.MaintenanceInterval, "maintenance-interval", 10*time.Minute, "how often partitions are created ahead and expired ones dropped")
	fs.DurationVar(&f.retryMax, "retry-max", 10*time.Second, "longest backoff between retries while the database is down")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", DefaultSessionTimeout, "how long the Kafka group coordinator keeps a sink that stopped heartbeating (e.g. killed) in the group")
	fs.DurationVar(&cfg.RebalanceTimeout, "rebalance-timeout", DefaultRebalanceTimeout, "how long a group rebalance waits for members to rejoin; a restarted sink waits at most this long for a killed one")
	fs.DurationVar(&cfg.StallTimeout, "stall-timeout", 0, "how long a batch write may wait or fail before /readyz reports the sink cannot write (0 = twice --flush-interval plus 5s)")
	fs.BoolVar(&migrate, "migrate", true, "apply the schema migrations at start")
	cmd.AddCommand(migrateCommand(conn), rollupsCommand(conn), loginCommand(conn), grantTenantCommand(conn))
	return cmd
}

func loginCommand(conn *cli.Conn) *cobra.Command {
	l := Login{ConnectionLimit: DefaultConnectionLimit, StatementTimeout: DefaultStatementTimeout, IdleInTransactionTimeout: DefaultIdleInTransactionTimeout}
	var role, passwordFile string
	cmd := &cobra.Command{
		Use:   "login NAME",
		Short: "Create (or bring in line) a read-only database login: analyst or operator, with its limits",
		Long: `login creates the database login NAME in the role drover_analyst (or, with
--role operator, drover_operator, which also reads dead letters' raw bytes and
headers), or brings an existing one in line. PostgreSQL applies a connection
limit and role settings only to the login itself, never through a group role,
so they are set here on each login: --connection-limit (no login can take the
connections the sink needs), --statement-timeout and
--idle-in-transaction-timeout (no session holds locks and old snapshots for
ever). Run it as a login with CREATEROLE (a DBA's), after 'drover sink migrate'.`,
		Example: `  drover sink login alice --password-file ./alice.pw --database-url "$DROVER_DATABASE_URL"
  drover sink login oncall --role operator --password-file /run/secrets/oncall --database-url "$DROVER_DATABASE_URL"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l.Name = args[0]
			switch role {
			case "analyst":
				l.Role = AnalystRole
			case "operator":
				l.Role = OperatorRole
			default:
				return cli.Usagef("--role: %q, want analyst or operator", role)
			}
			if passwordFile != "" {
				b, err := os.ReadFile(passwordFile)
				if err != nil {
					return cli.Usagef("--password-file: %w", err)
				}
				l.Password = strings.TrimRight(string(b), "\r\n")
			}
			if err := l.validate(); err != nil {
				return cli.Usagef("%w", err)
			}
			db, err := ParseURL(conn.DatabaseURL)
			if err != nil {
				return cli.Usagef("%w", err)
			}
			ctx := cmd.Context()
			c, err := pgx.ConnectConfig(ctx, db)
			if err != nil {
				return fmt.Errorf("connecting to the database at %s: %w", safeURL(db), err)
			}
			defer c.Close(context.WithoutCancel(ctx))
			if err := EnsureLogin(ctx, c, l); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "login %s: %s, at most %d connections, statements up to %s, idle transactions up to %s\n",
				l.Name, l.Role, l.ConnectionLimit, l.StatementTimeout, l.IdleInTransactionTimeout)
			fmt.Fprintln(cmd.OutOrStdout(), psqlHint(db, l.Name))
			return nil
		},
	}
	conn.AddDatabaseFlags(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&role, "role", "analyst", "analyst or operator (operator also reads dead letters' raw bytes and headers)")
	fs.StringVar(&passwordFile, "password-file", "", "file holding the login's password (empty keeps the current one)")
	fs.IntVar(&l.ConnectionLimit, "connection-limit", DefaultConnectionLimit, "most sessions of the login at once")
	fs.DurationVar(&l.StatementTimeout, "statement-timeout", DefaultStatementTimeout, "longest statement of the login")
	fs.DurationVar(&l.IdleInTransactionTimeout, "idle-in-transaction-timeout", DefaultIdleInTransactionTimeout, "longest a session of the login may sit idle inside a transaction")
	return cmd
}

func grantTenantCommand(conn *cli.Conn) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "grant-tenant TENANT ROLE",
		Short: "Give a database role read access to one tenant's rows only, in every table, view and rollup",
		Long: `grant-tenant creates (or brings up to date) the schema tenant_TENANT with one
security-barrier view per table, view and rollup the analysts read, each
selecting that tenant's rows (and the columns drover_analyst may read), grants
ROLE read access to those views only and sets ROLE's search_path to the
schema, so the analysts' queries run unchanged and see one tenant. ROLE must
exist and must not be a member of drover_analyst (which reads every tenant).
It works alike on plain PostgreSQL and on TimescaleDB, where continuous
aggregates cannot have row-level security. Run it as the tables' owner after
'drover sink migrate' (the schema is migrated first), and again after an
upgrade that adds a table.`,
		Example: `  psql "$DROVER_DATABASE_URL" -c "CREATE ROLE farm1_reader LOGIN PASSWORD 'change-me'"
  drover sink grant-tenant farm1 farm1_reader --database-url "$DROVER_DATABASE_URL"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := identity.ValidTenant(args[0]); err != nil {
				return cli.Usagef("TENANT: %v", err)
			}
			c, m, err := connectMigrated(cmd, conn, f)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			defer c.Close(context.WithoutCancel(ctx))
			g, err := GrantTenant(ctx, c, m.Layout.Schema, args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "role %s reads tenant %s only: %d views in schema %s (%s)\n",
				args[1], args[0], len(g.Relations), g.Schema, strings.Join(g.Relations, ", "))
			return nil
		},
	}
	conn.AddDatabaseFlags(cmd.Flags())
	f.add(cmd.Flags())
	return cmd
}

// connectMigrated connects to the --database-url and brings the schema up
// to date, for the subcommands; the caller closes the connection.
func connectMigrated(cmd *cobra.Command, conn *cli.Conn, f flags) (*pgx.Conn, MigrateResult, error) {
	mode, layout, err := f.parse()
	if err != nil {
		return nil, MigrateResult{}, err
	}
	db, err := ParseURL(conn.DatabaseURL)
	if err != nil {
		return nil, MigrateResult{}, cli.Usagef("%w", err)
	}
	ctx := cmd.Context()
	c, err := pgx.ConnectConfig(ctx, db)
	if err != nil {
		return nil, MigrateResult{}, fmt.Errorf("connecting to the database at %s: %w", safeURL(db), err)
	}
	res, err := Migrate(ctx, c, mode, layout, conn.Logger())
	if err != nil {
		c.Close(context.WithoutCancel(ctx))
		return nil, MigrateResult{}, err
	}
	return c, res, nil
}

func rollupsCommand(conn *cli.Conn) *cobra.Command {
	var f flags
	var rebuild bool
	cmd := &cobra.Command{
		Use:   "rollups",
		Short: "Bring the rollups up to date now; --rebuild recomputes them from every row",
		Long: `Merges the rows written since the last refresh into the rollup tables
(sensor_readings_hourly and _daily on plain PostgreSQL, gps_distance_daily on
both paths), as the running sink does every --refresh-interval; on TimescaleDB
it also refreshes the continuous aggregates over their policies' window (up to
a day short of --retention-days, so buckets of dropped chunks stay), waiting
for a refresh policy running at the same time. The schema is migrated first.

--rebuild replaces the rollup tables' buckets of the days retention keeps with
a merge of every raw row there (older buckets stay): use it after raw rows
were changed, or inserted by hand outside the sink.`,
		Example: `  drover sink rollups --database-url "$DROVER_DATABASE_URL"
  drover sink rollups --rebuild --database-url "$DROVER_DATABASE_URL"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, m, err := connectMigrated(cmd, conn, f)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			defer c.Close(context.WithoutCancel(ctx))
			do, verb := RefreshRollups, "refreshed"
			if rebuild {
				do, verb = RebuildRollups, "rebuilt"
			}
			res, err := do(ctx, c, m.Layout)
			if err != nil {
				return err
			}
			if res.Skipped {
				fmt.Fprintln(cmd.OutOrStdout(), "another sink is refreshing the rollups now; nothing done")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rollups %s: %d new gps fixes", verb, res.Rows[TableGPSFixes])
			if !m.Layout.Timescale {
				fmt.Fprintf(cmd.OutOrStdout(), ", %d new readings", res.Rows[TableSensorReadings])
			}
			fmt.Fprintln(cmd.OutOrStdout(), " merged")
			return nil
		},
	}
	conn.AddDatabaseFlags(cmd.Flags())
	f.add(cmd.Flags())
	cmd.Flags().BoolVar(&rebuild, "rebuild", false, "empty the rollups and recompute them from every row")
	return cmd
}

func migrateCommand(conn *cli.Conn) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the sink's database schema (safe to run twice, or from two processes at once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, res, err := connectMigrated(cmd, conn, f)
			if err != nil {
				return err
			}
			defer c.Close(context.WithoutCancel(cmd.Context()))
			fmt.Fprintf(cmd.OutOrStdout(), "schema at version %d (%s path), %d migration(s) applied\n", res.Current, res.Path, len(res.Applied))
			for _, m := range res.Applied {
				fmt.Fprintf(cmd.OutOrStdout(), "  applied %04d_%s\n", m.Version, m.Name)
			}
			for _, p := range res.Policies {
				fmt.Fprintf(cmd.OutOrStdout(), "  timescaledb policy %s\n", p)
			}
			return nil
		},
	}
	conn.AddDatabaseFlags(cmd.Flags())
	f.add(cmd.Flags())
	return cmd
}

func runSink(ctx context.Context, conn *cli.Conn, cfg Config, adminAddr string) error {
	log := conn.Logger()
	db, err := ParseURL(conn.DatabaseURL)
	if err != nil {
		return cli.Usagef("%w", err)
	}
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return err
	}
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	if err := conn.ConfigChecked(); err != nil {
		return err
	}
	srv := admin.New(adminAddr, log)
	cfg.Log, cfg.Registerer = log, srv.Registry
	return run(ctx, cfg, db, kopts, reg, srv, log)
}

// run wires the sink to its admin server and runs both until ctx ends.
func run(ctx context.Context, cfg Config, db *pgx.ConnConfig, kopts []kgo.Opt, reg *sr.Client, srv *admin.Server, log *slog.Logger) error {
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return err
	}
	if srv != nil {
		// franz-go's client metrics (kprom) on /metrics.
		kopts = append(append([]kgo.Opt(nil), kopts...), srv.KafkaMetrics("sink")("sink"))
	}
	s, err := New(cfg, db, kopts, serde)
	if err != nil {
		return cli.Usagef("%w", err)
	}
	if srv != nil {
		srv.AddCheck("sink", s.Ready)
		if err := srv.Listen(); err != nil {
			return cli.Usagef("--admin-addr: %w", err)
		}
		go func() {
			if err := srv.Run(ctx); err != nil {
				log.Error("admin server", "err", err)
			}
		}()
		log.Info("admin endpoints", "addr", srv.Addr())
	}
	log.Info("connect as the read-only analyst role",
		"create_login", "drover sink login alice --password-file FILE --database-url URL",
		"psql", psqlHint(db, "alice"))
	err = s.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// psqlHint is a psql command line reaching db as user.
func psqlHint(db *pgx.ConnConfig, user string) string {
	return fmt.Sprintf("psql 'host=%s port=%d dbname=%s user=%s'", db.Host, db.Port, db.Database, user)
}

// safeURL describes db without its password.
func safeURL(db *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", db.User, db.Host, db.Port, db.Database)
}

// DevStage is the sink as a `drover dev` stage: it migrates the embedded
// database (plain PostgreSQL unless TimescaleDB is usable) and writes
// everything the pipeline produces, with batches flushed every 500ms so
// rows appear quickly. Its metrics and /healthz, /readyz are served on the
// admin server `drover dev` gives it (port 9466 unless taken); it logs how
// to connect with psql.
func DevStage() devstage.Stage {
	var srv *admin.Server // drover dev's admin server for the stage
	return devstage.Stage{
		Name:      "sink",
		AdminPort: admin.Port(DefaultAdminAddr),
		Admin:     func(a *admin.Server) { srv = a },
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			if ep.DatabaseURL == "" {
				log.Info("no database: sink not started")
				if srv != nil {
					return srv.Run(ctx)
				}
				<-ctx.Done()
				return nil
			}
			db, err := ParseURL(ep.DatabaseURL)
			if err != nil {
				return err
			}
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return err
			}
			layout := DefaultLayout(PathPostgres)
			layout.RefreshInterval = DevRefreshInterval
			cfg := Config{FlushInterval: 500 * time.Millisecond, Layout: &layout, Log: log, Registerer: prometheus.NewRegistry(), AppRecords: true}
			if srv != nil {
				cfg.Registerer = srv.Registry
			}
			log.Info("database for analysts", "psql", fmt.Sprintf("psql '%s'", ep.DatabaseURL))
			return run(ctx, cfg, db, []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}, reg, srv, log)
		},
	}
}
