package timescale

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// runningSink is a sink started in the background by startSink.
type runningSink struct {
	sink *Sink
	reg  *prometheus.Registry
	stop func() error
	// exited is closed if Run returns before stop is called; err is then
	// Run's error.
	exited chan struct{}
	err    error
}

func startSink(t testing.TB, env *kafkaEnv, dbURL string, mod func(*Config)) *runningSink {
	t.Helper()
	db, err := ParseURL(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{
		BatchSize: 500, FlushInterval: 100 * time.Millisecond, Log: testLog(), Registerer: reg,
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, db, []kgo.Opt{kgo.SeedBrokers(env.brokers...)}, newSerdeFor(t, env.regURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSink{sink: s, reg: reg, exited: make(chan struct{})}
	go func() {
		rs.err = s.Run(ctx)
		close(rs.exited)
	}()
	stopped := false
	rs.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case <-rs.exited:
			return rs.err
		case <-time.After(60 * time.Second):
			return errors.New("sink did not stop within 60s")
		}
	}
	t.Cleanup(func() { _ = rs.stop() })
	return rs
}

// groupCaughtUp reports whether group has committed every end offset of the
// sink topics.
func groupCaughtUp(t testing.TB, env *kafkaEnv, group string) (bool, string) {
	t.Helper()
	adm := kadm.NewClient(env.producer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, SinkTopics...)
	if err != nil {
		return false, err.Error()
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err.Error()
	}
	var behind []string
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset == 0 {
			return
		}
		c, ok := committed.Lookup(o.Topic, o.Partition)
		if !ok || c.At < o.Offset {
			behind = append(behind, fmt.Sprintf("%s/%d %d<%d", o.Topic, o.Partition, c.At, o.Offset))
		}
	})
	return len(behind) == 0, strings.Join(behind, " ")
}

