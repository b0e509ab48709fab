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
// ddlLockTimeout for a lock; a step that times out leaves the rest to the
// next maintenance run (Maintain finds leftovers by name).
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
	var steps []string
	switch {
	case st == partAttached:
		steps = append(steps, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY", table, id))
	case pending:
		steps = append(steps, fmt.Sprintf("ALTER TABLE %s DETACH PARTITION %s FINALIZE", table, id))
	}
	steps = append(steps, "DROP TABLE IF EXISTS "+id)
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = '%dms'", ddlLockTimeout.Milliseconds())); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "RESET lock_timeout") }()
	for _, q := range steps {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("dropping expired partition %s (the next maintenance run retries): %w", name, err)
		}
	}
	return nil
}
