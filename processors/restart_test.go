package processors

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationProcessRidesThroughKafkaRestart restarts the embedded
// Kafka (same port and data directory) under running groups: Run must not
// fail, and records produced after the restart must reach the device state.
func TestIntegrationProcessRidesThroughKafkaRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	st := devtest.Stack(t)
	ep := st.Endpoints()
	brokers := strings.Split(ep.KafkaBrokers, ",")
	reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := devstack.Provision(ctx, ep, devtest.Logger()); err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	adm := startAdmin(t, runCtx)
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, groupkit.NewKafka(brokers), serde, Options{
			Features:  features.Config{TickInterval: 200 * time.Millisecond},
			KafkaOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)},
		}, adm, devtest.Logger())
	}()
	base := "http://" + adm.Addr()
	waitHTTP(t, base+"/readyz", 200, `"ready":true`)
	produce := func(dev string, v float64) {
		t.Helper()
		now := time.Now()
		b, err := serde.Encode(ctx, topics.RawSensor, &schemas.SensorReading{EventID: fmt.Sprint(dev, v), Tenant: "farm", DeviceID: dev, TS: now, IngestedAt: now,
			Metric: "temperature", Value: v, Source: "t", Attrs: map[string]string{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte(dev), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("cow-1", 38.5)
	waitHTTP(t, base+"/devices/cow-1", 200, `"temperature":38.5`)

	if err := st.RestartKafka(ctx); err != nil {
		t.Fatal(err)
	}
	t.Log("kafka restarted")
	select {
	case err := <-done:
		t.Fatalf("Run returned after the Kafka restart: %v", err)
	case <-time.After(3 * time.Second):
	}
	produce("cow-2", 39.25)
	waitHTTP(t, base+"/devices/cow-2", 200, `"temperature":39.25`)
	select {
	case err := <-done:
		t.Fatalf("Run returned after the Kafka restart: %v", err)
	default:
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of cancellation")
	}
}

// startAdmin runs an admin server on a free loopback port until ctx ends.
func startAdmin(t *testing.T, ctx context.Context) *admin.Server {
	t.Helper()
	adm := admin.New("127.0.0.1:0", devtest.Logger())
	if err := adm.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = adm.Run(ctx) }()
	return adm
}

// createRelayInputs creates the state relay's input topics (alerts and
// commands, two partitions each), which Run expects to exist.
func createRelayInputs(t *testing.T, ctx context.Context, cl *kgo.Client) {
	t.Helper()
	for _, tp := range []string{topics.Alerts, topics.Commands} {
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
}
