package features

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Group is the goka group of the features processor. Its group table
// (Table, topic "features-table") holds each device's open windows.
const Group goka.Group = "features"

// Table is the features group table.
var Table = goka.GroupTable(Group)

// Stream is the output stream: one Feature record per closed window and
// metric, key = device id.
const Stream goka.Stream = topics.Features

// DeadLetterStream receives undecodable input when Config.DeadLetters is
// set.
const DeadLetterStream goka.Stream = topics.DLQ

// Inputs are the streams the group consumes; they must have the same
// number of partitions.
var Inputs = goka.Streams{topics.RawSensor, topics.RawGPS}

// Processor is the features group: the graph, its callbacks and metrics.
// Build it with New; run it with Run, or run Graph with goka directly (as
// the tests do with goka.WithTester).
type Processor struct {
	cfg    Config
	serde  *schemas.Serde
	agg    *aggregator
	codec  goka.Codec                         // group-table codec: cache, or stateCodec without it
	cache  *groupkit.CachedCodec[deviceState] // decoded-state cache (nil: off; benchmarks compare)
	m      *metrics
	labels []string // window size labels, same order as agg.sizes

	groupkit.Handle
	limiter groupkit.Limiter // bad-record log lines

	recSensor, recGPS prometheus.Counter // p.m.records by topic, resolved once
}

// New validates cfg and returns the processor. serde encodes features and
// decodes raw records.
func New(serde *schemas.Serde, cfg Config) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Processor{Handle: groupkit.Handle{Name: string(Group)}, cfg: cfg, serde: serde, agg: newAggregator(cfg), m: newMetrics(cfg.Registerer)}
	p.cache = groupkit.NewCachedCodec[deviceState](stateCodec)
	p.codec = p.cache
	p.recSensor = p.m.records.WithLabelValues(topics.RawSensor)
	p.recGPS = p.m.records.WithLabelValues(topics.RawGPS)
	for _, s := range p.agg.sizes {
		p.labels = append(p.labels, (time.Duration(s) * time.Millisecond).String())
	}
	return p, nil
}

// Graph returns the group graph: inputs raw.sensor and raw.gps, the tick
// visitor, the persisted device state (versioned Avro, behind the
// decoded-state cache), the features output and, with
// Config.DeadLetters, dlq.events.
func (p *Processor) Graph() *goka.GroupGraph {
	edges := []goka.Edge{
		goka.Input(topics.RawSensor, groupkit.AvroCodec[schemas.SensorReading]{Serde: p.serde, Topic: topics.RawSensor}, p.onSensor),
		goka.Input(topics.RawGPS, groupkit.AvroCodec[schemas.GPSFix]{Serde: p.serde, Topic: topics.RawGPS}, p.onGPS),
		goka.Visitor(groupkit.TickVisitor, p.onTick),
		goka.Persist(p.codec),
		goka.Output(Stream, groupkit.AvroCodec[schemas.Feature]{Serde: p.serde, Topic: topics.Features}),
	}
	if p.cfg.DeadLetters {
		edges = append(edges, goka.Output(DeadLetterStream, groupkit.AvroCodec[schemas.DeadLetter]{Serde: p.serde, Topic: topics.DLQ}))
	}
	return goka.DefineGroup(Group, edges...)
}

func state(ctx goka.Context) *deviceState {
	if d, ok := ctx.Value().(*deviceState); ok && d != nil {
		return d
	}
	return &deviceState{}
}

// bad counts a skipped record and logs it (at most one line a second,
// with the number held back).
func (p *Processor) bad(ctx goka.Context, topic, why string, err error) {
	p.m.bad.WithLabelValues(topic).Inc()
	if ok, held := p.limiter.Allow(time.Now()); ok {
		p.cfg.Log.Warn("skipping record", "group", Group, "topic", topic, "partition", ctx.Partition(), "offset", ctx.Offset(),
			"key", ctx.Key(), "reason", why, "err", err, "similar_lines_suppressed", held)
	}
}

// accept checks the parts of a record every callback needs and counts a
// bad one. It returns the event time in ms.
func (p *Processor) accept(ctx goka.Context, topic string, msg interface{}, device string, ts time.Time) (int64, bool) {
	if topic == topics.RawSensor {
		p.recSensor.Inc()
	} else {
		p.recGPS.Inc()
	}
	if bad, ok := msg.(*groupkit.BadRecord); ok {
		p.bad(ctx, topic, "undecodable", bad.Err)
		if p.cfg.DeadLetters {
			ctx.Emit(DeadLetterStream, ctx.Key(), groupkit.NewDeadLetter(groupkit.Origin{Group: string(Group), Topic: topic, Partition: ctx.Partition(), Offset: ctx.Offset(), Key: ctx.Key()},
				bad.Raw, groupkit.DecodeReason(bad.Err), bad.Err, p.cfg.Clock.Now()))
			p.m.deadLetters.Inc()
		}
		return 0, false
	}
	if ctx.Key() == "" || device == "" {
		p.bad(ctx, topic, "no device id", nil)
		return 0, false
	}
	if ts.After(p.cfg.Clock.Now().Add(p.cfg.MaxFuture)) {
		p.m.future.Inc()
		return 0, false
	}
	return ts.UnixMilli(), true
}

