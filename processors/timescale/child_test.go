package timescale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/devstack/postgres"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// envChild, when set, makes the test binary run the sink as a child process
// (see TestIntegrationSinkKill9) instead of the tests. The value is
// "dbURL|brokers|registryURL|batchSize".
const envChild = "DROVER_TIMESCALE_TEST_CHILD"

// childMain runs a sink until SIGTERM (or until it is killed).
func childMain() int {
	parts := strings.Split(os.Getenv(envChild), "|")
	if len(parts) != 4 {
		fmt.Fprintln(os.Stderr, "child: bad", envChild)
		return 2
	}
	batch, _ := strconv.Atoi(parts[3])
	db, err := ParseURL(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	reg, err := sr.NewClient(sr.URLs(parts[2]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := Config{BatchSize: batch, FlushInterval: 20 * time.Millisecond, Log: devtest.Logger(), RetryMin: 50 * time.Millisecond, RetryMax: time.Second}
	if err := run(ctx, cfg, db, []kgo.Opt{kgo.SeedBrokers(strings.Split(parts[1], ",")...), kgo.SessionTimeout(6 * time.Second), kgo.HeartbeatInterval(500 * time.Millisecond)}, reg, nil, cfg.Log); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startChild runs the sink in a child process.
func startChild(t *testing.T, env *kafkaEnv, dbURL string, batch int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+strings.Join([]string{dbURL, strings.Join(env.brokers, ","), env.regURL, strconv.Itoa(batch)}, "|"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// readings produces n sensor readings for 20 devices, starting at index from.
func readings(t testing.TB, env *kafkaEnv, from, n int) {
	t.Helper()
	const chunk = 5000
	for lo := from; lo < from+n; lo += chunk {
		var recs []*kgo.Record
		for i := lo; i < min(lo+chunk, from+n); i++ {
			dev := fmt.Sprintf("cow-%d", i%20)
			recs = append(recs, env.record(t, topics.RawSensor, dev, schemas.SensorReading{
				EventID: strconv.Itoa(i), Tenant: "farm", DeviceID: dev, TS: day0.Add(time.Duration(i) * time.Second),
				IngestedAt: day0, Metric: "temperature", Value: float64(i), Source: "test"}))
		}
		env.produce(t, recs...)
	}
}

// checkExactlyOnce checks that sensor_readings holds exactly the readings
// 0..n-1, each once.
func checkExactlyOnce(t *testing.T, dbURL string, n int) {
	t.Helper()
	c := connect(t, dbURL)
	var rows, distinct, lo, hi int64
	if err := c.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT event_id), min(event_id::bigint), max(event_id::bigint) FROM sensor_readings`).Scan(&rows, &distinct, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if rows != int64(n) || distinct != int64(n) || lo != 0 || hi != int64(n-1) {
		t.Fatalf("sensor_readings: %d rows, %d distinct event ids in [%d, %d]; want exactly %d (0..%d)", rows, distinct, lo, hi, n, n-1)
	}
}

func TestIntegrationSinkKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 3)
	dbURL := devtest.Postgres(t)
	const n = 30000
	readings(t, env, 0, n)
	c := connect(t, dbURL)
	rowCount := func() int64 {
		var v int64
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM sensor_readings").Scan(&v); err != nil {
			return -1
		}
		return v
	}
	for round := 1; round <= 2; round++ {
		child := startChild(t, env, dbURL, 1000)
		// Kill it hard once it is part-way through.
		target := int64(n * round / 4)
		waitFor(t, 90*time.Second, fmt.Sprintf("more than %d rows before kill %d", target, round), func() (bool, string) {
			got := rowCount()
			return got > target, strconv.FormatInt(got, 10)
		})
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = child.Wait()
		t.Logf("kill -9 #%d at %d rows", round, rowCount())
	}
	child := startChild(t, env, dbURL, 1000)
	waitFor(t, 120*time.Second, "all rows and offsets committed after restart", func() (bool, string) {
		if got := rowCount(); got != n {
			return false, fmt.Sprintf("%d rows", got)
		}
		return groupCaughtUp(t, env, DefaultGroup)
	})
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("sink child after SIGTERM: %v", err)
	}
	checkExactlyOnce(t, dbURL, n)
}

func TestIntegrationSinkDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	// A dedicated cluster: restarting the shared one would disturb other tests.
	ctx := context.Background()
	cluster, err := postgres.Start(ctx, postgres.Options{DataDir: t.TempDir(), Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	if err := cluster.CreateDatabase(ctx, "drover", ""); err != nil {
		t.Fatal(err)
	}
	dbURL := cluster.URL("drover")
	env := newKafkaEnv(t, 3)
	rs := startSink(t, env, dbURL, nil)
	waitReady(t, rs)

	readings(t, env, 0, 2000)
	waitFor(t, 60*time.Second, "first 2000 rows", func() (bool, string) {
		ok, state := groupCaughtUp(t, env, DefaultGroup)
		return ok, state
	})
	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	readings(t, env, 2000, 3000)
	waitFor(t, 60*time.Second, "not ready while the database is down", func() (bool, string) {
		err := rs.sink.Ready(ctx)
		return err != nil, "ready"
	})
	// Nothing of the second part may be committed while the database is down.
	if ok, _ := groupCaughtUp(t, env, DefaultGroup); ok {
		t.Fatal("offsets committed although the database is down")
	}
	if err := cluster.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "caught up and ready after the restart", func() (bool, string) {
		if err := rs.sink.Ready(ctx); err != nil {
			return false, err.Error()
		}
		return groupCaughtUp(t, env, DefaultGroup)
	})
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dbURL, 5000)
}
