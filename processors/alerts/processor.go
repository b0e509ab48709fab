package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lovoo/goka"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Group is the goka group of the alerts processor.
const Group goka.Group = "alerts"

// Table is the group table (key = device id; value = the device's rule
// state, Avro, see tableCodec). Loop is the group's loop topic, which
// carries the offline ticks. goka creates both when missing.
var (
	Table = goka.GroupTable(Group)
	Loop  = goka.Stream(string(Group) + "-loop")
)

// Streams the group reads and writes.
var (
	InputSensor = goka.Stream(topics.RawSensor)
	InputGPS    = goka.Stream(topics.RawGPS)
	Output      = goka.Stream(topics.Alerts)
	DeadLetter  = goka.Stream(topics.DLQ)
)

// Processor is the alerts group: a goka processor plus the offline sweep.
type Processor struct {
	cfg     *config
	eval    *evaluator
	metrics *metrics
	log     *slog.Logger
	graph   *goka.GroupGraph
	stores  *storeSet
	cache   *groupkit.CachedCodec[deviceState] // group-table codec with the decoded-state cache

	brokers []string
	gopts   []goka.ProcessorOption
	gp      atomic.Pointer[goka.Processor]
	runs    atomic.Int32

	// behind holds, per partition, how old (wall clock minus Kafka
	// timestamp) the last input record was when it was processed.
	behindMu sync.Mutex
	behind   map[int32]time.Duration

	emitOnce sync.Once
	emitter  *goka.Emitter
	emitErr  error
}

// Graph returns the group graph with the given options (rules, clock, ...),
// e.g. to Validate it or to compose it into another runner. It does not
// connect anywhere.
func Graph(opts ...Option) (*goka.GroupGraph, error) {
	p, err := newProcessor(nil, opts)
	if err != nil {
		return nil, err
	}
	return p.graph, nil
}

// NewProcessor builds the alerts processor for brokers. With WithTester the
// processor runs on goka's tester and brokers may be nil. It fails when the
// options are inconsistent or the metrics cannot be registered.
func NewProcessor(brokers []string, opts ...Option) (*Processor, error) {
	p, err := newProcessor(brokers, opts)
	if err != nil {
		return nil, err
	}
	var gopts []goka.ProcessorOption
	if tt := p.cfg.tester; tt != nil {
		gopts = append(gopts,
			goka.WithHasher(groupkit.KafkaHasher()),
			goka.WithLogger(gokaLogger{p.log}),
			goka.WithTester(tt),
			goka.WithStorageBuilder(p.stores.wrap(tt.StorageBuilder())),
		)
	} else {
		k := p.kafka()
		if len(k.Brokers) == 0 {
			return nil, errors.New("alerts: no Kafka brokers")
		}
		gopts = append(gopts, k.ProcessorOptions(string(Group))...)
		gopts = append(gopts, goka.WithStorageBuilder(p.stores.wrap(k.TableStorage(string(Group)))), p.cache.RebalanceOption())
		brokers = k.Brokers
	}
	gopts = append(gopts, p.cfg.gokaOpts...)
	gp, err := goka.NewProcessor(brokers, p.graph, gopts...)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	p.gp.Store(gp)
	p.gopts = gopts
	p.brokers = brokers
	return p, nil
}

// kafka returns the connection settings: WithKafka's, with the brokers
// given to NewProcessor when there are any, else groupkit.NewKafka.
func (p *Processor) kafka() groupkit.Kafka {
	var k groupkit.Kafka
	if p.cfg.kafka != nil {
		k = *p.cfg.kafka
		if len(p.brokers) > 0 {
			k.Brokers = p.brokers
		}
	} else {
		k = groupkit.NewKafka(p.brokers)
	}
	if k.Log == nil {
		k.Log = p.log
	}
	return k
}

