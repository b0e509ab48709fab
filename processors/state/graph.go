package state

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Group is the goka group of the state processor. Its group table (Table,
// topic "state-table") holds each device's shadow (JSON).
const Group goka.Group = "state"

// RelayGroup is the stateless group that forwards alerts.events into the
// state group's loop topic, keyed by device.
const RelayGroup goka.Group = "state-alerts"

// DeadLetterStream receives undecodable raw.* input when
// Config.DeadLetters is set.
const DeadLetterStream goka.Stream = topics.DLQ

// Table is the state group table.
var Table = goka.GroupTable(Group)

// Stream is the output stream: the compacted state.latest, one record per
// change, key = device id.
const Stream goka.Stream = topics.StateLatest

// LoopStream is the state group's loop topic, which carries the relayed
// alert transitions.
var LoopStream = goka.Stream(string(Group) + "-loop")

// Processor is the state group plus the alert relay: graphs, callbacks
// and metrics. Build it with New.
type Processor struct {
	cfg   Config
	serde *schemas.Serde
	m     *metrics
	codec *groupkit.CachedCodec[shadow] // group-table codec (JSON) with the decoded-state cache

	groupkit.Handle
	limiter groupkit.Limiter // bad-record log lines
}

type metrics struct {
	records *prometheus.CounterVec // topic
	bad     *prometheus.CounterVec // topic
	offline prometheus.Counter
	emitted prometheus.Counter
	ticks   prometheus.Counter
	visited prometheus.Counter
	relayed prometheus.Counter
	lookups *prometheus.CounterVec // source
	dead    prometheus.Counter
	unseen  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_state_records_total", Help: "Records processed by the state group, by topic (the loop topic carries relayed alerts)."}, []string{"topic"}),
		bad:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_state_bad_records_total", Help: "Undecodable or invalid records skipped by the state group (they stay in the input topic), by topic."}, []string{"topic"}),
		offline: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_offline_transitions_total", Help: "Devices marked offline by the wall-clock tick."}),
		emitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_emitted_total", Help: "Device states written to state.latest."}),
		ticks:   prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_ticks_total", Help: "Wall-clock ticks run over the state table."}),
		visited: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_tick_visited_total", Help: "Device entries visited by wall-clock ticks."}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_alerts_relayed_total", Help: "Records relayed onto the state group's loop: alert events from alerts.events and desired-state commands from commands.devices."}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_state_lookups_total", Help: "Device state lookups served, by source: table (this instance's partitions) or topic (state.latest)."}, []string{"source"}),
		dead:    prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_dead_letters_total", Help: "Undecodable raw.* records written to dlq.events (only with dead letters on; off by default, the alerts group writes them)."}),
		unseen:  prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_state_unseen_changes_total", Help: "State changes of devices with no record seen yet (an alert before the first reading): kept in the table, not emitted until the device's first record."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.bad, m.offline, m.emitted, m.ticks, m.visited, m.relayed, m.lookups, m.dead, m.unseen)
	}
	return m
}

// New validates cfg and returns the processor.
func New(serde *schemas.Serde, cfg Config) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Processor{Handle: groupkit.Handle{Name: string(Group)}, cfg: cfg, serde: serde, m: newMetrics(cfg.Registerer), codec: groupkit.NewCachedCodec[shadow](groupkit.JSONCodec[shadow]{})}, nil
}

// Graph returns the state group graph: inputs raw.sensor and raw.gps, the
// loop of relayed alerts, the tick visitor, the persisted shadow (JSON,
// behind the decoded-state cache), the state.latest output and, with
// Config.DeadLetters, dlq.events.
func (p *Processor) Graph() *goka.GroupGraph {
	edges := []goka.Edge{
		goka.Input(topics.RawSensor, groupkit.AvroCodec[schemas.SensorReading]{Serde: p.serde, Topic: topics.RawSensor}, p.onSensor),
		goka.Input(topics.RawGPS, groupkit.AvroCodec[schemas.GPSFix]{Serde: p.serde, Topic: topics.RawGPS}, p.onGPS),
		goka.Loop(groupkit.JSONCodec[alertNote]{}, p.onAlert),
		goka.Visitor(groupkit.TickVisitor, p.onTick),
		goka.Persist(p.codec),
		goka.Output(Stream, groupkit.AvroCodec[schemas.DeviceState]{Serde: p.serde, Topic: topics.StateLatest}),
	}
	if p.cfg.DeadLetters {
		edges = append(edges, goka.Output(DeadLetterStream, groupkit.AvroCodec[schemas.DeadLetter]{Serde: p.serde, Topic: topics.DLQ}))
	}
	return goka.DefineGroup(Group, edges...)
}

