package timescale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Mode is the --timescale setting: use TimescaleDB when usable (auto),
// require it (on), or never use it (off).
type Mode string

// The three modes.
const (
	ModeAuto Mode = "auto"
	ModeOn   Mode = "on"
	ModeOff  Mode = "off"
)

// ParseMode parses auto, on or off (also true/false, yes/no, 1/0).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto", "":
		return ModeAuto, nil
	case "on", "true", "yes", "1":
		return ModeOn, nil
	case "off", "false", "no", "0":
		return ModeOff, nil
	}
	return "", fmt.Errorf("--timescale: unknown mode %q (want auto, on or off)", s)
}

// ErrTimescaleUnavailable means --timescale=on but the database cannot use
// TimescaleDB: the extension is neither installed nor both available and
// preloaded.
var ErrTimescaleUnavailable = errors.New("timescaledb is not usable in this database")

// ErrPathMismatch means the database was migrated with one path and the
// sink was asked to use the other.
var ErrPathMismatch = errors.New("database schema path mismatch")

// Support reports what the database offers for TimescaleDB.
type Support struct {
	Installed bool // the extension is installed in this database
	Available bool // pg_available_extensions lists it
	Preloaded bool // shared_preload_libraries names it
}

// Usable reports whether the TimescaleDB path can be used: installed, or
// available and preloaded (CREATE EXTENSION without the preload fails and
// kills the connection, so availability alone is not enough).
func (s Support) Usable() bool { return s.Installed || (s.Available && s.Preloaded) }

// Detect reports the database's TimescaleDB support.
func Detect(ctx context.Context, conn *pgx.Conn) (Support, error) {
	var s Support
	var preload string
	var loaded bool
	// shared_preload_libraries is readable only by superusers and members
	// of pg_read_all_settings (pg_settings hides it from others, so it reads
	// as empty); a preloaded timescaledb also shows in its own settings,
	// which every role can see.
	err := conn.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
		coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ''),
		EXISTS (SELECT 1 FROM pg_settings WHERE name LIKE 'timescaledb.%')`).Scan(&s.Installed, &s.Available, &preload, &loaded)
	if err != nil {
		return s, fmt.Errorf("detecting timescaledb: %w", err)
	}
	s.Preloaded = loaded
	for _, lib := range strings.Split(preload, ",") {
		lib = strings.Trim(strings.TrimSpace(lib), `"`)
		if lib == "timescaledb" || strings.HasPrefix(lib, "timescaledb-") || strings.HasSuffix(lib, "/timescaledb") {
			s.Preloaded = true
		}
	}
	return s, nil
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Path    Path
	Layout  Layout      // the layout the schema was built with (Timescale, Schema and ExtSchema set)
	Applied []Migration // applied by this call, in order
	Current int         // highest applied version afterwards
	// Policies lists the TimescaleDB policies this call changed ("added
	// sensor_readings (policy_retention)", ...); empty when they already
	// matched the flags.
	Policies []string
}