func newProcessor(brokers []string, opts []Option) (*Processor, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.registerer)
	if err != nil {
		return nil, fmt.Errorf("alerts: registering metrics: %w", err)
	}
	p := &Processor{
		cfg:     cfg,
		eval:    &evaluator{rules: cfg.rules, horizon: cfg.horizon, alertOnReplayed: cfg.alertOnReplayed, offlineTimeout: cfg.offlineTimeout},
		metrics: m,
		log:     cfg.log.With("group", string(Group)),
		stores:  &storeSet{m: map[*trackedStorage]struct{}{}, table: string(Table)},
		brokers: brokers,
		behind:  map[int32]time.Duration{},
		cache:   groupkit.NewCachedCodec[deviceState](tableCodec{}),
	}
	edges := []goka.Edge{
		goka.Input(InputSensor, inputCodec{serde: cfg.serde, topic: topics.RawSensor}, p.consume),
		goka.Input(InputGPS, inputCodec{serde: cfg.serde, topic: topics.RawGPS}, p.consume),
		goka.Loop(loopCodec{}, p.tick),
		goka.Output(Output, serdeCodec[schemas.Alert]{serde: cfg.serde, topic: topics.Alerts}),
		goka.Persist(p.cache),
	}
	if cfg.deadLetters {
		edges = append(edges, goka.Output(DeadLetter, serdeCodec[schemas.DeadLetter]{serde: cfg.serde, topic: topics.DLQ}))
	}
	p.graph = goka.DefineGroup(Group, edges...)
	if err := p.graph.Validate(); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	return p, nil
}

// catchingUp reports whether partition is processing a backlog (see
// WithCatchUpDelay).
func (p *Processor) catchingUp(partition int32) bool {
	if p.cfg.catchUpDelay <= 0 {
		return false
	}
	p.behindMu.Lock()
	d, ok := p.behind[partition]
	p.behindMu.Unlock()
	return ok && d > p.cfg.catchUpDelay
}

// Rules returns the processor's rule set.
func (p *Processor) Rules() *RuleSet { return p.cfg.rules }

// Run runs the processor and the offline sweep until ctx is done or the
// processor fails; it then drains in-flight records, commits and closes.
// It prepares the serde first, so a missing schema fails at start.
func (p *Processor) Run(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, codecTimeout)
	err := p.cfg.serde.Prepare(pctx, topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DLQ)
	cancel()
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	// A goka processor runs once; running again (drover process restarts a
	// failed group) builds a fresh one with the same options, and a fresh
	// tick emitter.
	gp := p.gp.Load()
	if p.runs.Add(1) > 1 {
		if gp, err = goka.NewProcessor(p.brokers, p.graph, p.gopts...); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		p.gp.Store(gp)
		p.emitOnce, p.emitter, p.emitErr = sync.Once{}, nil, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stop := context.WithCancel(gctx)
	defer stop()
	g.Go(func() error {
		defer stop()
		if err := gp.Run(runCtx); err != nil {
			return fmt.Errorf("alerts processor: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		t := time.NewTicker(p.cfg.checkInterval)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return nil
			case <-t.C:
				if !gp.Recovered() {
					continue
				}
				if _, err := p.Sweep(runCtx); err != nil && runCtx.Err() == nil {
					p.log.Warn("offline sweep failed", "err", err)
				}
			}
		}
	})
	err = g.Wait()
	if ferr := p.finishEmitter(); ferr != nil && err == nil {
		err = ferr
	}
	return err
}

// Ready reports nil once the processor has recovered its table and runs.
func (p *Processor) Ready(context.Context) error {
	if gp := p.gp.Load(); gp == nil || !gp.Recovered() {
		return errors.New("alerts: recovering group table")
	}
	return nil
}

// Run builds the alerts processor for brokers and runs it until ctx is done
// (see Processor.Run).
func Run(ctx context.Context, brokers []string, opts ...Option) error {
	p, err := NewProcessor(brokers, opts...)
	if err != nil {
		return err
	}
	return p.Run(ctx)
}

