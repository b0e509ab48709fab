package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/bridge"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/processors/timescale"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Pipeline names what carries the messages from MQTT into PostgreSQL.
type Pipeline string

// The pipelines a Run can measure.
const (
	// Drover is the real bridge and sink: MQTT devices/bench/... → bridge
	// → raw.sensor → sink → sensor_readings.
	Drover Pipeline = "drover"
	// Bare is the baseline: a plain paho subscriber on bare/bench/... that
	// parses the JSON and COPYs the rows into bench_bare_readings (same
	// columns and keys as sensor_readings), batching like the sink.
	Bare Pipeline = "bare"
)

// Metric is the metric name of the benchmark's readings; only rows with it
// are reported by the visibility trigger.
const Metric = "bench.e2e"

// warmMetric marks the readiness probes, which the trigger ignores.
const warmMetric = "bench.warm"

// Options configure the harness. Zero fields take the defaults named on
// them.
type Options struct {
	// Devices is how many device ids the messages cycle through; default 1000.
	Devices int
	// Connections is the number of MQTT publisher connections; default 4.
	Connections int
	// InFlight is how many QoS 1 publishes may await their PUBACK at once,
	// over all connections; default 512.
	InFlight int
	// BatchSize and FlushInterval are the sink's --batch-size and
	// --flush-interval (and the baseline's); defaults 1000 and 50ms.
	BatchSize     int
	FlushInterval time.Duration
	// DrainTimeout bounds the wait for the last rows after publishing ends;
	// default 30s.
	DrainTimeout time.Duration
	// DataDir holds the embedded stack's data; default a new temporary
	// directory, removed by Close.
	DataDir string
	// Log receives progress lines; default discard.
	Log *slog.Logger
	// StackLog receives the stack's and the stages' own logs; default discard.
	StackLog *slog.Logger
}

func (o *Options) defaults() error {
	if o.Devices == 0 {
		o.Devices = 1000
	}
	if o.Connections == 0 {
		o.Connections = 4
	}
	if o.InFlight == 0 {
		o.InFlight = 512
	}
	if o.BatchSize == 0 {
		o.BatchSize = 1000
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 50 * time.Millisecond
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.StackLog == nil {
		o.StackLog = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Devices < 1:
		return fmt.Errorf("bench: Devices %d: want at least 1", o.Devices)
	case o.Connections < 1:
		return fmt.Errorf("bench: Connections %d: want at least 1", o.Connections)
	case o.InFlight < o.Connections:
		return fmt.Errorf("bench: InFlight %d: want at least Connections (%d)", o.InFlight, o.Connections)
	case o.BatchSize < 1:
		return fmt.Errorf("bench: BatchSize %d: want at least 1", o.BatchSize)
	case o.FlushInterval < time.Millisecond:
		return fmt.Errorf("bench: FlushInterval %s: want at least 1ms", o.FlushInterval)
	}
	return nil
}

// Env is a running embedded stack with the drover stages, the baseline and
// the observers. Start it with Start, measure with Run, stop with Close.
type Env struct {
	opts    Options
	stack   *devstack.Stack
	ep      devstack.Endpoints
	tmpDir  string
	cancel  context.CancelFunc
	stageWG sync.WaitGroup
	errMu   sync.Mutex
	errs    []error

	pubs   []*autopaho.ConnectionManager
	query  *pgx.Conn // Run's own queries (one goroutine)
	serde  *schemas.Serde
	tsBase int64        // event time (Unix ms) of each device's first reading
	seq    atomic.Int64 // next sequence number
	sent   atomic.Int64 // published and acknowledged
	seen   atomic.Int64 // sequence numbers reported visible
	pubErr atomic.Int64

	mu     sync.Mutex
	cur    *track
	probes []time.Duration // NOTIFY delivery delay samples
}

// track holds per-message timestamps (Unix ns) of one Run; index = seq - base.
type track struct {
	base  int64
	pub   []int64 // publish, as recorded by the publisher
	vis   []int64 // row visible (NOTIFY received)
	kafka []int64 // fetched from raw.sensor by the observer consumer
	recTS []int64 // Kafka record timestamp (ms resolution)
	slip  []int64 // publish time minus scheduled time
}

func (t *track) idx(seq int64) (int, bool) {
	i := seq - t.base
	return int(i), i >= 0 && i < int64(len(t.vis))
}

// Start starts the embedded stack, migrates the database, installs the
// visibility trigger, starts the bridge, the sink, the baseline subscriber
// and the observers, and returns once a reading published on each pipeline
// has reached its table.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	e := &Env{opts: opts, tsBase: time.Now().Add(-time.Minute).UnixMilli()}
	if opts.DataDir == "" {
		if e.tmpDir, err = os.MkdirTemp("", "drover-bench-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		e.opts.DataDir = e.tmpDir
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	start := time.Now()
	if e.stack, err = devstack.Start(ctx, devstack.Config{DataDir: e.opts.DataDir, Logger: opts.StackLog}); err != nil {
		return nil, err
	}
	e.ep = e.stack.Endpoints()
	if err := devstack.Provision(ctx, e.ep, opts.StackLog); err != nil {
		return nil, err
	}
	// The bridge checks every message's device against the device registry
	// (as drover dev's does): register the run's devices first.
	if err := e.registerDevices(ctx); err != nil {
		return nil, err
	}
	if err := e.prepareDB(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel

	// Observers first, so they see everything the run publishes.
	listenReady := make(chan error, 1)
	e.goStage("listener", func() error { return e.listen(rctx, listenReady) })
	if err := <-listenReady; err != nil {
		return nil, err
	}
	e.goStage("probe", func() error { return e.probe(rctx) })
	reg, err := sr.NewClient(sr.URLs(e.ep.SchemaRegistryURL))
	if err != nil {
		return nil, fmt.Errorf("bench: registry: %w", err)
	}
	if e.serde, err = schemas.NewSerde(reg); err != nil {
		return nil, err
	}
	obs, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.ep.KafkaBrokers, ",")...),
		kgo.ConsumeTopics(topics.RawSensor), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchMaxWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("bench: observer: %w", err)
	}
	e.goStage("observer", func() error { defer obs.Close(); return e.observe(rctx, obs) })

	// The drover stages, wired as `drover dev` wires them (the sink with
	// latency settings instead of the dev stage's fixed 500ms flush).
	br := bridge.DevStage(time.Hour)
	e.goStage("bridge", func() error { return br.Run(rctx, e.ep, opts.StackLog.With("stage", "bridge")) })
	sink, err := e.newSink()
	if err != nil {
		return nil, err
	}
	e.goStage("sink", func() error { return sink.Run(rctx) })
	e.goStage("bare", func() error { return e.runBare(rctx) })

	if err := e.dialPublishers(ctx); err != nil {
		return nil, err
	}
	for _, p := range []Pipeline{Drover, Bare} {
		if err := e.awaitFlow(ctx, p); err != nil {
			return nil, err
		}
	}
	opts.Log.Info("bench: stack ready", "took", time.Since(start).Round(time.Millisecond).String(),
		"batch_size", opts.BatchSize, "flush_interval", opts.FlushInterval.String())
	return e, nil
}