// deadLetter writes an undecodable input record to dlq.events when
// Config.DeadLetters is set.
func (p *Processor) deadLetter(ctx goka.Context, topic string, msg interface{}) {
	bad, ok := msg.(*groupkit.BadRecord)
	if !ok || !p.cfg.DeadLetters {
		return
	}
	ctx.Emit(DeadLetterStream, ctx.Key(), groupkit.NewDeadLetter(groupkit.Origin{Group: string(Group), Topic: topic, Partition: ctx.Partition(), Offset: ctx.Offset(), Key: ctx.Key()},
		bad.Raw, groupkit.DecodeReason(bad.Err), bad.Err, p.cfg.Clock.Now()))
	p.m.dead.Inc()
}

// RelayGraph returns the relay group graph: alerts.events and the
// "desired" commands of commands.devices in, notes keyed by device out to
// the state group's loop topic (the inputs have fewer partitions than
// raw.*, so the state group cannot read them itself).
func (p *Processor) RelayGraph() *goka.GroupGraph {
	return goka.DefineGroup(RelayGroup,
		goka.Input(topics.Alerts, groupkit.AvroCodec[schemas.Alert]{Serde: p.serde, Topic: topics.Alerts}, p.relay),
		goka.Input(topics.Commands, groupkit.AvroCodec[schemas.DeviceCommand]{Serde: p.serde, Topic: topics.Commands}, p.relayDesired),
		goka.Output(LoopStream, groupkit.JSONCodec[alertNote]{}),
	)
}

func (p *Processor) bad(ctx goka.Context, topic string, why string, err error) {
	p.m.bad.WithLabelValues(topic).Inc()
	if ok, held := p.limiter.Allow(time.Now()); ok {
		p.cfg.Log.Warn("skipping record", "group", Group, "topic", topic, "partition", ctx.Partition(), "offset", ctx.Offset(),
			"key", ctx.Key(), "reason", why, "err", err, "similar_lines_suppressed", held)
	}
}

func load(ctx goka.Context) *shadow {
	if s, ok := ctx.Value().(*shadow); ok && s != nil {
		return s
	}
	return &shadow{}
}

func (p *Processor) onSensor(ctx goka.Context, msg interface{}) {
	p.m.records.WithLabelValues(topics.RawSensor).Inc()
	r, ok := msg.(*schemas.SensorReading)
	switch {
	case !ok:
		p.bad(ctx, topics.RawSensor, "undecodable", badErr(msg))
		p.deadLetter(ctx, topics.RawSensor, msg)
		return
	case ctx.Key() == "":
		p.bad(ctx, topics.RawSensor, "no device id key", nil)
		return
	case r.Metric == "" || math.IsNaN(r.Value) || math.IsInf(r.Value, 0):
		p.bad(ctx, topics.RawSensor, "empty metric or non-finite value", nil)
		return
	}
	now := p.cfg.Clock.Now().UnixMilli()
	s := load(ctx)
	ts := r.TS.UnixMilli()
	s.seen(r.Tenant, ts, r.IngestedAt.UnixMilli(), now, !r.Replayed)
	if r.Metric == decode.MetricOffline && !r.Replayed {
		// A death certificate (Sparkplug B NDEATH, DDEATH): offline now,
		// not after the silence timeout.
		s.Online = false
	}
	s.metric(r.Metric, ts, r.Value, p.cfg.BatteryMetrics)
	s.attrs(ts, r.Attrs, p.cfg.FirmwareAttrs)
	p.save(ctx, s)
}

func (p *Processor) onGPS(ctx goka.Context, msg interface{}) {
	p.m.records.WithLabelValues(topics.RawGPS).Inc()
	r, ok := msg.(*schemas.GPSFix)
	switch {
	case !ok:
		p.bad(ctx, topics.RawGPS, "undecodable", badErr(msg))
		p.deadLetter(ctx, topics.RawGPS, msg)
		return
	case ctx.Key() == "":
		p.bad(ctx, topics.RawGPS, "no device id key", nil)
		return
	case !(r.Lat >= -90 && r.Lat <= 90 && r.Lon >= -180 && r.Lon <= 180):
		p.bad(ctx, topics.RawGPS, "position out of range", nil)
		return
	}
	now := p.cfg.Clock.Now().UnixMilli()
	s := load(ctx)
	ts := r.TS.UnixMilli()
	s.seen(r.Tenant, ts, r.IngestedAt.UnixMilli(), now, !r.Replayed)
	s.position(ts, r.Lat, r.Lon)
	s.attrs(ts, r.Attrs, p.cfg.FirmwareAttrs)
	p.save(ctx, s)
}