// dataset produces a known mix of every record kind plus poison records
// and returns the expected row count per table.
func dataset(t testing.TB, env *kafkaEnv) map[string]int64 {
	t.Helper()
	alertID, err := env.serde.ID(context.Background(), topics.Alerts)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	const devices, perDevice = 5, 40
	for d := range devices {
		dev := fmt.Sprintf("cow-%d", d)
		for i := range perDevice {
			recs = append(recs, env.record(t, topics.RawSensor, dev, schemas.SensorReading{
				EventID: fmtID(dev, "-", i), Tenant: "farm", DeviceID: dev, TS: at(0, i), IngestedAt: at(0, i),
				Metric: "temperature", Value: 38 + float64(i%10)/10, Unit: ptr("Cel"), Source: "mqtt"}))
		}
		for i := range 10 {
			recs = append(recs, env.record(t, topics.RawGPS, dev, schemas.GPSFix{
				EventID: fmtID(dev, "-g", i), Tenant: "farm", DeviceID: dev, TS: at(1, i), IngestedAt: at(1, i),
				Lat: 47 + float64(i)/1000, Lon: 8, Source: "mqtt"}))
		}
		recs = append(recs,
			env.record(t, topics.Features, dev, schemas.Feature{FeatureID: "f-" + dev, Tenant: "farm", DeviceID: dev, Metric: "temperature",
				WindowStart: at(0, 0), WindowEnd: at(1, 0), WindowSizeMS: 3600000, Count: perDevice, TS: at(1, 0), IngestedAt: at(1, 0)}),
			env.record(t, topics.Alerts, dev, schemas.Alert{AlertID: "a-" + dev, Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: dev,
				State: "firing", Severity: "warning", Message: "fever", FiredAt: at(2, 0), TS: at(2, 0), IngestedAt: at(2, 0)}),
			env.record(t, topics.Alerts, dev, schemas.Alert{AlertID: "a-" + dev, Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: dev,
				State: "resolved", Severity: "warning", Message: "fever over", FiredAt: at(2, 0), ResolvedAt: ptr(at(3, 0)), TS: at(3, 0), IngestedAt: at(3, 0)}),
			env.record(t, topics.StateLatest, dev, schemas.DeviceState{Tenant: "farm", DeviceID: dev, TS: at(3, 0), IngestedAt: at(3, 0),
				Online: true, LastSeen: at(3, 0), UpdatedAt: at(3, 0)}),
		)
	}
	recs = append(recs,
		env.record(t, topics.RawImage2D, "cam-1", schemas.MediaObject{EventID: "m1", Tenant: "farm", DeviceID: "cam-1", TS: at(4, 0), IngestedAt: at(4, 0),
			Kind: "image2d", Bucket: "media", Key: "a.jpg", Size: 10, ContentType: "image/jpeg"}),
		env.record(t, topics.RawVideo3D, "cam-1", schemas.MediaObject{EventID: "m2", Tenant: "farm", DeviceID: "cam-1", TS: at(4, 0), IngestedAt: at(4, 0),
			Bucket: "media", Key: "b.mp4", Size: 20, ContentType: "video/mp4"}), // kind from the topic
		env.record(t, topics.DLQ, "cow-1", schemas.DeadLetter{ID: "bridge-1", Stage: "validate", Reason: "schema_mismatch", Message: "bad",
			Source: "devices/farm/cow-1/sensor", Payload: []byte("{}"), PayloadSize: 2, ReceivedAt: at(4, 0), TS: at(4, 0), IngestedAt: at(4, 0)}),
		// Poison records: each becomes a dead letter, none stops the sink.
		&kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-1"), Value: []byte("not avro at all")},
		&kgo.Record{Topic: topics.RawGPS, Key: []byte("cow-1"), Value: append(schemas.Header(99999), 1, 2, 3)},
		// A known schema id with a body that does not decode (negative string length).
		&kgo.Record{Topic: topics.Alerts, Key: []byte("cow-1"), Value: append(schemas.Header(alertID), 0x01, 0x41)},
		env.record(t, topics.RawSensor, "cow-9", schemas.SensorReading{EventID: "e", Tenant: "farm", DeviceID: "", Metric: "m", TS: at(0, 0), IngestedAt: at(0, 0)}),
		env.record(t, topics.RawSensor, "cow-9", schemas.SensorReading{EventID: "e", Tenant: "farm", DeviceID: "cow-9", Metric: "m\x00", TS: at(0, 0), IngestedAt: at(0, 0)}),
		env.record(t, topics.RawSensor, "cow-9", schemas.SensorReading{EventID: "e", Tenant: "farm", DeviceID: "cow-9", Metric: "m", TS: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC), IngestedAt: at(0, 0)}),
		// A tombstone on the compacted state topic writes nothing.
		&kgo.Record{Topic: topics.StateLatest, Key: []byte("cow-gone")},
	)
	env.produce(t, recs...)
	return map[string]int64{
		TableSensorReadings: devices * perDevice, TableGPSFixes: devices * 10, TableMediaObjects: 2, TableFeatures: devices,
		TableAlerts: devices, TableDeviceState: devices, TableDeadLetters: 1 + 6,
	}
}

func tableCounts(t testing.TB, dbURL string) map[string]int64 {
	t.Helper()
	c := connect(t, dbURL)
	out := map[string]int64{}
	for _, table := range Tables {
		out[table] = count(t, c, "SELECT count(*) FROM "+table)
	}
	c.Close(context.Background())
	return out
}

