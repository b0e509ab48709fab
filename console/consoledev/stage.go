// Package consoledev runs the console as a `drover dev` stage: on a
// loopback port, over the embedded stack, with a generated operator token
// and a read-only database login of its own. It is the only console code
// that knows devstack.
package consoledev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/console"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/processors/timescale"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultPort is the console's port in drover dev (a taken port falls
// back to a free one).
const DefaultPort = 9480

// Login is the database role drover dev creates for the console: a login
// in the analysts' read-only role.
const Login = "drover_console"

// DefaultAdminPort is the port of the console's own /metrics, /healthz and
// /readyz in drover dev (as `drover console --admin-addr`).
const DefaultAdminPort = 9476

// Stage returns the console as a `drover dev` stage named "console". It
// watches every other stage through the admin URL drover dev gives it
// (Endpoints.Admin), and publishes its own metrics and readiness on its
// admin server. Flags: --console-port and --console-routes.
func Stage(version string) devstage.Stage {
	var (
		port       int
		routesFile string
		adm        *admin.Server
		mu         sync.Mutex
		env        [][2]string
		ready      error = errors.New("console not started")
	)
	set := func(e [][2]string, err error) {
		mu.Lock()
		env, ready = e, err
		mu.Unlock()
	}
	return devstage.Stage{
		Name:      "console",
		AdminPort: DefaultAdminPort,
		Admin:     func(a *admin.Server) { adm = a },
		Flags: func(fs *pflag.FlagSet) {
			fs.IntVar(&port, "console-port", DefaultPort, "console: port of the web console on 127.0.0.1 (0 = any free port)")
			fs.StringVar(&routesFile, "console-routes", "", "console: routes file its re-drive uses, re-read at every re-drive (default: the bridge's embedded routes)")
		},
		Check: func() error {
			if port < 0 || port > 65535 {
				return cli.Usagef("--console-port: %d is not a port (0-65535)", port)
			}
			if routesFile != "" {
				if _, err := routes.Load(routesFile); err != nil {
					return cli.Usagef("--console-routes: %w", err)
				}
			}
			return nil
		},
		Ready: func(context.Context) error { mu.Lock(); defer mu.Unlock(); return ready },
		Env:   func() [][2]string { mu.Lock(); defer mu.Unlock(); return env },
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			cat, err := topics.Default()
			if err != nil {
				return err
			}
			var targets []console.Target
			var urls []string
			for _, name := range slices.Sorted(maps.Keys(ep.Admin)) {
				if name != "console" {
					targets = append(targets, console.StaticTarget(name, ep.Admin[name]))
					urls = append(urls, name+"="+ep.Admin[name])
				}
			}
			// One broker: the catalogue capped as drover dev applies it.
			// The re-drive checks the registry as drover dev's bridge does
			// (--registry auto: enforce, since drover dev provisions
			// devices.registry): change both together.
			cfg := console.Config{Stages: targets, RoutesFile: routesFile, Version: version, Log: log, Catalogue: cat.WithReplicationCap(1),
				RedriveStateFile: filepath.Join(ep.DataDir, "backfill", "dlq-redriven.txt"), RegistryCheck: ingest.RegistryAuto}
			if adm == nil { // run outside drover dev (tests): a private admin server
				adm = admin.New("", log)
			}
			cfg.Registerer = adm.Registry
			return run(ctx, ep, cfg, port, adm, log, func(e [][2]string, err error) {
				set(append(e, [2]string{"DROVER_STAGE_URLS", strings.Join(urls, ",")}), err)
			})
		},
	}
}

func run(ctx context.Context, ep devstage.Endpoints, cfg console.Config, port int, adm *admin.Server, log *slog.Logger, set func([][2]string, error)) error {
	var err error
	if cfg.TokenFile, err = writeToken(filepath.Join(ep.DataDir, "console")); err != nil {
		return err
	}
	kc, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...))
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer kc.Close()
	if cfg.Registry, err = sr.NewClient(sr.URLs(ep.SchemaRegistryURL)); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if cfg.Serde, err = schemas.NewSerde(cfg.Registry); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	cfg.Kafka = kc
	var dbURL string
	if ep.DatabaseURL != "" {
		// Without a login of its own the console still serves the Kafka
		// pages; the database pages say there is no database.
		if dbURL, err = createLogin(ctx, ep.DatabaseURL); err != nil {
			log.Warn("console without database pages", "err", err)
		} else if cfg.DB, err = console.OpenDB(ctx, dbURL); err != nil {
			log.Warn("console without database pages", "err", err)
			dbURL = ""
		} else {
			defer cfg.DB.Close()
			go grantAnalyst(ctx, ep.DatabaseURL, log)
		}
	}
	srv, err := console.New(cfg)
	if err != nil {
		return err
	}
	adm.AddCheck("console", srv.Ready)
	go func() {
		if err := adm.Run(ctx); err != nil {
			log.Error("console admin server", "err", err)
		}
	}()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		log.Warn("console port taken, using another", "wanted", port, "addr", ln.Addr().String())
	}
	u := "http://" + ln.Addr().String()
	env := [][2]string{{"DROVER_CONSOLE_URL", u}, {"DROVER_OPERATOR_TOKEN_FILE", cfg.TokenFile}}
	if dbURL != "" {
		env = append(env, [2]string{"DROVER_CONSOLE_DATABASE_URL", dbURL})
	}
	set(env, nil)
	log.Info("console listening", "url", u, "operator_token_file", cfg.TokenFile)
	return srv.Run(ctx, ln, "", "")
}

// writeToken writes a fresh random operator token (readable by its owner
// only) and returns the file's path.
func writeToken(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("console: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "operator-token")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("console: %w", err)
	}
	return p, os.Chmod(p, 0o600)
}

// createLogin creates (or re-keys) the console's login and returns its
// URL: the console never uses the superuser URL it was given. The login
// joins the analysts' read-only role once the sink's migrations created it
// (grantAnalyst, in the background), so a dev stack without the sink still
// starts.
func createLogin(ctx context.Context, superURL string) (string, error) {
	conn, err := pgx.Connect(ctx, superURL)
	if err != nil {
		return "", fmt.Errorf("console: database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(b) // hex: safe inside a quoted literal
	sql := fmt.Sprintf(`DO $$ BEGIN
		IF EXISTS (SELECT FROM pg_roles WHERE rolname = '%[1]s') THEN ALTER ROLE %[1]s WITH LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '%[2]s';
		ELSE CREATE ROLE %[1]s LOGIN PASSWORD '%[2]s'; END IF; END $$`, Login, pw)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return "", fmt.Errorf("console: creating login %s: %w", Login, err)
	}
	u, err := url.Parse(superURL)
	if err != nil {
		return "", fmt.Errorf("console: database url: %w", err)
	}
	u.User = url.UserPassword(Login, pw)
	return u.String(), nil
}

// grantAnalyst makes the console's login a member of the analysts' role as
// soon as that role exists, then returns.
func grantAnalyst(ctx context.Context, superURL string, log *slog.Logger) {
	for {
		conn, err := pgx.Connect(ctx, superURL)
		if err == nil {
			var ok bool
			err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)`, timescale.AnalystRole).Scan(&ok)
			if err == nil && ok {
				_, err = conn.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", timescale.AnalystRole, Login))
			}
			conn.Close(context.WithoutCancel(ctx))
			if err == nil && ok {
				log.Info("console reads the database as a read-only login", "role", Login, "in_role", timescale.AnalystRole)
				return
			}
		}
		if err != nil {
			log.Debug("console: waiting to grant the analysts' role", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