// Migrate brings the database schema up to date: it takes the migration
// lock (so concurrent callers wait and then find nothing to do; see
// lockMigrations),
// picks the path from mode (a database already migrated keeps its recorded
// path), creates the timescaledb extension when the TimescaleDB path is
// chosen and it is not installed yet, applies each missing migration in its
// own transaction, records it in schema_migrations, and (re)applies the
// TimescaleDB policies. layout.Timescale and layout.Schema are set by
// Migrate. It is safe to run any number of times.
func Migrate(ctx context.Context, conn *pgx.Conn, mode Mode, layout Layout, log *slog.Logger) (MigrateResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res MigrateResult
	release, err := lockMigrations(ctx, conn)
	if err != nil {
		return res, err
	}
	defer release()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		path       text        NOT NULL,
		checksum   text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return res, fmt.Errorf("creating schema_migrations: %w", err)
	}
	applied := map[int]string{}
	var recorded Path
	rows, err := conn.Query(ctx, "SELECT version, path, checksum FROM schema_migrations ORDER BY version")
	if err != nil {
		return res, fmt.Errorf("reading schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		var p, sum string
		if err := rows.Scan(&v, &p, &sum); err != nil {
			rows.Close()
			return res, fmt.Errorf("reading schema_migrations: %w", err)
		}
		applied[v] = sum
		recorded = Path(p)
		res.Current = max(res.Current, v)
	}
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("reading schema_migrations: %w", err)
	}

	sup, err := Detect(ctx, conn)
	if err != nil {
		return res, err
	}
	path, err := choosePath(mode, sup, recorded)
	if err != nil {
		return res, err
	}
	res.Path = path
	layout.Timescale = path == PathTimescale
	if layout.RefreshInterval != 0 { // a zero Layout is validated by its callers' defaults
		if err := layout.validate(); err != nil {
			return res, err
		}
	}
	var schema string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return res, fmt.Errorf("reading current schema: %w", err)
	}
	layout.Schema = quoteIdent(schema)
	if layout.Timescale && !sup.Installed {
		log.Info("creating the timescaledb extension")
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS timescaledb"); err != nil {
			return res, fmt.Errorf("creating the timescaledb extension: %w", err)
		}
	}
	if layout.Timescale {
		if layout.ExtSchema, err = extensionSchema(ctx, conn); err != nil {
			return res, err
		}
	}
	res.Layout = layout

	migs, err := Migrations(layout)
	if err != nil {
		return res, err
	}
	for _, m := range migs {
		if sum, ok := applied[m.Version]; ok {
			if sum != m.Checksum && supersededChecksum(m, layout, sum) {
				// Recorded by an earlier release whose text differed only
				// as that release rendered it: record today's checksum.
				if _, err := conn.Exec(ctx, "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", m.Version, m.Checksum); err != nil {
					return res, fmt.Errorf("recording the checksum of migration %04d: %w", m.Version, err)
				}
				log.Info("migration recorded as an earlier release rendered it; its checksum is updated",
					"version", m.Version, "name", m.Name)
				continue
			}
			if sum != m.Checksum {
				log.Warn("applied migration differs from the embedded one (edited after release?)",
					"version", m.Version, "name", m.Name)
			}
			continue
		}
		start := log.With("version", m.Version, "name", m.Name, "path", string(path))
		if err := applyMigration(ctx, conn, m, path, log); err != nil {
			return res, fmt.Errorf("applying migration %04d_%s (%s path): %w", m.Version, m.Name, path, err)
		}
		start.Info("applied migration")
		res.Applied = append(res.Applied, m)
		res.Current = max(res.Current, m.Version)
	}
	if res.Policies, err = reconcilePolicies(ctx, conn, layout, log); err != nil {
		return res, err
	}
	return res, nil
}

// applyMigration applies m and records it, in one transaction. Its DDL
// waits at most ddlLockTimeout for a lock (an analyst's long query or idle
// transaction on a table it alters): writers queue behind a waiting DDL
// statement, so it gives way and the transaction is retried after a pause,
// until ctx ends.
func applyMigration(ctx context.Context, conn *pgx.Conn, m Migration, path Path, log *slog.Logger) error {
	return retryLocked(ctx, log, func() error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", ddlLockTimeout.Milliseconds())); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name, path, checksum) VALUES ($1, $2, $3, $4)",
				m.Version, m.Name, string(path), m.Checksum)
			return err
		})
	})
}

// extensionSchema returns the quoted schema the timescaledb extension is
// installed in.
func extensionSchema(ctx context.Context, conn *pgx.Conn) (string, error) {
	var ns string
	if err := conn.QueryRow(ctx, "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'timescaledb'").Scan(&ns); err != nil {
		return "", fmt.Errorf("finding the timescaledb extension's schema: %w", err)
	}
	return ns, nil // regnamespace::text is already quoted where needed
}

// choosePath picks the schema path from the mode, what the database
// supports, and the path recorded by earlier migrations ("" if none).
func choosePath(mode Mode, sup Support, recorded Path) (Path, error) {
	switch mode {
	case ModeOn:
		if recorded == PathPostgres {
			return "", fmt.Errorf("%w: --timescale=on, but the database was migrated for plain PostgreSQL (use --timescale=auto or off, or migrate a new database)", ErrPathMismatch)
		}
		if !sup.Usable() && recorded == "" {
			return "", fmt.Errorf("--timescale=on: %w (installed=%t available=%t preloaded=%t; add timescaledb to shared_preload_libraries)",
				ErrTimescaleUnavailable, sup.Installed, sup.Available, sup.Preloaded)
		}
		return PathTimescale, nil
	case ModeOff:
		if recorded == PathTimescale {
			return "", fmt.Errorf("%w: --timescale=off, but the database was migrated for TimescaleDB (use --timescale=auto or on)", ErrPathMismatch)
		}
		return PathPostgres, nil
	default:
		if recorded != "" {
			return recorded, nil
		}
		if sup.Usable() {
			return PathTimescale, nil
		}
		return PathPostgres, nil
	}
}