func sameCounts(a, b map[string]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestIntegrationSinkEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 3)
	dbURL := devtest.Postgres(t)
	want := dataset(t, env)

	rs := startSink(t, env, dbURL, func(c *Config) {
		l := DefaultLayout(PathPostgres)
		l.RefreshInterval = time.Second
		c.Layout, c.MaintenanceInterval = &l, time.Second
	})
	waitReady(t, rs)
	waitFor(t, 60*time.Second, "all rows and committed offsets", func() (bool, string) {
		got := tableCounts(t, dbURL)
		if !sameCounts(want, got) {
			return false, fmt.Sprint(got)
		}
		return groupCaughtUp(t, env, DefaultGroup)
	})
	if err := rs.sink.Ready(context.Background()); err != nil {
		t.Errorf("ready = %v", err)
	}
	// The maintenance loop refreshes the rollups on schedule and keeps
	// partitions created ahead.
	c := connect(t, dbURL)
	waitFor(t, 60*time.Second, "gps_distance_daily refreshed by the sink", func() (bool, string) {
		var n int64
		if err := c.QueryRow(context.Background(), "SELECT count(*) FROM gps_distance_daily").Scan(&n); err != nil {
			return false, err.Error()
		}
		return n == 5, fmt.Sprint(n, " rows")
	})
	if !rs.sink.Layout().Timescale {
		ahead := partitionName(TableSensorReadings, time.Now().UTC().AddDate(0, 0, 7))
		if n := count(t, c, "SELECT count(*) FROM pg_class WHERE relname = $1", ahead); n != 1 {
			t.Errorf("partition %s (7 days ahead) not created", ahead)
		}
	}
	families, err := rs.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"drover_sink_batch_records", "drover_sink_batch_write_seconds", "drover_sink_consumer_lag_records", "drover_sink_end_to_end_seconds", "drover_sink_rows_written_total"} {
		if !names[n] {
			t.Errorf("metric %s not exported", n)
		}
	}
	if err := rs.stop(); err != nil {
		t.Fatalf("sink stopped with %v", err)
	}

	checks := []struct {
		name string
		q    string
		want int64
	}{
		{"alerts resolved", "SELECT count(*) FROM alerts WHERE state = 'resolved' AND resolved_at IS NOT NULL", 5},
		{"media kind from topic", "SELECT count(*) FROM media_objects WHERE key = 'b.mp4' AND kind = 'video3d'", 1},
		{"poison not wire format", "SELECT count(*) FROM dead_letters WHERE stage = 'sink' AND reason = 'not_wire_format' AND kafka_topic = 'raw.sensor' AND payload_excerpt = 'not avro at all'::bytea", 1},
		{"poison unknown schema", "SELECT count(*) FROM dead_letters WHERE reason = 'unknown_schema' AND kafka_topic = 'raw.gps' AND kafka_offset IS NOT NULL", 1},
		{"poison undecodable", "SELECT count(*) FROM dead_letters WHERE reason = 'undecodable' AND kafka_topic = 'alerts.events'", 1},
		{"invalid records", "SELECT count(*) FROM dead_letters WHERE reason = 'invalid_record' AND device_id = 'cow-9'", 2},
		{"out of range ts", "SELECT count(*) FROM dead_letters WHERE reason = 'ts_out_of_range'", 1},
		{"bridge dead letter, keyed by its dlq.events record", "SELECT count(*) FROM dead_letters WHERE id = 'bridge-1' AND stage = 'validate' AND kafka_topic = 'dlq.events' AND kafka_offset IS NOT NULL", 1},
	}
	for _, ch := range checks {
		if n := count(t, c, ch.q); n != ch.want {
			t.Errorf("%s: got %d, want %d", ch.name, n, ch.want)
		}
	}
	if got := metricValue(rs.sink.m.rows.WithLabelValues(TableSensorReadings)); got != float64(want[TableSensorReadings]) {
		t.Errorf("rows_written_total{table=sensor_readings} = %v, want %d", got, want[TableSensorReadings])
	}
	if got := metricValue(rs.sink.m.records.WithLabelValues(topics.StateLatest, "tombstone")); got != 1 {
		t.Errorf("tombstones counted %v, want 1", got)
	}

	// Replay everything through a new group: nothing is written twice.
	replay := replayChangesNothing(t, env, dbURL)
	if got := metricValue(replay.sink.m.rows.WithLabelValues(TableSensorReadings)); got != 0 {
		t.Errorf("replay wrote %v sensor rows, want 0", got)
	}
}

// replayChangesNothing re-reads every topic from the start with a new
// group, fails the test if that changed a table's row count, and returns
// the stopped replaying sink (for its metrics).
func replayChangesNothing(t *testing.T, env *kafkaEnv, dbURL string) *runningSink {
	t.Helper()
	before := tableCounts(t, dbURL)
	replay := startSink(t, env, dbURL, func(c *Config) { c.Group = "replay" })
	waitFor(t, 60*time.Second, "replay group caught up", func() (bool, string) { return groupCaughtUp(t, env, "replay") })
	if err := replay.stop(); err != nil {
		t.Fatal(err)
	}
	if after := tableCounts(t, dbURL); !sameCounts(before, after) {
		t.Fatalf("replay changed row counts: before %v, after %v", before, after)
	}
	return replay
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// waitReady waits until the sink has migrated and joined its group; it
// fails at once if the sink stopped.
func waitReady(t testing.TB, rs *runningSink) {
	t.Helper()
	waitFor(t, 60*time.Second, "sink ready", func() (bool, string) {
		select {
		case <-rs.exited:
			t.Fatalf("sink stopped before it was ready: %v", rs.err)
		default:
		}
		err := rs.sink.Ready(context.Background())
		return err == nil, fmt.Sprint(err)
	})
}
