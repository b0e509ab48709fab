package doorsdev_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/doors/doorsdev"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationHTTPDevStage runs the HTTP door's `drover dev` stage on
// the embedded stack: it gets ready, hands out its URL for the env file,
// and a registered device's reading posted with Go's HTTP client lands on
// raw.sensor.
func TestIntegrationHTTPDevStage(t *testing.T) {
	ctx := context.Background()
	seed := append(append([]string{}, ingesttest.Topics...), topics.DevicesRegistry)
	s, err := devstack.Start(ctx, devstack.Config{DataDir: t.TempDir(), NoPostgres: true, KafkaOpts: []kfake.Opt{kfake.SeedTopics(1, seed...)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ep := s.Endpoints()
	cl, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.Register(ctx, cl, nil); err != nil {
		t.Fatal(err)
	}
	serde, _ := schemas.NewSerde(cl)
	kopts := []kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}
	view, err := registry.NewView(kopts, serde)
	if err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithCancel(ctx)
	defer vcancel()
	go func() { _ = view.Run(vctx) }()
	prod, _ := kgo.NewClient(kopts...)
	defer prod.Close()
	store := registry.NewStore(view, prod, serde)
	wctx, wc := context.WithTimeout(ctx, 30*time.Second)
	defer wc()
	if err := view.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.AddTenant(wctx, "farm1", ""); err != nil {
		t.Fatal(err)
	}
	added, err := store.Add(wctx, registry.NewDevice{Tenant: "farm1", ID: "cow-7"})
	if err != nil {
		t.Fatal(err)
	}

	stage := doorsdev.HTTPStage()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- stage.Run(runCtx, ep, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(60 * time.Second)
	for stage.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the stage is not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	env := stage.Env()
	if len(env) != 2 || env[0][0] != "DROVER_HTTP_URL" || !strings.HasPrefix(env[0][1], "http://127.0.0.1:") ||
		env[1][0] != "DROVER_DEV_LORAWAN_TOKEN_FILE" {
		t.Fatalf("env %v, want DROVER_HTTP_URL and DROVER_DEV_LORAWAN_TOKEN_FILE", env)
	}
	// The LoRaWAN webhooks are served with the token of that file, kept
	// private; a call without it is refused.
	if fi, err := os.Stat(env[1][1]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %s: %v (mode %v), want mode 0600", env[1][1], err, fi)
	}
	tok, _ := os.ReadFile(env[1][1])
	for tk, want := range map[string]int{"wrong-token-0123456789": http.StatusUnauthorized, strings.TrimSpace(string(tok)): http.StatusOK} {
		req, _ := http.NewRequest(http.MethodPost, env[0][1]+"/v1/lorawan/chirpstack?event=txack", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+tk)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("webhook with token %q: %d, want %d", tk, resp.StatusCode, want)
		}
	}
	body := `{"metric":"temperature","value":38.6,"ts":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `}`
	req, _ := http.NewRequest(http.MethodPost, env[0][1]+"/v1/devices/farm1/cow-7/sensor", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+added.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	c, _ := kgo.NewClient(append(kopts, kgo.ConsumeTopics(topics.RawSensor), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	defer c.Close()
	pctx, pc := context.WithTimeout(ctx, 30*time.Second)
	defer pc()
	if fs := c.PollRecords(pctx, 1); fs.NumRecords() != 1 {
		t.Fatalf("no record on raw.sensor: %v", fs.Err0())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stage returned %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stage did not stop")
	}
}
