// Package consolecmd is the thin command layer of the console: `drover
// console`'s flags, checked and turned into a console.Config. The console
// package itself knows no flags.
package consolecmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/bridge"
	"github.com/drover-iot/drover/bridge/simulate"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/console"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/processors"
	"github.com/drover-iot/drover/processors/timescale"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Flags are `drover console`'s settings.
type Flags struct {
	Addr           string
	AdminAddr      string
	TLSCert        string
	TLSKey         string
	TokenFile      string
	DatabaseURL    string
	StageURLs      []string
	Routes         string
	Registry       string
	RedriveState   string
	Paddocks       string
	Catalogue      string
	ReplicationCap int16
	Refresh        time.Duration
}

// DefaultAdminAddr serves the console's own /metrics, /healthz and
// /readyz (its page is on --console-addr).
const DefaultAdminAddr = ":9476"

// DefaultStageURLs are the stages' default admin addresses on this host.
func DefaultStageURLs() []string {
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	return []string{
		"bridge=http://127.0.0.1:" + port(bridge.DefaultAdminAddr),
		"processors=http://127.0.0.1:" + port(processors.DefaultAdminAddr),
		"sink=http://127.0.0.1:" + port(timescale.DefaultAdminAddr),
		"media=http://127.0.0.1:" + port(backfill.DefaultMediaAdminAddr),
	}
}

// AddFlags registers the console's flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Addr, "console-addr", console.DefaultAddr, "listen address (loopback by default; 0.0.0.0:9480 for every interface)")
	admin.AddFlag(fs, &f.AdminAddr, DefaultAdminAddr)
	fs.StringVar(&f.TLSCert, "console-tls-cert", "", "PEM certificate file: serve HTTPS (with --console-tls-key)")
	fs.StringVar(&f.TLSKey, "console-tls-key", "", "PEM key file for --console-tls-cert")
	fs.StringVar(&f.TokenFile, "operator-token-file", "", "file of the operator tokens actions (re-drive) need, one per line, TOKEN or NAME TOKEN (the name goes to the action log); re-read at every action; empty = read-only console")
	fs.StringVar(&f.DatabaseURL, "console-database-url", "", "PostgreSQL URL of a read-only login (member of drover_analyst; a superuser is refused); empty = no devices and alerts pages")
	fs.StringSliceVar(&f.StageURLs, "stage-urls", DefaultStageURLs(), "stages to watch, NAME=BASE_URL of their /readyz and /metrics, comma separated")
	fs.StringVar(&f.Routes, "routes", "", "routes file re-drive uses, re-read at every re-drive (default: the bridge's embedded routes)")
	fs.StringVar(&f.RedriveState, "redrive-state-file", dlq.DefaultStateFile, "file remembering re-driven dead letters, shared with drover dlq redrive (empty = none)")
	fs.StringVar(&f.Registry, "registry", string(ingest.RegistryAuto), "re-drive's device registry check, as drover dlq redrive: enforce (a letter of an unregistered, suspended or revoked device still fails), observe, off, or auto = enforce when the registry topic exists")
	fs.StringVar(&f.Paddocks, "paddocks", "", "GeoJSON polygon file drawn under the device map (default: the simulator's paddock)")
	fs.StringVar(&f.Catalogue, "catalogue", "", "topic catalogue YAML file drift is computed against (empty = the embedded catalogue)")
	fs.Int16Var(&f.ReplicationCap, "replication-cap", 0, "cap the catalogue's replication at N before computing drift (1 on a single-broker cluster)")
	fs.DurationVar(&f.Refresh, "console-refresh", console.DefaultRefresh, "how often the pipeline page's figures are read while a page is open")
}

// Targets parses --stage-urls.
func Targets(specs []string) ([]console.Target, error) {
	var out []console.Target
	for _, s := range specs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		name, u, ok := strings.Cut(s, "=")
		pu, err := url.Parse(u)
		if !ok || name == "" || err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, cli.Usagef("--stage-urls: %q is not NAME=http://HOST:PORT", s)
		}
		out = append(out, console.StaticTarget(name, strings.TrimRight(u, "/")))
	}
	return out, nil
}

// check validates the flags that need no connection.
func (f *Flags) check() error {
	if _, err := ingest.ParseRegistryMode(f.Registry); err != nil {
		return cli.Usagef("--registry: %w", err)
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return cli.Usagef("--console-tls-cert and --console-tls-key go together")
	}
	if f.Refresh < time.Second {
		return cli.Usagef("--console-refresh: %v is below 1s", f.Refresh)
	}
	if f.ReplicationCap < 0 {
		return cli.Usagef("--replication-cap: must be ≥ 0, got %d", f.ReplicationCap)
	}
	if f.TokenFile != "" {
		if err := console.CheckTokenFile(f.TokenFile); err != nil {
			return cli.Usagef("--operator-token-file: %w", err)
		}
	}
	if f.Routes != "" {
		if _, err := routes.Load(f.Routes); err != nil {
			return cli.Usagef("--routes: %w", err)
		}
	}
	if _, _, err := net.SplitHostPort(f.Addr); err != nil {
		return cli.Usagef("--console-addr: %w", err)
	}
	return nil
}

