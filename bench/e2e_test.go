package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

// envInt reads a positive integer from the environment variable name.
func envInt(tb testing.TB, name string, def int, allowZero bool) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || (n == 0 && !allowZero) {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// envDuration reads a duration ("50ms") from the environment variable name.
func envDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		tb.Fatalf("%s=%q: want a positive duration such as 50ms", name, s)
	}
	return d
}

// e2eConfig is the benchmark's configuration, from DROVER_BENCH_E2E_*.
type e2eConfig struct {
	rate, seconds, baselineSeconds, warmupSeconds int
	search                                        bool
	step, maxRate, stepSeconds                    int
	opts                                          Options
}

func loadE2EConfig(tb testing.TB) e2eConfig {
	c := e2eConfig{
		rate:            envInt(tb, "DROVER_BENCH_E2E_RATE", 10_000, false),
		seconds:         envInt(tb, "DROVER_BENCH_E2E_SECONDS", 60, false),
		baselineSeconds: envInt(tb, "DROVER_BENCH_E2E_BASELINE_SECONDS", 20, true),
		warmupSeconds:   envInt(tb, "DROVER_BENCH_E2E_WARMUP_SECONDS", 3, true),
		search:          envInt(tb, "DROVER_BENCH_E2E_SEARCH", 1, true) != 0,
		step:            envInt(tb, "DROVER_BENCH_E2E_STEP", 5_000, false),
		maxRate:         envInt(tb, "DROVER_BENCH_E2E_MAX_RATE", 100_000, false),
		stepSeconds:     envInt(tb, "DROVER_BENCH_E2E_STEP_SECONDS", 20, false),
	}
	c.opts = Options{
		Devices:       envInt(tb, "DROVER_BENCH_E2E_DEVICES", 1000, false),
		BatchSize:     envInt(tb, "DROVER_BENCH_E2E_BATCH_SIZE", 1000, false),
		FlushInterval: envDuration(tb, "DROVER_BENCH_E2E_FLUSH_INTERVAL", 50*time.Millisecond),
		Log:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		StackLog:      devtest.Logger(),
	}
	return c
}

// say prints a line for the report (stdout) and the benchmark log.
func say(b *testing.B, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	b.Log(line)
	fmt.Println("e2e: " + line)
}

