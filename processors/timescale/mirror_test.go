package timescale

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationSinkOnMirroredCluster: two clusters, as in the prod
// overlay (deploy/README.md, "Two clusters"). Readings are written on the
// edge cluster; a mirror loop copies raw.* and dlq.events to the core
// cluster with the identity replication policy (MirrorMaker 2's part); the
// sink consumes the core cluster only, writes every reading once, and its
// group commits on the core cluster.
func TestIntegrationSinkOnMirroredCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	edge := newKafkaEnv(t, 2)
	coreCluster := devtest.Kafka(t, kfake.SeedTopics(2, SinkTopics...))
	core := &kafkaEnv{cluster: coreCluster, brokers: coreCluster.ListenAddrs(), regURL: edge.regURL, serde: edge.serde}
	mirrored := devtest.Mirror(t, edge.brokers, core.brokers, topics.RawSensor, topics.RawGPS, topics.DLQ)
	url, _ := migratedDB(t)
	rs := startSink(t, core, url, nil)

	const n = 20
	for i := range n {
		edge.produce(t, edge.record(t, topics.RawSensor, "farm/cow-1", schemas.SensorReading{EventID: fmt.Sprint("m-", i),
			Tenant: "farm", DeviceID: "cow-1", TS: at(1, i), IngestedAt: at(1, i), Metric: "temperature", Value: 38, Source: "mqtt"}))
	}
	c := connect(t, url)
	waitFor(t, 60*time.Second, "mirrored readings in sensor_readings", func() (bool, string) {
		got := count(t, c, "SELECT count(*) FROM sensor_readings WHERE event_id LIKE 'm-%'")
		return got == n, fmt.Sprintf("%d rows, mirrored %d records", got, mirrored())
	})
	// The sink's group lives on the core cluster and caught up there.
	p, err := kgo.NewClient(kgo.SeedBrokers(core.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	core.producer = p
	waitFor(t, 30*time.Second, "the sink's offsets committed on the core cluster", func() (bool, string) {
		return groupCaughtUp(t, core, DefaultGroup)
	})
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, c, "SELECT count(*) FROM sensor_readings WHERE event_id LIKE 'm-%'"); got != n {
		t.Errorf("%d rows after stopping, want %d", got, n)
	}
}
