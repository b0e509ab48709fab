package timescale

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current DDL")

// renderAll is every statement a fresh database of path receives: the
// migrations, then the policies.
func renderAll(t *testing.T, p Path) string {
	t.Helper()
	l := DefaultLayout(p)
	migs, err := Migrations(l)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, m := range migs {
		b.WriteString("-- migration ")
		b.WriteString(filepath.Base(m.Name))
		b.WriteString("\n")
		b.WriteString(m.SQL)
		b.WriteString("\n")
	}
	b.WriteString("-- policies (applied at every migrate)\n")
	for _, q := range PolicySQL(l) {
		b.WriteString(q + ";\n")
	}
	b.WriteString("-- daily partition (plain PostgreSQL, created ahead by the sink)\n")
	for _, q := range partitionDDL(TableSensorReadings, time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)) {
		b.WriteString(q + ";\n")
	}
	return b.String()
}

func TestGoldenDDL(t *testing.T) {
	for _, p := range []Path{PathTimescale, PathPostgres} {
		t.Run(string(p), func(t *testing.T) {
			got := renderAll(t, p)
			file := filepath.Join("testdata", string(p)+".golden")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run go test ./processors/timescale -run TestGoldenDDL -update)", err)
			}
			if got != string(want) {
				t.Fatalf("DDL for %s differs from %s (rerun with -update if intended):\n%s", p, file, got)
			}
		})
	}
}

func TestDDLPaths(t *testing.T) {
	ts := renderAll(t, PathTimescale)
	pg := renderAll(t, PathPostgres)
	tests := []struct {
		name       string
		ddl        string
		want       []string
		wantAbsent []string
	}{
		{"timescale", ts,
			[]string{"create_hypertable('sensor_readings'", "timescaledb.continuous", "add_continuous_aggregate_policy('sensor_readings_hourly'",
				"add_retention_policy('sensor_readings', drop_after => INTERVAL '365 days')", "add_compression_policy('gps_fixes', compress_after => INTERVAL '7 days')",
				"add_continuous_aggregate_policy('sensor_readings_daily', start_offset => INTERVAL '364 days', end_offset => INTERVAL '1 days', schedule_interval => INTERVAL '5 minutes')",
				"timescaledb.compress_orderby = 'ts DESC, feature_id'",
				"timescaledb.compress_segmentby = 'tenant, device_id, metric'", "CREATE TABLE gps_distance_daily",
				"CREATE MATERIALIZED VIEW sensor_readings_hourly", "gps_fixes_written_brin ON gps_fixes USING brin (written_at)"},
			[]string{"PARTITION BY RANGE", "USING brin (ts)"}},
		{"postgres", pg,
			[]string{"PARTITION BY RANGE (ts)", "sensor_readings_ts_brin ON sensor_readings USING brin (ts)",
				"CREATE TABLE sensor_readings_hourly", "CREATE TABLE gps_distance_daily",
				"sensor_readings_written_brin ON sensor_readings USING brin (written_at)", "'sensor_readings', '-infinity'",
				"CREATE TABLE sensor_readings_p20261123 (LIKE sensor_readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
				"ALTER TABLE sensor_readings ATTACH PARTITION sensor_readings_p20261123 FOR VALUES FROM ('2026-11-23 00:00:00+00') TO ('2026-11-24 00:00:00+00')"},
			[]string{"create_hypertable", "timescaledb.", "time_bucket("}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				if !strings.Contains(tc.ddl, w) {
					t.Errorf("DDL lacks %q", w)
				}
			}
			for _, w := range tc.wantAbsent {
				if strings.Contains(tc.ddl, w) {
					t.Errorf("DDL contains %q", w)
				}
			}
			// Same rollup names on both paths.
			for _, v := range Views {
				if !strings.Contains(tc.ddl, "CREATE MATERIALIZED VIEW "+v) && !strings.Contains(tc.ddl, "CREATE TABLE "+v) {
					t.Errorf("DDL lacks rollup %s", v)
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Mode
		wantErr string
	}{
		{"auto", "auto", ModeAuto, ""},
		{"empty is auto", "", ModeAuto, ""},
		{"on", "ON", ModeOn, ""},
		{"true", "true", ModeOn, ""},
		{"off", "off", ModeOff, ""},
		{"bad", "maybe", "", `--timescale: unknown mode "maybe"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestChoosePath(t *testing.T) {
	none := Support{}
	availOnly := Support{Available: true}
	preloaded := Support{Available: true, Preloaded: true}
	installed := Support{Installed: true, Available: true}
	tests := []struct {
		name     string
		mode     Mode
		sup      Support
		recorded Path
		want     Path
		wantErr  string
	}{
		{"auto plain", ModeAuto, none, "", PathPostgres, ""},
		{"auto available but not preloaded", ModeAuto, availOnly, "", PathPostgres, ""},
		{"auto preloaded", ModeAuto, preloaded, "", PathTimescale, ""},
		{"auto installed", ModeAuto, installed, "", PathTimescale, ""},
		{"auto keeps recorded plain", ModeAuto, installed, PathPostgres, PathPostgres, ""},
		{"auto keeps recorded timescale", ModeAuto, none, PathTimescale, PathTimescale, ""},
		{"on without timescale", ModeOn, availOnly, "", "", "not usable"},
		{"on installed", ModeOn, installed, "", PathTimescale, ""},
		{"on over plain", ModeOn, installed, PathPostgres, "", "migrated for plain PostgreSQL"},
		{"off", ModeOff, installed, "", PathPostgres, ""},
		{"off over timescale", ModeOff, installed, PathTimescale, "", "migrated for TimescaleDB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := choosePath(tc.mode, tc.sup, tc.recorded)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("choosePath = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"batch size", func(c *Config) { c.BatchSize = -1 }, "--batch-size"},
		{"flush interval", func(c *Config) { c.FlushInterval = time.Nanosecond }, "--flush-interval"},
		{"retry", func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond }, "--retry-max"},
		{"retention", func(c *Config) { c.Layout.RetentionDays = -3 }, "--retention-days"},
		{"ahead", func(c *Config) { c.Layout.PartitionsAheadDays = 0 }, "--partitions-ahead-days"},
		{"refresh", func(c *Config) { c.Layout.RefreshInterval = time.Millisecond }, "--refresh-interval"},
		{"compress", func(c *Config) { c.Layout.CompressAfterDays = -1 }, "--compress-after-days"},
		{"retention below compression", func(c *Config) { c.Layout.Timescale = true; c.Layout.RetentionDays = 3 }, "must exceed --compress-after-days"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := DefaultLayout(PathPostgres)
			c := Config{Layout: &l}
			tc.mod(&c)
			err := c.setDefaults()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
