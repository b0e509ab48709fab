package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

type cluster struct {
	brokers []string
	regURL  string
	serde   *schemas.Serde
	cl      *kgo.Client
}

// newCluster starts Kafka with the raw topics and state.latest on
// partitions partitions and alerts.events on fewer, like the catalogue.
func newCluster(t *testing.T, partitions int32) *cluster {
	t.Helper()
	kc := devtest.Kafka(t, kfake.SeedTopics(partitions, topics.RawSensor, topics.RawGPS, topics.StateLatest))
	_, url := devtest.Registry(t)
	serde := serdeFor(t, url)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// alerts.events and commands.devices (the relay's inputs) have fewer
	// partitions than raw.*.
	for _, tp := range []string{topics.Alerts, topics.Commands} {
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, max(1, partitions/2), 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	return &cluster{brokers: kc.ListenAddrs(), regURL: url, serde: serde, cl: cl}
}

func (c *cluster) produce(t *testing.T, topic, key string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := c.serde.Encode(ctx, topic, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func reading(device, metric string, ts time.Time, v float64) *schemas.SensorReading {
	return &schemas.SensorReading{EventID: fmt.Sprintf("%s-%s-%d", device, metric, ts.UnixMilli()), Tenant: "farm", DeviceID: device,
		TS: ts, IngestedAt: ts, Metric: metric, Value: v, Source: "test", Attrs: map[string]string{}}
}

func runState(t *testing.T, c *cluster, cfg Config, kopts ...func(*groupkit.Kafka)) (*Processor, func()) {
	t.Helper()
	k := groupkit.NewKafka(c.brokers)
	for _, o := range kopts {
		o(&k)
	}
	k.Log = devtest.Logger()
	p, err := New(c.serde, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, k) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("state run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("state processor did not stop within 60s")
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second)
	for p.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("state processor not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, stop
}

// eventually polls get until check accepts its result, failing after 60 s.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lookup(c *cluster, device string) (*schemas.DeviceState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Lookup(ctx, []kgo.Opt{kgo.SeedBrokers(c.brokers...)}, c.serde, device)
}

func TestIntegrationState(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 4)
	clock := &fakeClock{now: t0}
	p, stop := runState(t, c, Config{Clock: clock, TickInterval: 100 * time.Millisecond, OfflineAfter: 10 * time.Minute})
	const devices = 8
	for d := 0; d < devices; d++ {
		dev := fmt.Sprintf("cow-%d", d)
		c.produce(t, topics.RawSensor, dev, reading(dev, "temperature", t0, 38+float64(d)/10))
		c.produce(t, topics.RawSensor, dev, reading(dev, "battery", t0, 90))
		c.produce(t, topics.RawGPS, dev, &schemas.GPSFix{EventID: dev + "g", Tenant: "farm", DeviceID: dev, TS: t0.Add(time.Second), IngestedAt: t0.Add(time.Second),
			Lat: 47, Lon: 8, Source: "t", Attrs: map[string]string{"firmware": "2.0.1"}})
	}
	c.produce(t, topics.Alerts, "cow-3", &schemas.Alert{AlertID: "a1", Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-3",
		State: "firing", Severity: "warning", Message: "m", FiredAt: t0, TS: t0, IngestedAt: t0})

	for d := 0; d < devices; d++ {
		dev := fmt.Sprintf("cow-%d", d)
		eventually(t, dev+" in state.latest", func() error {
			ds, err := lookup(c, dev)
			if err != nil {
				return err
			}
			if !ds.Online || ds.Metrics["temperature"] != 38+float64(d)/10 || ds.Battery == nil || *ds.Battery != 90 ||
				ds.Lat == nil || *ds.Lat != 47 || ds.Firmware == nil || *ds.Firmware != "2.0.1" || !ds.LastSeen.Equal(t0.Add(time.Second)) {
				return fmt.Errorf("state %+v", ViewOf(ds))
			}
			if dev == "cow-3" && ds.ActiveAlerts != 1 {
				return fmt.Errorf("cow-3 active alerts %d", ds.ActiveAlerts)
			}
			return nil
		})
	}
	// The admin handler answers from the table.
	mux := http.NewServeMux()
	mux.Handle(DevicesPattern, p.Handler([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/devices/cow-3")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"active_alerts":1`) {
		t.Fatalf("GET /devices/cow-3 = %d %s", resp.StatusCode, body)
	}
	// Silence: every device goes offline by wall clock.
	clock.Set(t0.Add(11 * time.Minute))
	eventually(t, "cow-0 offline", func() error {
		ds, err := lookup(c, "cow-0")
		if err != nil {
			return err
		}
		if ds.Online {
			return errors.New("still online")
		}
		return nil
	})
	stop()
}

// TestIntegrationStateRestart stops the group and starts a new instance:
// the shadow comes back from the group table, so a metric sent before the
// restart is still there after one sent afterwards.
func TestIntegrationStateRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	for _, tc := range []struct {
		name string
		dir  string
	}{{name: "memory storage"}, {name: "leveldb storage", dir: t.TempDir()}} {
		t.Run(tc.name, func(t *testing.T) { testStateRestart(t, tc.dir) })
	}
}

func testStateRestart(t *testing.T, dir string) {
	c := newCluster(t, 2)
	cfg := Config{Clock: &fakeClock{now: t0}, TickInterval: -1}
	withDir := func(k *groupkit.Kafka) { k.StorageDir = dir }
	_, stop := runState(t, c, cfg, withDir)
	c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", t0, 38.5))
	eventually(t, "first state", func() error { _, err := lookup(c, "cow-1"); return err })
	stop()

	p2, stop2 := runState(t, c, cfg, withDir)
	c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "activity", t0.Add(time.Second), 3))
	eventually(t, "state with both metrics", func() error {
		ds, err := lookup(c, "cow-1")
		if err != nil {
			return err
		}
		if ds.Metrics["temperature"] != 38.5 || ds.Metrics["activity"] != 3 {
			return fmt.Errorf("metrics %v", ds.Metrics)
		}
		return nil
	})
	if ds, err := p2.Local("cow-1"); err != nil || ds.Metrics["temperature"] != 38.5 {
		t.Fatalf("Local after restart: %+v %v", ds, err)
	}
	stop2()
}

func TestIntegrationStateGetCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 2)
	_, stop := runState(t, c, Config{Clock: &fakeClock{now: t0}, TickInterval: -1})
	// The bridge keys records by the tenant-qualified device.
	c.produce(t, topics.RawSensor, "farm/cow-7", reading("cow-7", "temperature", t0, 39.1))
	eventually(t, "state", func() error { _, err := lookup(c, "farm/cow-7"); return err })
	stop()

	tests := []struct {
		name string
		args []string
		out  string
		err  string
	}{
		{name: "known device", args: []string{"get", "farm/cow-7"}, out: `"temperature": 39.1`},
		{name: "unknown device", args: []string{"get", "farm/nobody"}, err: "device not found"},
		{name: "same id, other tenant", args: []string{"get", "farm2/cow-7"}, err: "device not found"},
		{name: "no tenant", args: []string{"get", "cow-7"}, err: "want TENANT/DEVICE"},
		{name: "no device", args: []string{"get"}, err: "accepts 1 arg"},
		{name: "bad timeout", args: []string{"get", "farm/cow-7", "--timeout", "0s"}, err: "--timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn := &cli.Conn{}
			cmd := Command(conn)
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(append(tc.args, "--kafka-brokers", strings.Join(c.brokers, ","), "--schema-registry-url", c.regURL))
			cmd.SilenceUsage, cmd.SilenceErrors = true, true
			err := executeNoPre(cmd)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var v View
			if err := json.Unmarshal(out.Bytes(), &v); err != nil || !strings.Contains(out.String(), tc.out) || v.DeviceID != "cow-7" {
				t.Fatalf("output %s (%v), want %s", out.String(), err, tc.out)
			}
		})
	}
}

