package timescale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// How the sink keeps a read-only role from blocking it.
//
// A role with SELECT alone can take one table lock, ACCESS SHARE (by
// reading, or with LOCK TABLE), which conflicts only with ACCESS
// EXCLUSIVE; it cannot lock rows (SELECT ... FOR SHARE needs UPDATE) or
// take any other table mode. It can take any advisory lock, though: the
// functions are granted to PUBLIC. So:
//
//   - The sink takes no advisory lock. Its locks are table locks on tables
//     the analyst has no privilege on (rollup_gate, the migration lock
//     table), or row locks.
//   - Its steady-state DDL takes no ACCESS EXCLUSIVE lock on a table
//     analysts read: partitions are attached and detached (SHARE UPDATE
//     EXCLUSIVE on the parent), not created with PARTITION OF or dropped
//     while attached.
//   - DDL that does need ACCESS EXCLUSIVE (migrations) runs with
//     lock_timeout and is retried: while it waits, later lock requests
//     (the writers') queue behind it, so it must never wait long.

// ddlLockTimeout bounds how long the sink's DDL waits for a lock, and so
// how long writers can queue behind it. Well under the default stall
// bound (2 x flush interval + 5 s).
const ddlLockTimeout = 2 * time.Second

// The rollup lock (see refreshRollups): writers hold rollup_gate in ROW
// SHARE mode for their whole write transaction (the statement rides on
// the BEGIN), a refresh holds it in EXCLUSIVE mode for an instant. Both
// need a privilege on rollup_gate (UPDATE), which only the writer role and
// the owner have.
const (
	rollupWriterLock  = "LOCK TABLE rollup_gate IN ROW SHARE MODE"
	rollupRefreshLock = "LOCK TABLE rollup_gate IN EXCLUSIVE MODE"
)

// migrationLockTable serialises migrations: a second connection holds it
// in EXCLUSIVE mode in an open transaction for as long as Migrate runs
// (the migrations themselves commit one by one on the first).
const migrationLockTable = "schema_migrations_lock"

// lockMigrations takes the migration lock on a connection of its own,
// waiting for another migrating process, and returns its release. A
// connection that breaks releases it too.
func lockMigrations(ctx context.Context, conn *pgx.Conn) (release func(), err error) {
	// The lock table must exist before it can be locked; two processes
	// creating it at once may collide in the catalogue: the loser finds it.
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+migrationLockTable+" ()")
	if err != nil && !isCode(err, "23505", "42P07") {
		return nil, fmt.Errorf("creating the migration lock table: %w", err)
	}
	holder, err := pgx.ConnectConfig(ctx, conn.Config())
	if err != nil {
		return nil, fmt.Errorf("connecting for the migration lock: %w", err)
	}
	tx, err := holder.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, "LOCK TABLE "+migrationLockTable+" IN EXCLUSIVE MODE")
	}
	if err != nil {
		_ = holder.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	return func() {
		c := context.WithoutCancel(ctx)
		_ = tx.Rollback(c)
		_ = holder.Close(c)
	}, nil
}

// retryLocked runs f until it does not fail with lock_not_available
// (SQLSTATE 55P03, a lock_timeout or NOWAIT) or ctx ends, pausing 0.5 s,
// 1 s, 2 s ... up to 15 s in between and logging each wait on log.
func retryLocked(ctx context.Context, log *slog.Logger, f func() error) error {
	wait := 500 * time.Millisecond
	for {
		err := f()
		if !isCode(err, "55P03") {
			return err
		}
		log.Warn("DDL gave way to a session holding a lock on its table (a long query or an idle transaction?); retrying",
			"lock_timeout", ddlLockTimeout.String(), "retry_in", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up waiting for a lock: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// isCode reports whether err is a PostgreSQL error with one of codes.
func isCode(err error, codes ...string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	for _, c := range codes {
		if pe.Code == c {
			return true
		}
	}
	return false
}