func (p *Processor) onAlert(ctx goka.Context, msg interface{}) {
	p.m.records.WithLabelValues(string(LoopStream)).Inc()
	n, ok := msg.(*alertNote)
	if ok && n.Kind == noteDesired {
		s := load(ctx)
		if n.Tenant != "" && s.Tenant == "" {
			s.Tenant = n.Tenant
		}
		if s.setDesired(n.Desired) {
			s.Updated = p.cfg.Clock.Now().UnixMilli()
			p.save(ctx, s)
		}
		return
	}
	if !ok || n.AlertID == "" {
		p.bad(ctx, string(LoopStream), "bad alert note", nil)
		return
	}
	s := load(ctx)
	s.alert(n)
	s.Updated = p.cfg.Clock.Now().UnixMilli()
	p.save(ctx, s)
}

// onTick is the wall-clock visitor: it marks silent devices offline.
func (p *Processor) onTick(ctx goka.Context, msg interface{}) {
	now := groupkit.TickTime(msg)
	if now.IsZero() {
		now = p.cfg.Clock.Now()
	}
	s, ok := ctx.Value().(*shadow)
	if !ok || s == nil {
		return
	}
	if s.checkOnline(now.UnixMilli(), p.cfg.OfflineAfter.Milliseconds()) {
		p.m.offline.Inc()
		p.save(ctx, s)
	}
}

// save stores the shadow and emits it to state.latest, unless no record
// of the device has been seen yet: a shadow without an event time (an
// alert relayed before the device's first reading reached this group; the
// topics are not ordered against each other) would go out with ts and
// last_seen at the epoch, which no consumer can use (the sink
// dead-lettered it as ts_out_of_range). It is kept in the table, and the
// first reading's state carries it.
func (p *Processor) save(ctx goka.Context, s *shadow) {
	ctx.SetValue(s)
	if s.LastSeen <= 0 {
		p.m.unseen.Inc()
		return
	}
	ctx.Emit(Stream, ctx.Key(), s.record(identity.DeviceOf(ctx.Key())))
	p.m.emitted.Inc()
}

func (p *Processor) relay(ctx goka.Context, msg interface{}) {
	p.m.records.WithLabelValues(topics.Alerts).Inc()
	a, ok := msg.(*schemas.Alert)
	if !ok {
		p.bad(ctx, topics.Alerts, "undecodable", badErr(msg))
		return
	}
	// The alerts group keys an alert as the reading that fired it: the
	// shadow's key (the tenant-qualified device, identity.Key).
	key := ctx.Key()
	if key == "" && a.DeviceID != "" {
		key = identity.Key(a.Tenant, a.DeviceID)
	}
	if key == "" || a.AlertID == "" {
		p.bad(ctx, topics.Alerts, "alert without device or id", nil)
		return
	}
	ctx.Emit(LoopStream, key, &alertNote{AlertID: a.AlertID, State: a.State, Tenant: a.Tenant, FiredAt: a.FiredAt.UnixMilli()})
	p.m.relayed.Inc()
}

// relayDesired forwards a "desired" command's key → value payload to the
// state group; other commands are the bridge's.
func (p *Processor) relayDesired(ctx goka.Context, msg interface{}) {
	c, ok := msg.(*schemas.DeviceCommand)
	if !ok {
		p.m.records.WithLabelValues(topics.Commands).Inc()
		p.bad(ctx, topics.Commands, "undecodable", badErr(msg))
		return
	}
	if c.Name != DesiredCommand {
		return
	}
	p.m.records.WithLabelValues(topics.Commands).Inc()
	key := ctx.Key()
	if key == "" && c.DeviceID != "" {
		key = identity.Key(c.Tenant, c.DeviceID)
	}
	d, err := ParseDesired(c.Payload)
	switch {
	case key == "":
		p.bad(ctx, topics.Commands, "desired state without device", nil)
		return
	case err != nil:
		p.bad(ctx, topics.Commands, "desired state payload", err)
		return
	}
	ctx.Emit(LoopStream, key, &alertNote{Kind: noteDesired, Tenant: c.Tenant, Desired: d})
	p.m.relayed.Inc()
}