// SinkSettings describes the sink's tuning, as `drover sink` flags.
func (e *Env) SinkSettings() string {
	return fmt.Sprintf("--batch-size %d --flush-interval %s", e.opts.BatchSize, e.opts.FlushInterval)
}

func (e *Env) goStage(name string, f func() error) {
	e.stageWG.Add(1)
	go func() {
		defer e.stageWG.Done()
		if err := f(); err != nil && !errors.Is(err, context.Canceled) {
			e.opts.Log.Error("bench: stage stopped", "stage", name, "err", err)
			e.errMu.Lock()
			e.errs = append(e.errs, fmt.Errorf("%s: %w", name, err))
			e.errMu.Unlock()
		}
	}()
}

// Err returns the errors of stages that stopped on their own.
func (e *Env) Err() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return errors.Join(e.errs...)
}

func (e *Env) connect(ctx context.Context) (*pgx.Conn, error) {
	db, err := timescale.ParseURL(e.ep.DatabaseURL)
	if err != nil {
		return nil, err
	}
	c, err := pgx.ConnectConfig(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("bench: database: %w", err)
	}
	return c, nil
}

// triggerSQL installs the visibility trigger: after every INSERT or COPY
// statement it sends the benchmark sequence numbers (the value column)
// among the inserted rows as ranges ("12-40,45"), at most 400 ranges per
// notification (the payload limit is 8000 bytes). PostgreSQL delivers
// notifications only after the transaction commits.
const triggerSQL = `
CREATE TABLE IF NOT EXISTS bench_bare_readings (LIKE sensor_readings INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE OR REPLACE FUNCTION bench_notify_visible() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  chunk text;
BEGIN
  FOR chunk IN
    WITH s AS (SELECT value::bigint AS v FROM new_rows WHERE metric = '` + Metric + `'),
    g AS (SELECT v, v - row_number() OVER (ORDER BY v) AS grp FROM s),
    r AS (SELECT min(v) AS lo, max(v) AS hi FROM g GROUP BY grp),
    c AS (SELECT (row_number() OVER (ORDER BY lo) - 1) / 400 AS n, lo, hi FROM r)
    SELECT string_agg(CASE WHEN lo = hi THEN lo::text ELSE lo || '-' || hi END, ',' ORDER BY lo) FROM c GROUP BY n
  LOOP
    PERFORM pg_notify('bench_visible', chunk);
  END LOOP;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS bench_visible ON sensor_readings;
CREATE TRIGGER bench_visible AFTER INSERT ON sensor_readings
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_visible();
DROP TRIGGER IF EXISTS bench_visible ON bench_bare_readings;
CREATE TRIGGER bench_visible AFTER INSERT ON bench_bare_readings
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_visible();
`

