package apps

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lovoo/goka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Processor is one app's goka group ("app-NAME"): an input edge per source
// topic and the output to the target topic. Build it with New, run it with
// Run or run Graph under goka.WithTester.
type Processor struct {
	app   *App
	serde *schemas.Serde
	log   *slog.Logger
	m     appMetrics
	lim   groupkit.Limiter
	cfg   Config
	clock func() time.Time
	win   *features.Windows // GROUP BY ..., TUMBLE: the features engine
	// table is the group-table codec of a stateful app (join, window),
	// behind a decoded-state cache; rebalance resets the cache.
	table     goka.Codec
	rebalance goka.ProcessorOption
	groupkit.Handle
}

// Config holds a Processor's optional settings; the zero value works.
type Config struct {
	// Registerer gets the app's metrics, labelled app=NAME (nil = none).
	Registerer prometheus.Registerer
	// Log receives the app's log lines (default discards).
	Log *slog.Logger
	// Revocations, for a share, is consulted before every shared record:
	// under a revoked agreement nothing more is shared (nil = never
	// revoked). Run waits until it has read the revocations of the past.
	Revocations *Revocations
	// Clock is the wall clock of the evidence ticks (default the system
	// clock).
	Clock groupkit.Clock
	// TickInterval is how often a share app checks for hours whose
	// evidence is due, and a join or window app for idle keys (default
	// 10s).
	TickInterval time.Duration
	// TableFlush is how often a join or window app writes its group
	// table behind (default features.DefaultTableFlush).
	TableFlush time.Duration
	// Labels is the device registry a linked join (join.link) reads the
	// devices' labels from; Run waits until it is ready. A linked join
	// without it does not start.
	Labels Labels
}

// Labels is the device registry as a linked join reads it
// (*registry.View).
type Labels interface {
	Device(tenant, id string) (*registry.Device, bool)
	WaitReady(ctx context.Context) error
}

// New returns the processor of app. serde must know the target topic's
// schema (NewSerde).
func New(app *App, serde *schemas.Serde, cfg Config) *Processor {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = groupkit.SystemClock{}
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 10 * time.Second
	}
	if cfg.TableFlush <= 0 {
		cfg.TableFlush = features.DefaultTableFlush
	}
	p := &Processor{app: app, serde: serde, cfg: cfg, clock: cfg.Clock.Now, log: cfg.Log.With("app", app.Name),
		m: metricsFor(cfg.Registerer, app.Name), Handle: groupkit.Handle{Name: app.Group()}}
	if app.Window != nil {
		// Checked by Parse; the app's lateness, the features group's idle close.
		p.win, _ = features.NewWindows(app.Window.Size, app.Lateness, features.DefaultIdleTimeout)
		var inner goka.Codec = features.WindowStateCodec()
		if app.Share != nil {
			inner = withEvidence{inner} // a window share's evidence shares the table
		}
		c := groupkit.NewCachedCodec[features.WindowState](inner)
		p.table, p.rebalance = c, c.RebalanceOption()
	}
	if app.Join != nil {
		c := groupkit.NewCachedCodec[joinState](joinCodec{})
		p.table, p.rebalance = c, c.RebalanceOption()
	}
	return p
}

// NewSerde returns a Serde that also knows the value schema of every
// app's target topic (schemas.AppRecordSchema).
func NewSerde(reg *sr.Client, apps []*App) (*schemas.Serde, error) {
	m := map[string]string{}
	for _, a := range apps {
		m[a.Target] = schemas.AppRecordSchema()
	}
	return schemas.NewSerde(reg, schemas.WithSchemas(m))
}