// state returns the device's state from the table, or a fresh one.
func state(ctx goka.Context) *deviceState {
	if v, ok := ctx.Value().(*deviceState); ok && v != nil {
		return v
	}
	return &deviceState{}
}

// applied reports whether the current record was applied to st before (a
// redelivery), re-emitting the events of st's outbox when it is that
// record, and otherwise notes it as the newest applied record.
func (p *Processor) applied(ctx goka.Context, st *deviceState) (source string, done bool) {
	source = string(ctx.Topic()) + "/" + strconv.Itoa(int(ctx.Partition()))
	off := ctx.Offset()
	if last, ok := st.Offsets[source]; ok && off <= last {
		if ob := st.Outbox; ob != nil && ob.Source == source && ob.Offset == off {
			for i := range ob.Events {
				ctx.Emit(Output, ctx.Key(), &ob.Events[i])
			}
		}
		return source, true
	}
	if st.Offsets == nil {
		st.Offsets = map[string]int64{}
	}
	st.Offsets[source] = off
	return source, false
}

// commit stores st, when the record changed it, and emits events (the
// outbox goes into the state with them, so a redelivery of this record
// after a crash emits them again). A record that changed nothing the table
// keeps (another metric of the same message, say) writes nothing.
func (p *Processor) commit(ctx goka.Context, st *deviceState, source string, events []schemas.Alert) {
	if len(events) > 0 {
		st.Outbox = &outbox{Source: source, Offset: ctx.Offset(), Events: events}
		st.dirty = true
	} else if st.dirty {
		st.Outbox = nil
	}
	if st.dirty {
		ctx.SetValue(st)
	}
	for i := range events {
		a := &events[i]
		ctx.Emit(Output, ctx.Key(), a)
		switch a.State {
		case StateFiring:
			p.metrics.fired.WithLabelValues(a.Rule, a.Severity).Inc()
			p.log.Info("alert firing", "rule", a.Rule, "device", a.DeviceID, "tenant", a.Tenant, "alert_id", a.AlertID, "severity", a.Severity, "message", a.Message)
		case StateResolved:
			p.metrics.resolved.WithLabelValues(a.Rule).Inc()
			p.log.Info("alert resolved", "rule", a.Rule, "device", a.DeviceID, "tenant", a.Tenant, "alert_id", a.AlertID, "message", a.Message)
		}
	}
}