func executeNoPre(cmd *cobra.Command) error { return cmd.ExecuteContext(context.Background()) }

// TestIntegrationStateRebalance runs one instance, starts a second one
// mid-stream and stops the first: partitions move twice, and every
// device's shadow still holds every metric sent in every phase.
func TestIntegrationStateRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 4)
	cfg := Config{Clock: &fakeClock{now: t0}, TickInterval: -1}
	_, stopA := runState(t, c, cfg)
	const devices = 12
	send := func(phase int) {
		for d := 0; d < devices; d++ {
			dev := fmt.Sprintf("cow-%02d", d)
			c.produce(t, topics.RawSensor, dev, reading(dev, fmt.Sprintf("m%d", phase), t0.Add(time.Duration(phase)*time.Minute), float64(phase)))
		}
	}
	send(0)
	_, stopB := runState(t, c, cfg)
	send(1)
	stopA()
	send(2)
	for d := 0; d < devices; d++ {
		dev := fmt.Sprintf("cow-%02d", d)
		eventually(t, dev+" with the metrics of all phases", func() error {
			ds, err := lookup(c, dev)
			if err != nil {
				return err
			}
			for ph := 0; ph < 3; ph++ {
				if v, ok := ds.Metrics[fmt.Sprintf("m%d", ph)]; !ok || v != float64(ph) {
					return fmt.Errorf("metrics %v", ds.Metrics)
				}
			}
			return nil
		})
	}
	stopB()
}