// prepareDB migrates the database as the sink would (so the trigger can be
// added before the sink starts; its own migration then finds nothing to
// do) and installs the trigger and the baseline's table.
func (e *Env) prepareDB(ctx context.Context) error {
	c, err := e.connect(ctx)
	if err != nil {
		return err
	}
	if _, err := timescale.Migrate(ctx, c, timescale.ModeAuto, e.layout(), e.opts.StackLog); err != nil {
		c.Close(ctx)
		return fmt.Errorf("bench: migrate: %w", err)
	}
	if _, err := c.Exec(ctx, triggerSQL); err != nil {
		c.Close(ctx)
		return fmt.Errorf("bench: visibility trigger: %w", err)
	}
	e.query = c
	return nil
}

func (e *Env) layout() timescale.Layout {
	l := timescale.DefaultLayout(timescale.PathPostgres)
	l.RefreshInterval = timescale.DevRefreshInterval // as the dev stage
	return l
}

// newSink builds the sink as timescale.DevStage does, with the latency
// settings of Options.
func (e *Env) newSink() (*timescale.Sink, error) {
	db, err := timescale.ParseURL(e.ep.DatabaseURL)
	if err != nil {
		return nil, err
	}
	reg, err := sr.NewClient(sr.URLs(e.ep.SchemaRegistryURL))
	if err != nil {
		return nil, err
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return nil, err
	}
	layout := e.layout()
	cfg := timescale.Config{BatchSize: e.opts.BatchSize, FlushInterval: e.opts.FlushInterval, Layout: &layout,
		Log: e.opts.StackLog.With("stage", "sink"), Registerer: prometheus.NewRegistry()}
	return timescale.New(cfg, db, []kgo.Opt{kgo.SeedBrokers(strings.Split(e.ep.KafkaBrokers, ",")...)}, serde)
}

// listen receives the trigger's notifications and the probes.
func (e *Env) listen(ctx context.Context, ready chan<- error) error {
	c, err := e.connect(ctx)
	if err != nil {
		ready <- err
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{"bench_visible", "bench_probe"} {
		if _, err := c.Exec(ctx, "LISTEN "+ch); err != nil {
			ready <- err
			return err
		}
	}
	ready <- nil
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		if n.Channel == "bench_probe" {
			if sent, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
				e.mu.Lock()
				e.probes = append(e.probes, time.Duration(now-sent))
				e.mu.Unlock()
			}
			continue
		}
		e.markVisible(n.Payload, now)
	}
}

// markVisible records now for every sequence number in ranges
// ("12-40,45").
func (e *Env) markVisible(ranges string, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for part := range strings.SplitSeq(ranges, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil {
				continue
			}
		}
		e.seen.Add(b - a + 1)
		if e.cur == nil {
			continue
		}
		for s := a; s <= b; s++ {
			if i, ok := e.cur.idx(s); ok && e.cur.vis[i] == 0 {
				e.cur.vis[i] = now
			}
		}
	}
}

// probe measures how long a notification takes to reach the listener: it
// sends one with its send time every 50ms from its own connection.
func (e *Env) probe(ctx context.Context) error {
	c, err := e.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if _, err := c.Exec(ctx, "SELECT pg_notify('bench_probe', $1)", strconv.FormatInt(time.Now().UnixNano(), 10)); err != nil {
			return err
		}
	}
}

