package timescale

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/postgres"
	"github.com/drover-iot/drover/schemas"
)

// topicBackupTests receives the evidence of every backup and restore test.
const topicBackupTests = "resilience.backup.tests"

// BackupEvidence is the payload of a backup.restore_tested record on
// resilience.backup.tests (in the envelope schema).
type BackupEvidence struct {
	Method          string    `json:"method"`
	Result          string    `json:"result"` // passed or failed
	BaseBackupAt    time.Time `json:"base_backup_at"`
	RecoveryTarget  time.Time `json:"recovery_target"`
	LastRestored    time.Time `json:"last_restored_commit"`
	RPOSeconds      float64   `json:"rpo_seconds"` // recovery target - last restored commit
	RTOSeconds      float64   `json:"rto_seconds"` // restore started - restored cluster answering, promoted
	RestoredRows    int64     `json:"restored_rows"`
	ExpectedRows    int64     `json:"expected_rows"`
	RowsAfterTarget int64     `json:"rows_after_target_restored"` // must be 0
}

// asPostgres runs a PostgreSQL client tool as the postgres OS user when
// the test runs as root (the files it writes belong to the server).
func asPostgres(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// postgresOwned creates dir owned by the postgres OS user (as root).
func postgresOwned(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIntegrationBackupRestore is the runbook's backup and point-in-time
// restore (README, "Backup and point-in-time restore"), run for real: a
// durable cluster archiving its WAL, the sink's schema and rows, a base
// backup (pg_basebackup), more rows, a recovery target, rows after it, then
// a restore of the base backup into a fresh data directory replaying the
// archive up to the target. The restored cluster must hold exactly the
// rows committed before the target. The test emits its result with RPO and
// RTO as an evidence record on resilience.backup.tests (envelope schema)
// and reads it back.
func TestIntegrationBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(filepath.Join(bin, "pg_basebackup")); err != nil {
		t.Fatalf("pg_basebackup not found in %s (apt-get install -y postgresql-15): %v", bin, err)
	}
	ctx := context.Background()
	root, err := os.MkdirTemp("", "drover-backup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	postgresOwned(t, root)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(root, "archive")
	postgresOwned(t, archive)

	src, err := postgres.Start(ctx, postgres.Options{DataDir: filepath.Join(root, "primary"), Durable: true, Logger: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Stop(context.Background()) })
	admin := connect(t, src.URL("postgres"))
	for _, q := range []string{
		"ALTER SYSTEM SET archive_mode = on",
		"ALTER SYSTEM SET archive_command = 'test ! -f " + archive + "/%f && cp %p " + archive + "/%f'",
		"ALTER SYSTEM SET wal_level = replica",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	admin.Close(ctx)
	if err := src.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := src.CreateDatabase(ctx, "drover", "template0"); err != nil {
		t.Fatal(err)
	}
	dbURL := src.URL("drover")
	c := connect(t, dbURL)
	res, err := Migrate(ctx, c, ModeAuto, DefaultLayout(PathPostgres), testLog())
	if err != nil {
		t.Fatal(err)
	}
	w := testWriter(t, dbURL, res.Layout)
	write := func(from, n int) {
		t.Helper()
		var b Batch
		for i := from; i < from+n; i++ {
			ts := at(0, 0).Add(time.Duration(i) * time.Second)
			b.Readings = append(b.Readings, schemas.SensorReading{EventID: fmt.Sprint("b", i), Tenant: "farm", DeviceID: "cow-1",
				Metric: "temperature", TS: ts, IngestedAt: ts, Value: float64(i)})
		}
		if _, err := w.Write(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 500)

	// 1. Base backup (plain format, with the WAL it needs streamed along).
	backup := filepath.Join(root, "base")
	postgresOwned(t, backup)
	u, _ := pgxConfig(t, src.URL("postgres"))
	backupAt := time.Now()
	asPostgres(t, filepath.Join(bin, "pg_basebackup"), "-h", u.Host, "-p", strconv.Itoa(int(u.Port)), "-U", u.User,
		"-D", backup, "-Fp", "-Xstream", "-c", "fast", "--no-password")

	// 2. More rows after the backup; the recovery target; rows after it.
	write(500, 300)
	var lastBefore time.Time
	if err := c.QueryRow(ctx, "SELECT max(written_at) FROM sensor_readings").Scan(&lastBefore); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	var target time.Time
	if err := c.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	write(800, 200)
	// Close the WAL segment so the archive holds everything up to now.
	var segment string
	if err := c.QueryRow(ctx, "SELECT pg_walfile_name(pg_switch_wal())").Scan(&segment); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the last WAL segment archived", func() (bool, string) {
		var lastArchived, lastFailed *string
		if err := c.QueryRow(ctx, "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").Scan(&lastArchived, &lastFailed); err != nil {
			return false, err.Error()
		}
		return lastArchived != nil && *lastArchived >= segment, fmt.Sprint("archived ", lastArchived, " failed ", lastFailed, " want ", segment)
	})
	c.Close(ctx)
	// The primary is lost.
	if err := src.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// 3. Restore into a fresh directory: the base backup, restore_command
	// from the archive, the target, promote at the target.
	restoreStart := time.Now()
	restored := filepath.Join(root, "restored")
	asPostgres(t, "cp", "-a", backup, restored)
	conf := fmt.Sprintf("\nrestore_command = 'cp %s/%%f %%p'\nrecovery_target_time = '%s'\nrecovery_target_action = 'promote'\narchive_mode = off\n",
		archive, target.UTC().Format("2006-01-02 15:04:05.000000+00"))
	f, err := os.OpenFile(filepath.Join(restored, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(restored, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		pu, _ := user.Lookup("postgres")
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		_ = os.Chown(filepath.Join(restored, "recovery.signal"), uid, gid)
	}
	dst, err := postgres.Start(ctx, postgres.Options{DataDir: restored, Durable: true, Logger: testLog(), StartTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dst.Stop(context.Background()) })
	rc := connect(t, dst.URL("drover"))
	waitFor(t, 120*time.Second, "the restored cluster promoted", func() (bool, string) {
		var rec bool
		if err := rc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return false, err.Error()
		}
		return !rec, "in recovery"
	})
	rto := time.Since(restoreStart)

	ev := BackupEvidence{Method: "pg_basebackup + WAL archive, point-in-time recovery", BaseBackupAt: backupAt.UTC(),
		RecoveryTarget: target.UTC(), ExpectedRows: 800, RTOSeconds: rto.Seconds()}
	ev.RestoredRows = count(t, rc, "SELECT count(*) FROM sensor_readings")
	ev.RowsAfterTarget = count(t, rc, "SELECT count(*) FROM sensor_readings WHERE event_id IN (SELECT 'b' || g FROM generate_series(800, 999) g)")
	if err := rc.QueryRow(ctx, "SELECT max(written_at) FROM sensor_readings").Scan(&ev.LastRestored); err != nil {
		t.Fatal(err)
	}
	ev.LastRestored = ev.LastRestored.UTC()
	ev.RPOSeconds = target.Sub(ev.LastRestored).Seconds()
	ev.Result = "passed"
	if ev.RestoredRows != ev.ExpectedRows || ev.RowsAfterTarget != 0 || !ev.LastRestored.Equal(lastBefore.UTC()) {
		ev.Result = "failed"
		t.Errorf("restored %d rows (%d after the target), last commit %v; want %d, none after, last %v",
			ev.RestoredRows, ev.RowsAfterTarget, ev.LastRestored, ev.ExpectedRows, lastBefore.UTC())
	}
	t.Logf("backup and restore: RPO %.3f s (recovery target − last restored commit), RTO %.3f s (restore started → restored cluster promoted and answering)",
		ev.RPOSeconds, ev.RTOSeconds)

	// 4. The evidence, on resilience.backup.tests in the envelope schema.
	env := newKafkaEnv(t, 1, kfake.SeedTopics(1, topicBackupTests))
	if _, err := schemas.Register(ctx, registryClient(t, env.regURL), []string{topicBackupTests}); err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	subject, actor := "database:drover", "processors/timescale TestIntegrationBackupRestore"
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := env.record(t, topicBackupTests, "database:drover", schemas.Envelope{
		EventID: fmt.Sprintf("backup-test:%s", backupAt.UTC().Format(time.RFC3339Nano)), EventType: "backup.restore_tested",
		TS: now, IngestedAt: now, Subject: &subject, Actor: &actor, Payload: string(payload),
		Attributes: map[string]string{"result": ev.Result, "rpo_seconds": strconv.FormatFloat(ev.RPOSeconds, 'f', 3, 64),
			"rto_seconds": strconv.FormatFloat(ev.RTOSeconds, 'f', 3, 64)},
	})
	env.produce(t, rec)
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.brokers...), kgo.ConsumeTopics(topicBackupTests), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fs := cl.PollFetches(fctx)
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records on %s, want 1", len(recs), topicBackupTests)
	}
	var got schemas.Envelope
	if _, err := env.serde.DecodeTopic(ctx, topicBackupTests, recs[0].Value, &got); err != nil {
		t.Fatal(err)
	}
	var back BackupEvidence
	if err := json.Unmarshal([]byte(got.Payload), &back); err != nil {
		t.Fatal(err)
	}
	if got.EventType != "backup.restore_tested" || back.Result != ev.Result || back.RPOSeconds != ev.RPOSeconds || got.Attributes["rto_seconds"] == "" {
		t.Errorf("evidence read back: %+v %+v", got, back)
	}
}

// pgxConfig parses url for its host, port and user.
func pgxConfig(t *testing.T, url string) (*pgx.ConnConfig, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, nil
}
