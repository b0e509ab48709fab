package processors

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationMirroredClusters: two clusters, as in the prod overlay
// (deploy/README.md, "Two clusters"). Readings are produced on the edge
// cluster, as the bridge writes them; a mirror loop copies raw.sensor to
// the core cluster with the identity replication policy (MirrorMaker 2's
// part); the processors run on the core cluster only and derive the
// device's state and features there. The edge cluster never sees a
// consumer group, a processor's output or a table.
func TestIntegrationMirroredClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	seed := kfake.SeedTopics(4, topics.RawSensor, topics.RawGPS, topics.Features, topics.StateLatest, topics.DLQ)
	edge, core := devtest.Kafka(t, seed), devtest.Kafka(t, seed)
	var edgeGroups atomic.Int64
	edge.ControlKey(int16(kmsg.FindCoordinator), func(kmsg.Request) (kmsg.Response, error, bool) {
		edge.KeepControl()
		edgeGroups.Add(1)
		return nil, nil, false
	})
	mirrored := devtest.Mirror(t, edge.ListenAddrs(), core.ListenAddrs(), topics.RawSensor)

	_, url := devtest.Registry(t) // one registry for both clusters
	serde, _ := devtest.Schemas(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	coreCl, err := kgo.NewClient(kgo.SeedBrokers(core.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer coreCl.Close()
	createRelayInputs(t, ctx, coreCl)

	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	adm := startAdmin(t, runCtx)
	done := make(chan error, 1)
	brokers := core.ListenAddrs()
	go func() {
		done <- Run(runCtx, groupkit.NewKafka(brokers), serde, Options{
			Groups:    []string{"features", "state"},
			Features:  features.Config{TickInterval: 200 * time.Millisecond},
			KafkaOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)},
		}, adm, devtest.Logger())
	}()
	base := "http://" + adm.Addr()
	waitHTTP(t, base+"/readyz", 200, `"ready":true`)

	edgeCl, err := kgo.NewClient(kgo.SeedBrokers(edge.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer edgeCl.Close()
	t0 := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	for i := range 3 {
		r := &schemas.SensorReading{EventID: fmt.Sprint(i), Tenant: "farm", DeviceID: "cow-1", TS: t0.Add(time.Duration(i) * 40 * time.Second),
			IngestedAt: time.Now(), Metric: "temperature", Value: 38 + float64(i), Source: "t", Attrs: map[string]string{}}
		b, err := serde.Encode(ctx, topics.RawSensor, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := edgeCl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-1"), Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	waitHTTP(t, base+"/devices/cow-1", 200, `"temperature":40`)
	waitHTTP(t, base+"/metrics", 200, `drover_features_emitted_total{reason="watermark"} 1`)
	if n := mirrored(); n != 3 {
		t.Errorf("mirrored %d records, want 3", n)
	}
	// The outputs are on the core cluster only.
	ends := func(cl *kgo.Client) int64 {
		o, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics.Features, topics.StateLatest)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		o.Each(func(lo kadm.ListedOffset) { n += lo.Offset })
		return n
	}
	if n := ends(coreCl); n == 0 {
		t.Error("no features or state records on the core cluster")
	}
	if n := ends(edgeCl); n != 0 {
		t.Errorf("%d features or state records on the edge cluster, want none", n)
	}
	if n := edgeGroups.Load(); n != 0 {
		t.Errorf("%d FindCoordinator requests on the edge cluster: a consumer group ran there", n)
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