func (p *Processor) onSensor(ctx goka.Context, msg interface{}) {
	r, _ := msg.(*schemas.SensorReading)
	var device string
	var ts time.Time
	if r != nil {
		device, ts = r.DeviceID, r.TS
	}
	tsMS, ok := p.accept(ctx, topics.RawSensor, msg, device, ts)
	if !ok {
		return
	}
	if r.Metric == "" || r.Metric == MotionMetric || math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		p.bad(ctx, topics.RawSensor, "empty or reserved metric name, or non-finite value", nil)
		return
	}
	d := state(ctx)
	if p.duplicate(ctx, topics.RawSensor, &d.SensorNext) {
		return
	}
	if r.Tenant != "" {
		d.Tenant = r.Tenant
	}
	out, oc := p.agg.addValue(d, ctx.Key(), r.Metric, tsMS, r.Value, p.cfg.Clock.Now().UnixMilli(), nil, nil)
	p.finish(ctx, d, out, oc)
}

func (p *Processor) onGPS(ctx goka.Context, msg interface{}) {
	r, _ := msg.(*schemas.GPSFix)
	var device string
	var ts time.Time
	if r != nil {
		device, ts = r.DeviceID, r.TS
	}
	tsMS, ok := p.accept(ctx, topics.RawGPS, msg, device, ts)
	if !ok {
		return
	}
	if !(r.Lat >= -90 && r.Lat <= 90 && r.Lon >= -180 && r.Lon <= 180) {
		p.bad(ctx, topics.RawGPS, "position out of range", nil)
		return
	}
	d := state(ctx)
	if p.duplicate(ctx, topics.RawGPS, &d.GPSNext) {
		return
	}
	if r.Tenant != "" {
		d.Tenant = r.Tenant
	}
	out, oc := p.agg.addFix(d, ctx.Key(), tsMS, r.Lat, r.Lon, p.cfg.Clock.Now().UnixMilli(), nil, nil)
	p.finish(ctx, d, out, oc)
}

// duplicate reports whether the record was applied to this device's state
// already (its offset is below *next) and counts it; otherwise it moves
// *next past the record. Offsets are per partition and a device's records
// stay on one partition, so this makes redelivery after a crash or a
// rebalance harmless. (If an input topic is ever deleted and recreated,
// reset the group too: its table holds the old offsets.)
func (p *Processor) duplicate(ctx goka.Context, topic string, next *int64) bool {
	off := ctx.Offset()
	if off < *next {
		p.m.duplicates.WithLabelValues(topic).Inc()
		return true
	}
	*next = off + 1
	return false
}

func (p *Processor) finish(ctx goka.Context, d *deviceState, out []emitted, oc []outcome) {
	for i, o := range oc {
		switch o {
		case lateUpdate:
			p.m.lateUpdates.WithLabelValues(p.labels[i]).Inc()
		case tooLate:
			p.m.lateDropped.WithLabelValues(p.labels[i]).Inc()
		}
	}
	p.emit(ctx, out)
	ctx.SetValue(d)
}

func (p *Processor) emit(ctx goka.Context, out []emitted) {
	for _, e := range out {
		p.m.emitted.WithLabelValues(string(e.reason)).Inc()
		ctx.Emit(Stream, ctx.Key(), e.f)
	}
}

// onTick is the wall-clock visitor: it closes the device's idle windows.
func (p *Processor) onTick(ctx goka.Context, msg interface{}) {
	now := groupkit.TickTime(msg)
	if now.IsZero() {
		now = p.cfg.Clock.Now()
	}
	d, ok := ctx.Value().(*deviceState)
	if !ok || d == nil {
		return
	}
	out := p.agg.tick(d, ctx.Key(), now.UnixMilli(), nil)
	if len(out) == 0 {
		return
	}
	p.emit(ctx, out)
	ctx.SetValue(d)
}

// Tick runs one wall-clock tick over every device now, with the clock's
// time, and returns the number of devices visited. Run ticks by itself
// every TickInterval; Tick is for tests and tools.
func (p *Processor) Tick(ctx context.Context) (int64, error) {
	p.m.ticks.Inc()
	n, err := p.TickAll(ctx, p.cfg.Clock.Now())
	p.m.tickVisited.Add(float64(n))
	return n, err
}

// Run runs the group against the cluster until ctx is done or the
// processor fails, ticking every TickInterval. extra options are applied
// after the connection options (tests pass goka.WithTester). It returns
// nil after a clean stop.
func (p *Processor) Run(ctx context.Context, k groupkit.Kafka, extra ...goka.ProcessorOption) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	prep := []string{topics.RawSensor, topics.RawGPS, topics.Features}
	if p.cfg.DeadLetters {
		prep = append(prep, topics.DLQ)
	}
	err := p.serde.Prepare(pctx, prep...)
	cancel()
	if err != nil {
		return fmt.Errorf("features: %w", err)
	}
	opts := k.ProcessorOptions(string(Group))
	if p.cfg.TableFlush > 0 {
		opts = append(opts, k.WriteBehindOptions(string(Group), p.cfg.TableFlush)...)
	}
	if p.cache != nil {
		opts = append(opts, p.cache.RebalanceOption())
	}
	opts = append(opts, extra...)
	proc, err := goka.NewProcessor(k.Brokers, p.Graph(), opts...)
	if err != nil {
		return fmt.Errorf("features processor: %w", err)
	}
	p.Proc.Store(proc)
	return groupkit.Run(ctx, proc, groupkit.RunOptions{
		Name: string(Group), Every: p.cfg.TickInterval, Clock: p.cfg.Clock, Log: p.cfg.Log,
		OnReady: func() {
			p.Running.Store(true)
			p.cfg.Log.Info("features group running", "windows", p.labels, "lateness", p.cfg.Lateness, "idle_timeout", p.cfg.IdleTimeout)
		},
		OnStop: func() { p.Running.Store(false) },
		OnTick: func(n int64, _ error) {
			p.m.ticks.Inc()
			p.m.tickVisited.Add(float64(n))
		},
	})
}
