package timescale

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/devstack/devtest"
)

func TestIntegrationSinkRegistryOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 3)
	dbURL := devtest.Postgres(t)
	// The sink reaches the registry through a switch that can fail every request.
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, `{"error_code":50001,"message":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		env.reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	sinkEnv := *env
	sinkEnv.regURL = srv.URL

	down.Store(true)
	readings(t, env, 0, 300)
	rs := startSink(t, &sinkEnv, dbURL, nil)
	waitFor(t, 60*time.Second, "decode retries while the registry is down", func() (bool, string) {
		return metricValue(rs.sink.m.errors.WithLabelValues("decode")) >= 2, "no decode errors yet"
	})
	if err := rs.sink.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("ready = %v while the registry is down, want a decode error", err)
	}
	if ok, _ := groupCaughtUp(t, env, DefaultGroup); ok {
		t.Fatal("offsets committed while the registry is down")
	}
	c := connect(t, dbURL)
	if n := count(t, c, "SELECT count(*) FROM dead_letters"); n != 0 {
		t.Fatalf("registry outage produced %d dead letters, want none (it is not the records' fault)", n)
	}
	down.Store(false)
	waitFor(t, 60*time.Second, "caught up after the registry returned", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, dbURL, 300)
}

func TestIntegrationSinkAdminEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 1)
	dbURL := devtest.Postgres(t)
	db, _ := ParseURL(dbURL)
	srv := admin.New("127.0.0.1:0", testLog())
	cfg := Config{FlushInterval: 50 * time.Millisecond, Log: testLog(), Registerer: srv.Registry}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	regClient := registryClient(t, env.regURL)
	go func() {
		done <- run(ctx, cfg, db, []kgo.Opt{kgo.SeedBrokers(env.brokers...)}, regClient, srv, testLog())
	}()
	get := func(path string) (int, string) {
		addr := srv.Addr()
		if addr == "" {
			return 0, "not listening"
		}
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 60*time.Second, "/readyz 200", func() (bool, string) {
		code, body := get("/readyz")
		return code == http.StatusOK, fmt.Sprint(code, body)
	})
	readings(t, env, 0, 50)
	waitFor(t, 60*time.Second, "/metrics shows 50 rows", func() (bool, string) {
		_, body := get("/metrics")
		return strings.Contains(body, `drover_sink_rows_written_total{table="sensor_readings"} 50`), "not yet"
	})
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("sink did not stop")
	}
}
