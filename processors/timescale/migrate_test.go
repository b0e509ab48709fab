package timescale

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
)

func TestIntegrationMigrateTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url := devtest.Postgres(t)
	c := connect(t, url)
	ctx := context.Background()
	first, err := Migrate(ctx, c, ModeAuto, DefaultLayout(PathPostgres), testLog())
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	migs, _ := Migrations(DefaultLayout(first.Path))
	if len(first.Applied) != len(migs) || first.Current != migs[len(migs)-1].Version {
		t.Fatalf("first migrate applied %d (current %d), want %d", len(first.Applied), first.Current, len(migs))
	}
	second, err := Migrate(ctx, c, ModeAuto, DefaultLayout(PathPostgres), testLog())
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(second.Applied) != 0 || second.Current != first.Current || second.Path != first.Path {
		t.Fatalf("second migrate = %+v, want nothing applied at version %d", second, first.Current)
	}
	if n := count(t, c, "SELECT count(*) FROM schema_migrations"); n != int64(len(migs)) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(migs))
	}
	for _, name := range append(append([]string{}, Tables...), Views...) {
		if n := count(t, c, "SELECT count(*) FROM "+name); n != 0 {
			t.Errorf("%s has %d rows, want 0", name, n)
		}
	}
	// The path is recorded: asking for the other one is refused.
	other := ModeOn
	if first.Path == PathTimescale {
		other = ModeOff
	}
	_, err = Migrate(ctx, c, other, DefaultLayout(PathPostgres), testLog())
	if !errors.Is(err, ErrPathMismatch) {
		t.Fatalf("migrate with --timescale=%s on a %s database: err = %v, want ErrPathMismatch", other, first.Path, err)
	}
}

func TestIntegrationMigrateConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url := devtest.Postgres(t)
	const n = 4
	var wg sync.WaitGroup
	results := make([]MigrateResult, n)
	errs := make([]error, n)
	for i := range n {
		c := connect(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			results[i], errs[i] = Migrate(ctx, c, ModeAuto, DefaultLayout(PathPostgres), testLog())
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += len(results[i].Applied)
	}
	migs, _ := Migrations(DefaultLayout(results[0].Path))
	if total != len(migs) {
		t.Fatalf("%d concurrent migrations applied %d migrations in total, want %d (each once)", n, total, len(migs))
	}
	c := connect(t, url)
	if got := count(t, c, "SELECT count(*) FROM schema_migrations"); got != int64(len(migs)) {
		t.Fatalf("schema_migrations has %d rows, want %d", got, len(migs))
	}
}

func TestIntegrationAnalystCannotWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	c := connect(t, url)
	ctx := context.Background()
	// A partition the sink creates later is readable too (default privileges).
	w := testWriter(t, url, layout)
	if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{{EventID: "e", Tenant: "t", DeviceID: "d", Metric: "m", TS: at(0, 0), IngestedAt: at(0, 0)}}}); err != nil {
		t.Fatal(err)
	}
	setRole(t, c, AnalystRole)
	if !layout.Timescale {
		if n := count(t, c, "SELECT count(*) FROM "+partitionName(TableSensorReadings, at(0, 0))); n != 1 {
			t.Errorf("analyst reads %d rows from the new partition, want 1", n)
		}
	}
	for _, name := range append(append([]string{}, Tables...), Views...) {
		// count(*): of dead_letters the analyst may read all columns but
		// two (TestIntegrationRoleLogins).
		if _, err := c.Exec(ctx, "SELECT count(*) FROM "+name); err != nil {
			t.Errorf("analyst cannot read %s: %v", name, err)
		}
	}
	tests := []struct {
		name    string
		sql     string
		wantErr string
	}{
		{"insert reading", `INSERT INTO sensor_readings (ts, tenant, device_id, metric, value, ingested_at, event_id) VALUES (now(), 't', 'd', 'm', 1, now(), 'e')`, "permission denied"},
		{"update alerts", `UPDATE alerts SET state = 'resolved'`, "permission denied"},
		{"delete dead letters", `DELETE FROM dead_letters`, "permission denied"},
		{"truncate state", `TRUNCATE device_state`, "permission denied"},
		{"create table", `CREATE TABLE analyst_scratch (x int)`, "permission denied"},
		{"drop table", `DROP TABLE features`, "must be owner"},
		{"write rollup", `UPDATE gps_distance_daily SET fixes = 0`, "permission denied"},
		{"move watermark", `UPDATE rollup_watermarks SET upto = now()`, "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Exec(ctx, tc.sql)
			var pe *pgconn.PgError
			if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%s as %s: err = %v, want %q", tc.sql, AnalystRole, err, tc.wantErr)
			}
		})
	}
	setRole(t, c, WriterRole)
	if _, err := c.Exec(ctx, `INSERT INTO alerts (alert_id, rule, kind, tenant, device_id, state, severity, message, fired_at, ts, ingested_at)
		VALUES ('a', 'r', 'threshold', 't', 'd', 'firing', 'info', 'm', now(), now(), now())`); err != nil {
		t.Fatalf("writer cannot insert: %v", err)
	}
}
