package timescale

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

func TestCommandBadFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no database", []string{}, "--database-url: empty"},
		{"bad mode", []string{"--database-url", "postgres://x@127.0.0.1/db", "--timescale", "sometimes"}, `--timescale: unknown mode "sometimes"`},
		{"bad url", []string{"--database-url", "postgres://x@127.0.0.1:notaport/db"}, "--database-url"},
		{"batch size", []string{"--database-url", "postgres://x@127.0.0.1/db", "--batch-size", "0"}, "--batch-size"},
		{"retention", []string{"--database-url", "postgres://x@127.0.0.1/db", "--retention-days", "-1"}, "--retention-days"},
		{"ahead", []string{"--database-url", "postgres://x@127.0.0.1/db", "--partitions-ahead-days", "0"}, "--partitions-ahead-days"},
		{"refresh", []string{"--database-url", "postgres://x@127.0.0.1/db", "--refresh-interval", "1ms"}, "--refresh-interval"},
		{"migrate bad mode", []string{"migrate", "--database-url", "postgres://x@127.0.0.1/db", "--timescale", "x"}, "--timescale"},
		{"migrate no database", []string{"migrate"}, "--database-url: empty"},
		{"flush interval", []string{"--database-url", "postgres://x@127.0.0.1/db", "--flush-interval", "0s"}, "--flush-interval"},
		{"unknown topic", []string{"--database-url", "postgres://x@127.0.0.1/db", "--topics", "raw.sensor,commands.devices"}, `--topics: "commands.devices" is not a topic the sink writes`},
		{"empty group", []string{"--database-url", "postgres://x@127.0.0.1/db", "--group", ""}, "--group: empty"},
		{"session timeout", []string{"--database-url", "postgres://x@127.0.0.1/db", "--session-timeout", "500ms"}, "--session-timeout"},
		{"rebalance timeout", []string{"--database-url", "postgres://x@127.0.0.1/db", "--rebalance-timeout", "0s"}, "--rebalance-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := &cli.Conn{Log: testLog()}
			cmd := Command(conn)
			args := tc.args
			if len(args) == 0 || args[0] != "migrate" {
				args = append(args, "--admin-addr", "")
			}
			cmd.SetArgs(args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			var ue *cli.UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v (usage error: %t), want a usage error containing %q", err, errors.As(err, &ue), tc.wantErr)
			}
		})
	}
}

func TestIntegrationMigrateCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url := devtest.Postgres(t)
	for i, want := range []string{"migration(s) applied\n  applied 0001_roles", "0 migration(s) applied"} {
		cmd := Command(&cli.Conn{Log: testLog()})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"migrate", "--database-url", url})
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("run %d printed %q, want %q", i, out.String(), want)
		}
	}
}

func TestIntegrationDevStage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 1)
	dbURL := devtest.Postgres(t)
	ep := devstack.Endpoints{KafkaBrokers: strings.Join(env.brokers, ","), SchemaRegistryURL: env.regURL, DatabaseURL: dbURL}
	stage := DevStage()
	if stage.Name != "sink" {
		t.Fatalf("stage name %q", stage.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, ep, testLog()) }()
	readings(t, env, 0, 100)
	c := connect(t, dbURL)
	waitFor(t, 60*time.Second, "100 rows through the dev stage", func() (bool, string) {
		var n int64
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM sensor_readings").Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 100, fmt.Sprint(n)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev stage stopped with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev stage did not stop")
	}
}

func TestIntegrationSinkRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 6)
	dbURL := devtest.Postgres(t)
	a := startSink(t, env, dbURL, func(c *Config) { c.BatchSize = 200 })
	waitReady(t, a)
	readings(t, env, 0, 5000)
	// A second member joins mid-stream; partitions move between them.
	b := startSink(t, env, dbURL, func(c *Config) { c.BatchSize = 200; c.Migrate = ptr(false) })
	readings(t, env, 5000, 5000)
	waitFor(t, 90*time.Second, "both members caught up", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	// The first leaves; the second takes everything over.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	readings(t, env, 10000, 2000)
	waitFor(t, 90*time.Second, "second member caught up alone", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dbURL, 12000)
}
