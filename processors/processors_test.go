package processors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestParseGroups(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
		err  string
	}{
		{name: "all", in: []string{"features,alerts,state"}, want: "features,alerts,state"},
		{name: "repeated flag and spaces", in: []string{"state", " Features ", "state"}, want: "state,features"},
		{name: "unknown", in: []string{"features,bogus"}, err: `unknown group "bogus"`},
		{name: "empty", in: []string{""}, err: "none given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseGroups(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrUnknownGroup) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestCommandBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		err  string
	}{
		{name: "unknown group", args: []string{"--groups", "features,nope"}, err: "--groups: unknown group \"nope\""},
		{name: "tiny window", args: []string{"--window", "10ms"}, err: "--window: invalid features config: window 10ms"},
		{name: "duplicate window", args: []string{"--window", "1m,60s"}, err: "--window:"},
		{name: "negative lateness", args: []string{"--lateness", "-1s"}, err: "--lateness:"},
		{name: "zero idle", args: []string{"--idle-timeout", "0s"}, err: "--idle-timeout: must be positive"},
		{name: "table flush too long", args: []string{"--features-table-flush", "2m"}, err: "features-table-flush 2m0s: must be at most 1m"},
		{name: "negative max restarts", args: []string{"--max-restarts", "-1"}, err: "--max-restarts: must not be negative"},
		{name: "bad moving speed", args: []string{"--moving-speed", "-1"}, err: "--moving-speed:"},
		{name: "zero offline", args: []string{"--offline-after", "0s"}, err: "--offline-after: must be positive"},
		{name: "zero replication", args: []string{"--table-replication", "0"}, err: "--table-replication"},
		{name: "missing rules file", args: []string{"--rules", "/nonexistent/rules.yaml"}, err: "--rules:"},
		{name: "no brokers", args: []string{"--kafka-brokers", " "}, err: "--kafka-brokers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := Command(&cli.Conn{})
			cmd.SetArgs(tc.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if cli.ExitCode(err) != 2 {
				t.Fatalf("exit code %d, want 2 (usage)", cli.ExitCode(err))
			}
		})
	}
}

// TestIntegrationProcess runs every group in one process on the embedded
// Kafka: readiness, features and state out, /devices/{id}, /metrics, and a
// clean stop.
func TestIntegrationProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t, kfake.SeedTopics(4, topics.RawSensor, topics.RawGPS, topics.Features, topics.StateLatest, topics.DLQ))
	brokers := kc.ListenAddrs()
	// Every client says who it is in ApiVersions: the processors must
	// run on franz-go only (no sarama consumer, producer or admin; with
	// groupkit.Kafka.SaramaConsumer this sees "sarama").
	var (
		softMu   sync.Mutex
		software = map[string]int{}
	)
	kc.ControlKey(int16(kmsg.ApiVersions), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if r, ok := req.(*kmsg.ApiVersionsRequest); ok {
			softMu.Lock()
			software[r.ClientSoftwareName]++
			softMu.Unlock()
		}
		return nil, nil, false
	})
	_, url := devtest.Registry(t)
	serde, _ := devtest.Schemas(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createRelayInputs(t, ctx, cl)

	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	adm := startAdmin(t, runCtx)
	done := make(chan error, 1)
	t0 := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	go func() {
		done <- Run(runCtx, groupkit.NewKafka(brokers), serde, Options{
			Features:  features.Config{TickInterval: 200 * time.Millisecond},
			KafkaOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)},
		}, adm, devtest.Logger())
	}()
	base := "http://" + adm.Addr()
	waitHTTP(t, base+"/readyz", 200, `"ready":true`)

	for i := 0; i < 3; i++ {
		ts := t0.Add(time.Duration(i) * 40 * time.Second)
		r := &schemas.SensorReading{EventID: fmt.Sprint(i), Tenant: "farm", DeviceID: "cow-1", TS: ts, IngestedAt: time.Now(),
			Metric: "temperature", Value: 38 + float64(i), Source: "t", Attrs: map[string]string{}}
		b, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-1"), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitHTTP(t, base+"/devices/cow-1", 200, `"temperature":40`)
	waitHTTP(t, base+"/metrics", 200, `drover_features_emitted_total{reason="watermark"} 1`)
	waitHTTP(t, base+"/metrics", 200, `drover_state_records_total{topic="raw.sensor"} 3`)
	// franz-go's metrics of every client of every group (kprom).
	for _, c := range []string{"features-consumer", "features-tables", "features-producer", "state-consumer", "state-producer", "alerts-consumer", "alerts-producer"} {
		waitHTTP(t, base+"/metrics", 200, `drover_process_kafka_buffered_fetch_records_total{client="`+c+`"}`)
	}
	waitHTTP(t, base+"/metrics", 200, `drover_process_kafka_read_bytes_total{client="features-consumer"`)

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of cancellation")
	}
	softMu.Lock()
	defer softMu.Unlock()
	if software["sarama"] > 0 || software["kgo"] == 0 {
		t.Fatalf("clients by ApiVersions software name: %v; want kgo only", software)
	}
}

// waitHTTP polls url until it answers status with a body containing want.
func waitHTTP(t *testing.T, url string, status int, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
			if resp.StatusCode == status && strings.Contains(string(b), want) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: want %d containing %q; last answer %.500s", url, status, want, last)
}

// TestIntegrationProcessCommand runs `drover process --groups
// features,state` through cobra against the embedded Kafka and stops it
// by cancelling its context, as SIGTERM does.
func TestIntegrationProcessCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t, kfake.SeedTopics(2, topics.RawSensor, topics.RawGPS, topics.Features, topics.StateLatest, topics.Alerts, topics.Commands))
	_, url := devtest.Registry(t)
	devtest.Schemas(t, url)
	addr := freeAddr(t)
	cmd := Command(&cli.Conn{Log: devtest.Logger()})
	cmd.SetArgs([]string{"--groups", "features,state", "--kafka-brokers", strings.Join(kc.ListenAddrs(), ","),
		"--schema-registry-url", url, "--admin-addr", addr})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(runCtx) }()
	waitHTTP(t, "http://"+addr+"/readyz", 200, `"ready":true`)
	waitHTTP(t, "http://"+addr+"/devices/nobody", 404, `device not found`)
	waitHTTP(t, "http://"+addr+"/healthz", 200, "ok")
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("process: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("process did not stop within 60s")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestIntegrationDevStage runs the stage as `drover dev` does and checks a
// reading reaches state.latest, then stops it.
func TestIntegrationDevStage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	kc := devtest.Kafka(t, kfake.SeedTopics(2, topics.RawSensor, topics.RawGPS, topics.Features, topics.StateLatest, topics.Alerts, topics.DLQ, topics.Commands))
	_, url := devtest.Registry(t)
	serde, _ := devtest.Schemas(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stage := DevStage(Options{}, "")
	if stage.Name != "processors" {
		t.Fatalf("stage name %q", stage.Name)
	}
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(runCtx, devstack.Endpoints{KafkaBrokers: strings.Join(kc.ListenAddrs(), ","), SchemaRegistryURL: url}, devtest.Logger())
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now()
	b, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: "e", Tenant: "farm", DeviceID: "cow-1", TS: now, IngestedAt: now,
		Metric: "temperature", Value: 38.2, Source: "t", Attrs: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-1"), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		ds, err := state.Lookup(ctx, []kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}, serde, "cow-1")
		if err == nil && ds.Metrics["temperature"] == 38.2 && ds.Online {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no state for cow-1: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stage: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("stage did not stop within 60s")
	}
}