// consume is the callback of raw.sensor and raw.gps.
func (p *Processor) consume(ctx goka.Context, msg any) {
	p.metrics.records.WithLabelValues(string(ctx.Topic())).Inc()
	in, ok := msg.(*inRecord)
	if !ok {
		ctx.Fail(fmt.Errorf("alerts: unexpected message type %T on %s", msg, ctx.Topic()))
		return
	}
	if in.Err != nil {
		if !permanent(in.Err) {
			// The registry is unreachable: stop rather than lose the record;
			// it is consumed again after the restart.
			ctx.Fail(fmt.Errorf("alerts: decoding %s record at offset %d: %w", ctx.Topic(), ctx.Offset(), in.Err))
			return
		}
		p.deadLetter(ctx, "decode", in.Raw, in.Err)
		return
	}
	// The key is the tenant-qualified device (identity.Key); a record
	// written before keys were tenant-qualified has the bare device id.
	key := ctx.Key()
	var recDevice, recTenant string
	var ts time.Time
	var replayed bool
	var value = 0.0
	if in.Sensor != nil {
		recDevice, recTenant, ts, replayed, value = in.Sensor.DeviceID, in.Sensor.Tenant, in.Sensor.TS, in.Sensor.Replayed, in.Sensor.Value
	} else {
		recDevice, recTenant, ts, replayed = in.GPS.DeviceID, in.GPS.Tenant, in.GPS.TS, in.GPS.Replayed
	}
	device := recDevice
	switch {
	case key == "" && recDevice == "":
		p.deadLetter(ctx, "missing_device", in.Raw, errors.New("record has neither a key nor a device_id"))
		return
	case recDevice == "":
		device = identity.DeviceOf(key)
	case key != "" && !identity.KeyMatches(key, recTenant, recDevice):
		p.deadLetter(ctx, "key_mismatch", in.Raw, fmt.Errorf("record key %q names another device than tenant %q, device_id %q", key, recTenant, recDevice))
		return
	}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		p.metrics.evalErrors.WithLabelValues("", "invalid_value").Inc()
	}
	st := state(ctx)
	source, done := p.applied(ctx, st)
	if done {
		return
	}
	if st.DeviceID == "" {
		st.DeviceID = device
		st.dirty = true
	}
	now := p.cfg.clock.Now()
	if kts := ctx.Timestamp(); !kts.IsZero() {
		p.behindMu.Lock()
		p.behind[ctx.Partition()] = now.Sub(kts)
		p.behindMu.Unlock()
	}
	if !p.eval.live(ts, replayed, now) {
		reason := "old"
		if replayed {
			reason = "replayed"
		}
		p.metrics.suppressed.WithLabelValues(reason).Inc()
	}
	events := p.eval.retire(st, now)
	if in.Sensor != nil {
		rec := *in.Sensor
		rec.DeviceID = device
		events = append(events, p.eval.sensor(st, &rec, now)...)
	} else {
		fix := *in.GPS
		fix.DeviceID = device
		events = append(events, p.eval.gps(st, &fix, now)...)
	}
	p.commit(ctx, st, source, events)
}

// tick is the loop callback: check the device's offline rules now.
func (p *Processor) tick(ctx goka.Context, _ any) {
	p.metrics.records.WithLabelValues(string(ctx.Topic())).Inc()
	v, ok := ctx.Value().(*deviceState)
	if !ok || v == nil {
		return // unknown device (e.g. a stray tick): nothing to check
	}
	source, done := p.applied(ctx, v)
	if done {
		return
	}
	if v.DeviceID == "" {
		v.DeviceID = identity.DeviceOf(ctx.Key())
	}
	p.commit(ctx, v, source, p.eval.offline(v, p.cfg.clock.Now()))
}

// deadLetter counts, logs and (unless disabled) writes an input record the
// rules cannot be evaluated on to dlq.events, keeping its bytes: stage
// "process" (groupkit.DeadLetterStage), reason "undecodable" or
// "unknown_schema" for a value that cannot be decoded, else the metric's
// reason ("missing_device", "key_mismatch").
func (p *Processor) deadLetter(ctx goka.Context, reason string, raw []byte, cause error) {
	p.metrics.evalErrors.WithLabelValues("", reason).Inc()
	p.log.Warn("record not evaluated", "topic", string(ctx.Topic()), "partition", ctx.Partition(), "offset", ctx.Offset(), "key", ctx.Key(), "reason", reason, "err", cause)
	if !p.cfg.deadLetters {
		return
	}
	dlReason := reason
	if reason == "decode" {
		dlReason = groupkit.DecodeReason(cause)
	}
	dl := groupkit.NewDeadLetter(groupkit.Origin{Group: string(Group), Topic: string(ctx.Topic()), Partition: ctx.Partition(), Offset: ctx.Offset(), Key: ctx.Key()},
		raw, dlReason, cause, p.cfg.clock.Now())
	ctx.Emit(DeadLetter, ctx.Key(), dl)
	p.metrics.deadLetters.Inc()
}

// gokaLogger sends goka's and sarama's chatter to slog at debug level.
type gokaLogger struct{ l *slog.Logger }

func (g gokaLogger) Print(v ...any)                 { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Println(v ...any)               { g.l.Debug(fmt.Sprint(v...)) }
func (g gokaLogger) Printf(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }
