package console

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSuperuser is returned by OpenDB for a role that is a database
// superuser (or may bypass row-level security): the console reads through a
// read-only role and never needs more.
var ErrSuperuser = errors.New("the console's database role must not be a superuser")

// OpenDB connects a small pool for the console: every transaction is read
// only (default_transaction_read_only), every statement is bounded
// (statement_timeout 5 s), and a role with superuser or BYPASSRLS rights is
// refused with ErrSuperuser, since a console page would then read what the
// role's grants are meant to hide.
func OpenDB(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	cfg.MaxConns = 4
	rp := cfg.ConnConfig.RuntimeParams
	rp["default_transaction_read_only"] = "on"
	rp["statement_timeout"] = "5000"
	rp["application_name"] = "drover-console"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var user string
	var super, bypass bool
	err = pool.QueryRow(cctx, `SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super, &bypass)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s@%s:%d: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if super || bypass {
		pool.Close()
		return nil, fmt.Errorf("%w: %q is one (give it a login in drover_analyst instead)", ErrSuperuser, user)
	}
	return pool, nil
}

// TableStat is a sink table's row count.
type TableStat struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
	// Exact is false when count(*) took too long and Rows is the
	// planner's estimate.
	Exact bool      `json:"exact"`
	Rate  *float64  `json:"rate"`
	Error string    `json:"error,omitempty"`
	at    time.Time // when counted (counts are cached longer than a snapshot)
}

// sinkTables are the tables the pipeline page counts.
var sinkTables = []string{"sensor_readings", "gps_fixes", "features", "media_objects", "alerts", "device_state", "dead_letters"}

// countTimeout bounds one exact count; a larger table gets the estimate.
const countTimeout = 2 * time.Second

// tableCounts counts the sink's tables (at most every 15 s, see the memo).
func (s *Server) tableCounts(ctx context.Context) ([]TableStat, error) {
	if s.cfg.DB == nil {
		return nil, nil
	}
	return s.counts.get(ctx, "", func(ctx context.Context) ([]TableStat, error) {
		out := make([]TableStat, 0, len(sinkTables))
		var errs []error
		for _, t := range sinkTables {
			ts := TableStat{Name: t, Exact: true, at: s.cfg.Now()}
			cctx, cancel := context.WithTimeout(ctx, countTimeout)
			err := s.queryRow(cctx, `SELECT count(*) FROM `+pgx.Identifier{t}.Sanitize()).Scan(&ts.Rows)
			cancel()
			if err != nil {
				ts.Exact = false
				// The estimate sums the partitions of a partitioned table.
				eerr := s.queryRow(ctx, `SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c
					WHERE c.oid = to_regclass($1) OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass($1))`, t).Scan(&ts.Rows)
				if eerr != nil {
					ts.Error = err.Error()
					errs = append(errs, fmt.Errorf("%s: %w", t, err))
				}
			}
			out = append(out, ts)
		}
		return out, errors.Join(errs...)
	})
}