// observe records when each benchmark record becomes readable in
// raw.sensor, and its record timestamp.
func (e *Env) observe(ctx context.Context, cl *kgo.Client) error {
	var r schemas.SensorReading
	var seen [][2]int64 // sequence number, record timestamp
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now().UnixNano()
		seen = seen[:0]
		fs.EachRecord(func(rec *kgo.Record) {
			r = schemas.SensorReading{}
			if _, err := e.serde.Decode(ctx, rec.Value, &r); err != nil || r.Metric != Metric {
				return
			}
			seen = append(seen, [2]int64{int64(r.Value), rec.Timestamp.UnixNano()})
		})
		e.mu.Lock()
		if t := e.cur; t != nil {
			for _, s := range seen {
				if i, ok := t.idx(s[0]); ok {
					t.kafka[i] = now
					t.recTS[i] = s[1]
				}
			}
		}
		e.mu.Unlock()
	}
}

// dialPublishers opens the publisher connections (MQTT v5, clean start).
func (e *Env) dialPublishers(ctx context.Context) error {
	u, err := url.Parse(e.ep.MQTTURL)
	if err != nil {
		return fmt.Errorf("bench: mqtt url: %w", err)
	}
	for i := range e.opts.Connections {
		cm, err := autopaho.NewConnection(context.WithoutCancel(ctx), autopaho.ClientConfig{
			ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
			ClientConfig: paho.ClientConfig{ClientID: fmt.Sprintf("bench-pub-%d", i)},
		})
		if err != nil {
			return fmt.Errorf("bench: publisher: %w", err)
		}
		e.pubs = append(e.pubs, cm)
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = cm.AwaitConnection(actx)
		cancel()
		if err != nil {
			return fmt.Errorf("bench: publisher connect: %w", err)
		}
	}
	return nil
}

func topicPrefix(p Pipeline) string {
	if p == Bare {
		return "bare/bench/"
	}
	return "devices/bench/"
}

func table(p Pipeline) string {
	if p == Bare {
		return "bench_bare_readings"
	}
	return "sensor_readings"
}

// awaitFlow publishes a probe reading every 250ms until one reached the
// pipeline's table: the subscription is up and the sink has joined its
// group.
func (e *Env) awaitFlow(ctx context.Context, p Pipeline) error {
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; ; i++ {
		payload := fmt.Sprintf(`{"ts":%d,"metric":%q,"value":%d}`, time.Now().UnixMilli(), warmMetric, i)
		if _, err := e.pubs[0].Publish(ctx, &paho.Publish{QoS: 1, Topic: topicPrefix(p) + "warm/sensor", Payload: []byte(payload)}); err != nil {
			return fmt.Errorf("bench: probe publish: %w", err)
		}
		var n int
		if err := e.query.QueryRow(ctx, "SELECT count(*) FROM "+table(p)+" WHERE metric = $1", warmMetric).Scan(&n); err != nil {
			return fmt.Errorf("bench: probe query: %w", err)
		}
		if n > 0 {
			return nil
		}
		if err := e.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: no reading reached %s within 90s through the %s pipeline", table(p), p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close stops everything and removes the temporary data directory.
func (e *Env) Close() {
	if e.cancel != nil {
		e.cancel()
	}
	for _, cm := range e.pubs {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = cm.Disconnect(dctx)
		cancel()
	}
	e.stageWG.Wait()
	if e.query != nil {
		e.query.Close(context.Background())
	}
	if e.stack != nil {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = e.stack.Close(cctx)
		cancel()
	}
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

// brokerDropped is how many QoS 1 messages the embedded broker dropped
// (its in-flight store for a subscriber full, or its write queue).
func (e *Env) brokerDropped() int64 {
	return atomic.LoadInt64(&e.stack.MQTT.Info.InflightDropped) + atomic.LoadInt64(&e.stack.MQTT.Info.MessagesDropped)
}

// Probes returns the NOTIFY delivery delays measured so far, sorted.
func (e *Env) Probes() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := slices.Clone(e.probes)
	slices.Sort(p)
	return p
}

// registerDevices registers the devices the run publishes as (tenant
// "bench": d0 … d<Devices-1> and the warm-up device) in the device registry.
func (e *Env) registerDevices(ctx context.Context) error {
	reg, err := sr.NewClient(sr.URLs(e.ep.SchemaRegistryURL))
	if err != nil {
		return fmt.Errorf("bench: registry: %w", err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return fmt.Errorf("bench: registry: %w", err)
	}
	ids := []string{"warm"}
	for i := range e.opts.Devices {
		ids = append(ids, "d"+strconv.Itoa(i))
	}
	if err := registry.RegisterDevices(ctx, []kgo.Opt{kgo.SeedBrokers(strings.Split(e.ep.KafkaBrokers, ",")...)}, serde, "drover bench", "bench", ids, e.opts.StackLog); err != nil {
		return fmt.Errorf("bench: registering the devices: %w", err)
	}
	return nil
}