// ParseDesired reads a desired-state payload (control.ParseDesired).
func ParseDesired(payload string) (map[string]string, error) { return control.ParseDesired(payload) }

func badErr(msg interface{}) error {
	if b, ok := msg.(*groupkit.BadRecord); ok {
		return b
	}
	return fmt.Errorf("unexpected value %T", msg)
}

// Tick runs one wall-clock check over every device now, with the clock's
// time. Run ticks by itself every TickInterval; Tick is for tests and
// tools.
func (p *Processor) Tick(ctx context.Context) (int64, error) {
	p.m.ticks.Inc()
	n, err := p.TickAll(ctx, p.cfg.Clock.Now())
	p.m.visited.Add(float64(n))
	return n, err
}

// ErrNotLocal means the device's partition is not assigned to this
// instance.
var ErrNotLocal = errors.New("device partition not assigned to this instance")

// ErrNotFound means no state is known for the device.
var ErrNotFound = errors.New("device not found")

// Local returns the device's state from this instance's group table. The
// error wraps ErrNotLocal when another instance owns the device's
// partition, ErrNotFound when the device is unknown.
func (p *Processor) Local(device string) (*schemas.DeviceState, error) {
	proc := p.Proc.Load()
	if proc == nil || !p.Running.Load() {
		return nil, fmt.Errorf("%w: state group not running", ErrNotLocal)
	}
	v, err := proc.Get(device)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotLocal, err)
	}
	s, ok := v.(*shadow)
	if !ok || s == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, device)
	}
	return s.record(identity.DeviceOf(device)), nil
}

// Run runs the state group and the alert relay against the cluster until
// ctx is done or either fails, ticking every TickInterval. extra options
// are applied to both processors after the connection options.
func (p *Processor) Run(ctx context.Context, k groupkit.Kafka, extra ...goka.ProcessorOption) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	prep := []string{topics.RawSensor, topics.RawGPS, topics.Alerts, topics.Commands, topics.StateLatest}
	if p.cfg.DeadLetters {
		prep = append(prep, topics.DLQ)
	}
	err := p.serde.Prepare(pctx, prep...)
	cancel()
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	proc, err := goka.NewProcessor(k.Brokers, p.Graph(), append(append(k.ProcessorOptions(string(Group)), p.codec.RebalanceOption()), extra...)...)
	if err != nil {
		return fmt.Errorf("state processor: %w", err)
	}
	relay, err := goka.NewProcessor(k.Brokers, p.RelayGraph(), append(k.ProcessorOptions(string(RelayGroup)), extra...)...)
	if err != nil {
		return fmt.Errorf("state alert relay: %w", err)
	}
	p.Proc.Store(proc)
	g, gctx := errgroup.WithContext(ctx)
	relayReady := make(chan struct{})
	g.Go(func() error {
		return groupkit.Run(gctx, proc, groupkit.RunOptions{
			Name: string(Group), Every: p.cfg.TickInterval, Clock: p.cfg.Clock, Log: p.cfg.Log,
			OnReady: func() {
				p.Running.Store(true)
				close(relayReady)
				p.cfg.Log.Info("state group running", "offline_after", p.cfg.OfflineAfter, "tick", p.cfg.TickInterval)
			},
			OnStop: func() { p.Running.Store(false) },
			OnTick: func(n int64, _ error) {
				p.m.ticks.Inc()
				p.m.visited.Add(float64(n))
			},
		})
	})
	g.Go(func() error {
		// The relay writes into the loop topic, which the state processor
		// creates; start it once the state group runs.
		select {
		case <-gctx.Done():
			return nil
		case <-relayReady:
		}
		err := relay.Run(gctx)
		switch {
		case err == nil || errors.Is(err, context.Canceled):
			return nil
		case gctx.Err() != nil:
			// Stopped while starting (goka: "context closed while waiting
			// for startup tables"): a clean stop.
			p.cfg.Log.Info("alert relay stopped during shutdown", "err", err)
			return nil
		}
		return fmt.Errorf("state alert relay: %w", err)
	})
	return g.Wait()
}
