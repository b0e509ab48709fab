package timescale

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Daily partitions of the plain PostgreSQL path. Creating and dropping them
// never takes a lock a reader's ACCESS SHARE conflicts with on the parent
// (see locks.go): a long analyst query or an idle transaction cannot make
// the sink, and the writers queued behind it, wait.

// partitionState is what the catalogue says of a partition's name.
type partitionState int

const (
	partMissing  partitionState = iota // no table of that name
	partAttached                       // an attached partition
	partLeftover                       // a table of that name that retention detached (or is detaching) but has not dropped yet
)

// partitionStatus looks name up in the catalogue.
func partitionStatus(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (partitionState, error) {
	var attached, pending bool
	err := q.QueryRow(ctx, `SELECT c.relispartition, coalesce(i.inhdetachpending, false)
		FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
		WHERE c.oid = to_regclass($1)`, name).Scan(&attached, &pending)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return partMissing, nil
	case err != nil:
		return 0, fmt.Errorf("looking up partition %s: %w", name, err)
	case attached && !pending:
		return partAttached, nil
	}
	return partLeftover, nil
}

// createPartition creates table's partition for day unless it is attached
// already. A leftover of the same name (retention detached it, but an
// analyst's query kept it from being dropped) is dropped first: its rows
// were past retention. Sinks creating the same partition at once are
// serialised by the SHARE UPDATE EXCLUSIVE lock on the parent, which
// readers and writers do not conflict with; lock waits are bounded by
// ddlLockTimeout (the caller retries).
func createPartition(ctx context.Context, conn *pgx.Conn, table string, day time.Time) error {
	name := partitionName(table, day)
	st, err := partitionStatus(ctx, conn, name)
	if err != nil || st == partAttached {
		return err
	}
	if st == partLeftover {
		if err := dropPartition(ctx, conn, table, name); err != nil {
			return err
		}
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", ddlLockTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN SHARE UPDATE EXCLUSIVE MODE"); err != nil {
			return err
		}
		switch st, err := partitionStatus(ctx, tx, name); {
		case err != nil:
			return err
		case st == partAttached:
			return nil // another sink was first
		case st == partLeftover:
			return fmt.Errorf("a table named %s appeared meanwhile (retention of another sink?); retrying", name)
		}
		for _, q := range partitionDDL(table, day) {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("creating partition %s: %w", name, err)
	}
	return nil
}

// dropPartition removes partition name of table: DETACH PARTITION
// CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent; it waits for the
// queries that may still read the partition, but no writer waits for it),
// or FINALIZE of a detach that an earlier attempt left pending, then DROP
// TABLE of what is now a table of its own. Each step waits at most
// ddlLockTimeout; a step that gives way leaves the rest to the next
// maintenance run (Maintain finds leftovers by name, and a detach
// interrupted in its second phase stays pending, to be finalized).
//
// No step sets anything on the session: behind PgBouncer in transaction
// pooling mode a session setting would stay on whichever server connection
// ran it, for other clients. FINALIZE and DROP run in a transaction with
// SET LOCAL lock_timeout; DETACH ... CONCURRENTLY cannot run in one, so it
// runs on a connection of its own that is cancelled (and closed) after
// ddlLockTimeout.
func dropPartition(ctx context.Context, conn *pgx.Conn, table, name string) error {
	st, err := partitionStatus(ctx, conn, name)
	if err != nil || st == partMissing {
		return err
	}
	var pending bool
	if st == partLeftover {
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_inherits WHERE inhrelid = to_regclass($1))", name).Scan(&pending); err != nil {
			return fmt.Errorf("looking up partition %s: %w", name, err)
		}
	}
	id := pgx.Identifier{name}.Sanitize()
	fail := func(err error) error {
		return fmt.Errorf("dropping expired partition %s (the next maintenance run retries): %w", name, err)
	}
	if st == partAttached {
		if err := detachConcurrently(ctx, conn.Config(), fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY", table, id)); err != nil {
			return fail(err)
		}
	}
	var steps []string
	if pending {
		steps = append(steps, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s FINALIZE", table, id))
	}
	steps = append(steps, "DROP TABLE IF EXISTS "+id)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", ddlLockTimeout.Milliseconds())); err != nil {
			return err
		}
		for _, q := range steps {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// errGaveWay marks DDL cancelled after ddlLockTimeout, as lock_timeout
// (55P03) marks DDL run in a transaction.
var errGaveWay = errors.New("gave way")

// detachConcurrently runs q (a DETACH PARTITION ... CONCURRENTLY) on a
// connection of its own, cancelling it after ddlLockTimeout.
func detachConcurrently(ctx context.Context, cfg *pgx.ConnConfig, q string) error {
	c, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	qctx, cancel := context.WithTimeout(ctx, ddlLockTimeout)
	defer cancel()
	_, err = c.Exec(qctx, q)
	if err != nil && qctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%w after %s (a reader still uses the partition?): %w", errGaveWay, ddlLockTimeout, err)
	}
	return err
}