// BenchmarkEndToEnd measures MQTT publish → row visible in sensor_readings
// through the real bridge and sink on the embedded stack, at a steady
// DROVER_BENCH_E2E_RATE msg/s (default 10000) for DROVER_BENCH_E2E_SECONDS
// (default 60), after a short warm-up; then the same for the bare baseline
// (DROVER_BENCH_E2E_BASELINE_SECONDS, default 20; 0 skips it); then, unless
// DROVER_BENCH_E2E_SEARCH=0, the maximum sustainable rate, stepping by
// DROVER_BENCH_E2E_STEP (5000) up to DROVER_BENCH_E2E_MAX_RATE (100000),
// DROVER_BENCH_E2E_STEP_SECONDS (20) per step. The sink runs with
// DROVER_BENCH_E2E_BATCH_SIZE (1000) and DROVER_BENCH_E2E_FLUSH_INTERVAL
// (50ms). Run it with -benchtime 1x: one iteration is one whole
// measurement.
func BenchmarkEndToEnd(b *testing.B) {
	cfg := loadE2EConfig(b)
	ctx := context.Background()
	for range b.N {
		env, err := Start(ctx, cfg.opts)
		if err != nil {
			b.Fatal(err)
		}
		say(b, "sink settings: %s (bridge: the drover dev stage's defaults); %d devices, %d publisher connections, %d QoS 1 publishes in flight",
			env.SinkSettings(), env.opts.Devices, env.opts.Connections, env.opts.InFlight)
		if cfg.warmupSeconds > 0 {
			if _, err := env.Run(ctx, Drover, cfg.rate, time.Duration(cfg.warmupSeconds)*time.Second); err != nil {
				env.Close()
				b.Fatal(err)
			}
		}
		res, err := env.Run(ctx, Drover, cfg.rate, time.Duration(cfg.seconds)*time.Second)
		if err != nil {
			env.Close()
			b.Fatal(err)
		}
		say(b, "%s", res)
		say(b, "per hop (from publish): %s", res.HopString())
		say(b, "p99 of each tenth of the run: %s", res.TenthsString())
		b.ReportMetric(ms64(res.P50), "e2e_p50_ms")
		b.ReportMetric(ms64(res.P95), "e2e_p95_ms")
		b.ReportMetric(ms64(res.P99), "e2e_p99_ms")
		b.ReportMetric(ms64(res.Max), "e2e_max_ms")
		b.ReportMetric(res.Achieved, "achieved_msg/s")
		b.ReportMetric(float64(res.Sent-res.Observed), "missing_rows")
		b.ReportMetric(float64(res.BrokerDropped), "broker_dropped")
		b.ReportMetric(float64(res.CPUPerMsg)/1e3, "cpu_µs/msg")
		for _, h := range res.Hops {
			if h.Name == "readable in raw.sensor (observer)" {
				b.ReportMetric(ms64(h.P99), "kafka_p99_ms")
			}
		}

		if cfg.baselineSeconds > 0 {
			if cfg.warmupSeconds > 0 {
				if _, err := env.Run(ctx, Bare, cfg.rate, time.Duration(cfg.warmupSeconds)*time.Second); err != nil {
					env.Close()
					b.Fatal(err)
				}
			}
			bare, err := env.Run(ctx, Bare, cfg.rate, time.Duration(cfg.baselineSeconds)*time.Second)
			if err != nil {
				env.Close()
				b.Fatal(err)
			}
			say(b, "baseline: %s", bare)
			say(b, "baseline per hop (from publish): %s", bare.HopString())
			b.ReportMetric(ms64(bare.P50), "bare_p50_ms")
			b.ReportMetric(ms64(bare.P99), "bare_p99_ms")
			b.ReportMetric(float64(bare.CPUPerMsg)/1e3, "bare_cpu_µs/msg")
			if bare.P99 > 0 {
				b.ReportMetric(float64(res.P99)/float64(bare.P99), "p99_ratio")
			}
		}
		if cfg.search {
			best, steps, err := env.Search(ctx, cfg.rate, res, cfg.step, cfg.maxRate, time.Duration(cfg.stepSeconds)*time.Second)
			for _, st := range steps {
				say(b, "search step: %s", st)
			}
			if err != nil {
				env.Close()
				b.Fatal(err)
			}
			say(b, "maximum sustainable rate: %d msg/s (sustainable = publisher within %.0f%% of the rate and never %s behind, every row visible within %s, p99 and the last fifth's p99 below %s; steps of %d msg/s for %ds, ceiling %d)",
				best, SustainRate*100, ms(SustainSlip), env.opts.DrainTimeout, ms(SustainP99), cfg.step, cfg.stepSeconds, cfg.maxRate)
			b.ReportMetric(float64(best), "max_sustainable_msg/s")
		}
		p := env.Probes()
		if len(p) > 0 {
			say(b, "measurement error: NOTIFY delivery to the listener p50 %s p99 %s max %s over %d probes",
				ms(Percentile(p, 0.5)), ms(Percentile(p, 0.99)), ms(p[len(p)-1]), len(p))
			b.ReportMetric(ms64(Percentile(p, 0.99)), "notify_p99_ms")
		}
		if err := env.Err(); err != nil {
			env.Close()
			b.Fatal(err)
		}
		env.Close()
	}
}

func ms64(d time.Duration) float64 { return float64(d) / 1e6 }

// TestEndToEndSmoke runs the benchmark's code path small: 200 messages
// through the drover pipeline and 200 through the baseline; every row must
// be observed with a positive latency, and the hops must be in order.
func TestEndToEndSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts the embedded stack")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := Start(ctx, Options{Devices: 50, Connections: 2, InFlight: 8, DrainTimeout: 60 * time.Second, StackLog: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	for _, p := range []Pipeline{Drover, Bare} {
		res, err := env.Run(ctx, p, 200, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		t.Log(res.HopString())
		if res.Sent != 200 || res.Observed != 200 || res.PublishErrors != 0 || res.BrokerDropped != 0 {
			t.Fatalf("%s: sent %d, observed %d, publish errors %d, broker dropped %d; want 200, 200, 0, 0",
				p, res.Sent, res.Observed, res.PublishErrors, res.BrokerDropped)
		}
		if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
			t.Fatalf("%s: latencies p50 %s p99 %s max %s: want 0 < p50 ≤ p99 ≤ max", p, res.P50, res.P99, res.Max)
		}
		if res.CPUPerMsg <= 0 {
			t.Errorf("%s: process CPU per message %s, want positive", p, res.CPUPerMsg)
		}
		if res.Achieved <= 0 {
			t.Fatalf("%s: achieved rate %f", p, res.Achieved)
		}
		want := 3
		if p == Drover {
			want = 5
		}
		if len(res.Hops) != want {
			t.Fatalf("%s: %d hops measured, want %d: %s", p, len(res.Hops), want, res.HopString())
		}
		for _, h := range res.Hops {
			if h.N != 200 {
				t.Errorf("%s: hop %q has %d samples, want 200", p, h.Name, h.N)
			}
		}
		last := res.Hops[len(res.Hops)-1]
		if last.P99 != res.P99 {
			t.Errorf("%s: last hop p99 %s differs from the end-to-end p99 %s", p, last.P99, res.P99)
		}
	}
	if len(env.Probes()) == 0 {
		t.Error("no NOTIFY probe reached the listener")
	}
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
}
