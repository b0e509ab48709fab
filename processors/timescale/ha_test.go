package timescale

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/hatest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// firstCommitAfter polls the leader (through HAProxy's read-write port)
// until a reading written after since is visible, and returns when it saw
// it: the first batch the sink committed after since.
func firstCommitAfter(t *testing.T, url string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			var seen bool
			err = c.QueryRow(ctx, "SELECT EXISTS (SELECT FROM sensor_readings WHERE written_at > $1)", since).Scan(&seen)
			_ = c.Close(ctx)
			if err == nil && seen {
				cancel()
				return time.Since(since)
			}
		}
		cancel()
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no batch committed within %v after %v (last: %v)", timeout, since.Format(time.RFC3339Nano), last)
	return 0
}

// TestIntegrationSinkFailover is the sink on the production database plane
// (hatest: etcd, two Patroni nodes with synchronous replication, HAProxy,
// PgBouncer in transaction pooling mode) under a steady load: kill -9 of
// the leader's PostgreSQL, Patroni promotes the replica, the sink
// reconnects through PgBouncer and HAProxy, retries its batch and commits
// its offsets only after the new leader committed; then a planned
// switchover back. Afterwards every record is in the database exactly
// once. It logs the time from the kill (and from the switchover request)
// to the first batch committed after it.
func TestIntegrationSinkFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts etcd, two Patroni nodes, HAProxy and PgBouncer")
	}
	c := hatest.Start(t, hatest.Options{})
	c.CreateDatabase("drover")
	bouncer := c.Bouncer(t, "drover", 6)
	env := newKafkaEnv(t, 3)
	rs := startSink(t, env, bouncer, func(cfg *Config) {
		l := DefaultLayout(PathPostgres)
		l.RefreshInterval = time.Second
		cfg.Layout, cfg.MaintenanceInterval = &l, time.Second
		cfg.BatchSize, cfg.FlushInterval = 200, 50*time.Millisecond
		cfg.RetryMax = 500 * time.Millisecond
	})
	waitReady(t, rs)

	// A steady 400 records/s: 4 every 10 ms, each its own key.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var produced atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var recs []*kgo.Record
			for j := range 4 {
				n := i*4 + j
				dev := fmt.Sprintf("cow-%d", n%20)
				ts := base.Add(time.Duration(n) * time.Millisecond)
				recs = append(recs, env.record(t, topics.RawSensor, dev, schemas.SensorReading{
					EventID: fmt.Sprint("e", n), Tenant: "farm", DeviceID: dev, Metric: "temperature",
					TS: ts, IngestedAt: ts, Value: float64(n % 100)}))
			}
			if err := env.producer.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			produced.Add(int64(len(recs)))
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopLoad()

	kills := 1
	if v := os.Getenv("DROVER_FAILOVER_KILLS"); v != "" {
		if kills, _ = strconv.Atoi(v); kills < 1 {
			t.Fatalf("DROVER_FAILOVER_KILLS: %q is not a positive integer", v)
		}
	}
	var old, leader *hatest.Node
	for k := range kills {
		time.Sleep(3 * time.Second)
		var err error
		if old, err = c.Leader(); err != nil {
			t.Fatal(err)
		}
		killed := c.KillPostgres(old)
		took := firstCommitAfter(t, c.RWURL("drover"), killed, 120*time.Second)
		leader = c.WaitLeader(old, 60*time.Second)
		t.Logf("failover %d of %d: kill -9 of %s's PostgreSQL → first batch committed on the new leader %s: %v", k+1, kills, old.Name, leader.Name, took.Round(time.Millisecond))
		c.WaitSyncStandby(old, 120*time.Second)
	}
	time.Sleep(2 * time.Second)
	asked := time.Now()
	if err := c.Switchover(leader, old); err != nil {
		t.Fatal(err)
	}
	took := firstCommitAfter(t, c.RWURL("drover"), asked, 120*time.Second)
	c.WaitLeader(leader, 60*time.Second)
	t.Logf("switchover %s → %s requested → first batch committed after it: %v", leader.Name, old.Name, took.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	stopLoad()

	want := produced.Load()
	direct := c.RWURL("drover")
	waitFor(t, 120*time.Second, "every record in the database and the offsets committed", func() (bool, string) {
		conn := connect(t, direct)
		defer conn.Close(context.Background())
		n := count(t, conn, "SELECT count(*) FROM sensor_readings")
		if n != want {
			return false, fmt.Sprintf("%d rows of %d", n, want)
		}
		return groupCaughtUp(t, env, DefaultGroup)
	})
	conn := connect(t, direct)
	if n := count(t, conn, "SELECT count(DISTINCT event_id) FROM sensor_readings"); n != want {
		t.Errorf("%d distinct records, want %d", n, want)
	}
	if n := count(t, conn, "SELECT count(*) FROM dead_letters"); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	t.Logf("%d records through a failover and a switchover: each in the database once", want)
}