// Graph returns the app's group graph.
func (p *Processor) Graph() *goka.GroupGraph {
	var edges []goka.Edge
	for _, t := range p.app.Topics {
		edges = append(edges, goka.Input(goka.Stream(t), recordCodec{serde: p.serde, topic: t}, p.process))
	}
	edges = append(edges, goka.Output(goka.Stream(p.app.Target), groupkit.AvroCodec[schemas.AppRecord]{Serde: p.serde, Topic: p.app.Target}))
	if p.app.Share != nil || (p.app.Join != nil && p.app.Join.Link != "") {
		// The loop carries a share's marks (evidence per agreement and
		// hour: each shared record is counted under its hour's key in the
		// group table, and the wall-clock tick writes an hour's evidence
		// once it is over) and a linked join's records to their link key.
		edges = append(edges, goka.Loop(groupkit.JSONCodec[shareMark]{}, p.onLoop))
	}
	switch {
	case p.app.Join != nil:
		// A join share's evidence states share the join's table (joinCodec
		// reads both); the tick visits both.
		edges = append(edges,
			goka.Persist(p.table),
			goka.Visitor(groupkit.TickVisitor, p.onJoinTick),
		)
	case p.win != nil:
		// A window share's evidence states share the windows' table
		// (withEvidence); the tick visits both.
		edges = append(edges,
			goka.Persist(p.table),
			goka.Visitor(groupkit.TickVisitor, p.onWindowTick),
		)
	case p.app.Share != nil:
		edges = append(edges,
			goka.Persist(groupkit.JSONCodec[evidenceState]{}),
			goka.Visitor(groupkit.TickVisitor, p.onTick),
		)
	}
	if p.app.Share != nil {
		edges = append(edges, goka.Output(goka.Stream(topics.ThirdPartySharing), groupkit.AvroCodec[schemas.Envelope]{Serde: p.serde, Topic: topics.ThirdPartySharing}))
	}
	return goka.DefineGroup(goka.Group(p.app.Group()), edges...)
}

func (p *Processor) process(ctx goka.Context, msg interface{}) {
	topic := string(ctx.Topic())
	p.m.in.Inc()
	if bad, ok := msg.(*groupkit.BadRecord); ok {
		p.m.bad.Inc()
		p.warn("skipping an undecodable record", ctx, bad.Err)
		return
	}
	src := Source{Topic: topic, Partition: ctx.Partition(), Offset: ctx.Offset(), Key: ctx.Key(), Value: msg.(map[string]any)}
	if p.win != nil {
		p.windowed(ctx, src)
		return
	}
	if p.app.Join != nil {
		p.joined(ctx, src)
		return
	}
	rec, out, err := p.app.apply(src)
	if err != nil {
		p.m.errors.Inc()
		p.warn("query failed on a record; it counts as filtered", ctx, err)
	}
	switch out {
	case filtered:
		p.m.filtered.Inc()
	case skipped:
		p.m.skipped.Inc()
	case emitted:
		if sh := p.app.Share; sh != nil {
			if r := p.cfg.Revocations; r != nil {
				if _, revoked := r.Revoked(sh.Agreement); revoked {
					p.m.revoked.Inc()
					return
				}
			}
			ctx.Loopback(evidenceKey(hourOf(rec.TS.UnixMilli())), markOf(ctx, rec.TS.UnixMilli()))
		}
		ctx.Emit(goka.Stream(p.app.Target), ctx.Key(), rec)
		p.m.out.Inc()
	}
}

func (p *Processor) warn(msg string, ctx goka.Context, err error) {
	if ok, held := p.lim.Allow(time.Now()); ok {
		p.log.Warn(msg, "topic", ctx.Topic(), "partition", ctx.Partition(), "offset", ctx.Offset(), "key", ctx.Key(), "err", err, "similar_lines_suppressed", held)
	}
}

