package hatest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func inRecovery(t *testing.T, url string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var r bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestIntegrationCluster: the read-write port reaches the leader, the
// read-only port a replica (the analysts' port), a write through
// PgBouncer is on the replica (synchronous replication), and a planned
// switchover moves both ports.
func TestIntegrationCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts etcd, two Patroni nodes, HAProxy and PgBouncer")
	}
	c := Start(t, Options{})
	if inRecovery(t, c.RWURL("postgres")) {
		t.Fatal("the read-write port reaches a replica")
	}
	if !inRecovery(t, c.ROURL("postgres")) {
		t.Fatal("the read-only port reaches the leader")
	}
	c.CreateDatabase("drover")
	b := c.Bouncer(t, "drover", 4)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b+"&default_query_exec_mode=exec")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// synchronous_commit=on waits for the standby to flush the commit, not
	// to replay it: the replica shows it moments later (CREATE DATABASE
	// included), so the read-only port is polled, not read once.
	waitFor(t, 20*time.Second, "the committed row on the read-only port", func() error {
		ro, err := pgx.Connect(ctx, c.ROURL("drover"))
		if err != nil {
			return err
		}
		defer ro.Close(ctx)
		var n int
		if err := ro.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("the replica has %d rows, want the committed one", n)
		}
		return nil
	})

	old, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	var cand *Node
	for _, n := range c.Nodes {
		if n != old {
			cand = n
		}
	}
	start := time.Now()
	if err := c.Switchover(old, cand); err != nil {
		t.Fatal(err)
	}
	if got := c.WaitLeader(old, 60*time.Second); got != cand {
		t.Fatalf("leader after switchover: %s, want %s", got.Name, cand.Name)
	}
	t.Logf("switchover %s → %s: the read-write port reached the new leader after %v", old.Name, cand.Name, time.Since(start).Round(time.Millisecond))
	c.WaitSyncStandby(old, 90*time.Second)
	if !inRecovery(t, c.ROURL("postgres")) {
		t.Fatal("after the switchover the read-only port reaches the leader")
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		// The bouncer's server connection to the old leader was cut: the
		// client retries, as the sink does.
		if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
			t.Fatalf("writing through PgBouncer after the switchover: %v", err)
		}
	}

	// kill -9 of the leader's PostgreSQL: Patroni fails over (it prefers
	// that to crash recovery: primary_start_timeout 0), HAProxy follows.
	leader, err := c.Leader()
	if err != nil {
		t.Fatal(err)
	}
	killed := c.KillPostgres(leader)
	next := c.WaitLeader(leader, 90*time.Second)
	promoted := time.Since(killed)
	var wrote time.Duration
	waitFor(t, 90*time.Second, "a write through the read-write port", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		w, err := pgx.Connect(ctx, c.RWURL("drover"))
		if err != nil {
			return err
		}
		defer w.Close(ctx)
		_, err = w.Exec(ctx, "INSERT INTO t VALUES (3)")
		wrote = time.Since(killed)
		return err
	})
	t.Logf("kill -9 of %s's PostgreSQL: %s leads behind the read-write port after %v, first write committed after %v",
		leader.Name, next.Name, promoted.Round(time.Millisecond), wrote.Round(time.Millisecond))
}
