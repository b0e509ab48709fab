package schedule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationScheduleCommand runs `drover schedule` with a re-drive job
// every second against kfake and the registry: runs are counted on
// /metrics, /readyz answers, and cancelling the context stops it cleanly.
func TestIntegrationScheduleCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := devtest.Kafka(t, kfake.SeedTopics(1, topics.DLQ))
	_, regURL := devtest.Registry(t)
	reg, _ := sr.NewClient(sr.URLs(regURL))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, reg, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	jobs := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(jobs, []byte("jobs:\n  - {name: redrive, schedule: '@every 1s', type: dlq-redrive, since: 1h}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(ScheduleCommand(root.Conn))
	root.Cmd.SetArgs([]string{"--dev-env", "", "--log-level", "error", "schedule", "--jobs", jobs, "--admin-addr", addr,
		"--kafka-brokers", strings.Join(c.ListenAddrs(), ","), "--schema-registry-url", regURL, "--state-dir", dir})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.Cmd.ExecuteContext(runCtx) }()

	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(get("/metrics"), `drover_schedule_runs_total{job="redrive",result="ok"}`) {
		if time.Now().After(deadline) {
			t.Fatalf("no successful run counted; /metrics:\n%s", get("/metrics"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// franz-go's client metrics of the runs (kprom), kept between runs.
	if m := get("/metrics"); !strings.Contains(m, `drover_schedule_kafka_connects_total{client="redrive"`) {
		t.Errorf("no kprom series of the job's client; /metrics:\n%s", m)
	}
	if r := get("/readyz"); !strings.HasPrefix(r, "200") {
		t.Fatalf("/readyz %s", r)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("schedule: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("schedule did not stop")
	}
}