// Config builds the console configuration from the flags; the caller sets
// the clients (Kafka, Registry, Serde, DB).
func (f *Flags) Config(version string) (console.Config, error) {
	cfg := console.Config{RegistryCheck: ingest.RegistryMode(f.Registry), RoutesFile: f.Routes, RedriveStateFile: f.RedriveState, TokenFile: f.TokenFile, Refresh: f.Refresh, Version: version}
	if err := f.check(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Stages, err = Targets(f.StageURLs); err != nil {
		return cfg, err
	}
	cat, err := topics.Default()
	if f.Catalogue != "" {
		cat, err = topics.Load(f.Catalogue)
	}
	if err != nil {
		return cfg, cli.Usagef("--catalogue: %w", err)
	}
	cfg.Catalogue = cat.WithReplicationCap(f.ReplicationCap)
	if f.Paddocks != "" {
		b, err := os.ReadFile(f.Paddocks)
		if err == nil {
			_, err = simulate.ParsePolygon(b)
		}
		if err != nil {
			return cfg, cli.Usagef("--paddocks: %w", err)
		}
		cfg.Paddocks = b
	}
	return cfg, nil
}

// Command returns `drover console`.
func Command(conn *cli.Conn, version string) *cobra.Command {
	var f Flags
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the operator console: pipeline, catalogue, dead letters, devices and alerts in one web page",
		Long: `console serves one web page over the running pipeline, every figure read live:
offsets, lag and configs from Kafka, subjects from the schema registry, devices
and alerts from the database (through --console-database-url, a read-only
login; a superuser is refused), and each stage's /readyz and /metrics
(--stage-urls).

It listens on loopback unless --console-addr says otherwise, serves HTTPS with
--console-tls-cert/--console-tls-key, and is read-only unless
--operator-token-file names a file of operator tokens (one per line, "TOKEN"
or "NAME TOKEN"): a re-drive needs one and is logged with the operator's name. drover dev runs it too and writes its URL to the env
file.`,
		Example: `  # against drover dev's stack (the env file has the URLs and the token file)
  drover console --console-addr 127.0.0.1:9481

  # production: TLS, the token and the database URL from mounted files
  drover console --console-addr 0.0.0.0:9480 --console-tls-cert /tls/tls.crt --console-tls-key /tls/tls.key \
    --operator-token-file /secrets/operator-token --console-database-url "$(cat /secrets/console-db-url)"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.Config(version)
			if err != nil {
				return err
			}
			return run(cmd.Context(), conn, f, cfg)
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	f.AddFlags(fs)
	return cmd
}

func run(ctx context.Context, conn *cli.Conn, f Flags, cfg console.Config) error {
	log := conn.Logger()
	adm := admin.New(f.AdminAddr, log)
	// franz-go's client metrics (kprom) on /metrics; the console's clients
	// are built from this one's options and count into its series.
	kc, err := conn.Kafka(adm.KafkaMetrics("console")("console"))
	if err != nil {
		return err
	}
	defer kc.Close()
	if err := conn.PingKafka(ctx, kc, 15*time.Second); err != nil {
		return err
	}
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return err
	}
	cfg.Kafka, cfg.Registry, cfg.Serde, cfg.Log = kc, reg, serde, log
	if err := adm.Listen(); err != nil {
		return cli.Usagef("--admin-addr: %w", err)
	}
	cfg.Registerer = adm.Registry
	if f.DatabaseURL != "" {
		db, err := console.OpenDB(ctx, f.DatabaseURL)
		if errors.Is(err, console.ErrSuperuser) {
			return cli.Usagef("--console-database-url: %w", err)
		}
		if err != nil {
			return fmt.Errorf("--console-database-url: %w", err)
		}
		defer db.Close()
		cfg.DB = db
	}
	srv, err := console.New(cfg)
	if err != nil {
		return err
	}
	adm.AddCheck("console", srv.Ready)
	go func() {
		if err := adm.Run(ctx); err != nil {
			log.Error("admin server", "err", err)
		}
	}()
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		return fmt.Errorf("--console-addr: %w", err)
	}
	scheme := "http"
	if f.TLSCert != "" {
		scheme = "https"
	}
	log.Info("console listening", "url", scheme+"://"+ln.Addr().String(), "admin", adm.Addr(), "read_only", f.TokenFile == "", "database", cfg.DB != nil)
	return srv.Run(ctx, ln, f.TLSCert, f.TLSKey)
}