// Run runs the group until ctx is done or it fails.
func (p *Processor) Run(ctx context.Context, k groupkit.Kafka, extra ...goka.ProcessorOption) error {
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	prep := []string{p.app.Target}
	if p.app.Share != nil {
		prep = append(prep, topics.ThirdPartySharing)
	}
	err := p.serde.Prepare(pctx, prep...)
	cancel()
	if err != nil {
		return fmt.Errorf("app %s: %w", p.app.Name, err)
	}
	if r := p.cfg.Revocations; r != nil && p.app.Share != nil {
		if err := r.Wait(ctx); err != nil {
			return nil // stopped while waiting
		}
	}
	if j := p.app.Join; j != nil && j.Link != "" {
		if p.cfg.Labels == nil {
			return fmt.Errorf("app %s: join.link %s needs the device registry (%s), which this process does not read", p.app.Name, j.Link, topics.DevicesRegistry)
		}
		if err := p.cfg.Labels.WaitReady(ctx); err != nil {
			return nil // stopped while waiting
		}
	}
	opts := k.ProcessorOptions(p.app.Group())
	if p.table != nil {
		// Joins and windows change their key's state on every record:
		// write the table behind (the latest state per key every
		// TableFlush, offsets committed after it), as the features group
		// does, rather than one changelog record per input record.
		opts = append(opts, k.WriteBehindOptions(p.app.Group(), p.cfg.TableFlush)...)
		opts = append(opts, p.rebalance)
	}
	opts = append(opts, extra...)
	proc, err := goka.NewProcessor(k.Brokers, p.Graph(), opts...)
	if err != nil {
		return fmt.Errorf("app %s: %w", p.app.Name, err)
	}
	p.Proc.Store(proc)
	every := time.Duration(0)
	if p.app.Share != nil || p.win != nil || p.app.Join != nil {
		every = p.cfg.TickInterval
	}
	return groupkit.Run(ctx, proc, groupkit.RunOptions{
		Name: p.app.Group(), Log: p.log, Every: every, Clock: p.cfg.Clock,
		OnReady: func() {
			p.Running.Store(true)
			p.log.Info("app running", "sources", p.app.Topics, "target", p.app.Target)
		},
		OnStop: func() { p.Running.Store(false) },
	})
}

// recordCodec decodes any Avro record of a source topic into
// map[string]any with its writer schema; undecodable values become
// *groupkit.BadRecord.
type recordCodec struct {
	serde *schemas.Serde
	topic string
}

// Encode passes []byte through and encodes a typed record (such as
// *schemas.SensorReading) with the topic's schema; apps never write their
// sources, tests and tools do.
func (c recordCodec) Encode(v interface{}) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return c.serde.Encode(context.Background(), c.topic, v)
}

func (c recordCodec) Decode(b []byte) (interface{}, error) {
	_, v, err := c.serde.DecodeAny(context.Background(), b)
	if err != nil {
		if groupkit.Permanent(err) {
			return &groupkit.BadRecord{Topic: c.topic, Err: err, Size: len(b), Raw: b}, nil
		}
		return nil, fmt.Errorf("decoding %s value: %w", c.topic, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &groupkit.BadRecord{Topic: c.topic, Err: fmt.Errorf("value is a %T, not a record", v), Size: len(b), Raw: b}, nil
	}
	return m, nil
}

type appMetrics struct {
	in, out, filtered, skipped, errors, bad, revoked, evidence, tooLate prometheus.Counter
	matched, unmatched, evicted, duplicates, unlinked                   prometheus.Counter
}

func metricsFor(reg prometheus.Registerer, app string) appMetrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "drover_app_records_total",
		Help: "Records of stream apps, by app and outcome: in (read), out (written to the target), filtered (WHERE false or failed), skipped (other tenant or device), errors (query failed on a record), bad (undecodable), revoked (not shared: agreement revoked), evidence (evidence records written), too_late (behind a window's or join's allowed lateness), join_matched and join_unmatched (left records written with and without a right record within the tolerance), join_evicted (right records dropped from a full buffer), join_unlinked (records of a linked join whose device has no such label), duplicates (redelivered records a window app had applied, or a share had counted in its evidence, already).",
	}, []string{"app", "outcome"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
				vec = are.ExistingCollector.(*prometheus.CounterVec)
			}
		}
	}
	l := func(o string) prometheus.Counter { return vec.WithLabelValues(app, o) }
	return appMetrics{in: l("in"), out: l("out"), filtered: l("filtered"), skipped: l("skipped"), errors: l("errors"), bad: l("bad"),
		revoked: l("revoked"), evidence: l("evidence"), tooLate: l("too_late"),
		matched: l("join_matched"), unmatched: l("join_unmatched"), evicted: l("join_evicted"), duplicates: l("duplicates"), unlinked: l("join_unlinked")}
}
