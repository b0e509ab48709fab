package timescale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultGroup is the consumer group of the sink.
const DefaultGroup = "drover-sink"

// Group timeouts. A sink killed with SIGKILL stays a member of its group
// until its session times out, and a restarted sink's JoinGroup waits for
// it at most the rebalance timeout; franz-go's defaults (45 s and 60 s) kept
// a restarted sink out of work for a minute or more per kill. The session
// timeout is longer than the rebalance timeout on purpose: a live member
// must survive a whole rebalance plus the SyncGroup wait behind a dead
// leader without heartbeating (franz-go sends no heartbeats while it joins
// and syncs, and the embedded Kafka, kfake, does not keep a member alive
// while its JoinGroup is parked, unlike Apache Kafka), or the coordinator
// drops it silently and its request ends in "i/o timeout" (the chaos test's
// finding with the defaults).
const (
	DefaultSessionTimeout   = 20 * time.Second
	DefaultRebalanceTimeout = 10 * time.Second
)

// Config configures a Sink. Zero fields take the defaults named on them.
type Config struct {
	// Group is the Kafka consumer group; default DefaultGroup.
	Group string
	// Topics are consumed; default SinkTopics.
	Topics []string
	// AppRecords also consumes every stream app target topic (the
	// AppTopicPrefix ones, including those created while the sink runs,
	// found within AppTopicRefresh) into app_records; default false (the
	// command's --app-records defaults to true).
	AppRecords bool
	// BatchSize is the most records per database transaction; default 5000.
	BatchSize int
	// FlushInterval is the longest a record waits for its batch to fill
	// before it is written anyway; default 1s.
	FlushInterval time.Duration
	// Mode picks the schema path; default ModeAuto.
	Mode Mode
	// Layout holds retention, compression, partition and refresh settings;
	// default DefaultLayout (Timescale is decided by Mode and the database).
	Layout *Layout
	// Migrate applies the migrations at start; default true (nil).
	Migrate *bool
	// MaintenanceInterval is how often partitions are created ahead and
	// expired ones dropped; default 10m. Views refresh every
	// Layout.RefreshInterval.
	MaintenanceInterval time.Duration
	// RetryMin and RetryMax bound the backoff between attempts while the
	// database or registry fails; defaults 200ms and 10s.
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds writing and committing the last batch on
	// shutdown; default 15s.
	DrainTimeout time.Duration
	// SessionTimeout is how long the group coordinator keeps a member that
	// stopped heartbeating (e.g. killed with SIGKILL); default
	// DefaultSessionTimeout. Heartbeats go every SessionTimeout/5 (at most
	// 3s).
	SessionTimeout time.Duration
	// RebalanceTimeout bounds how long a rebalance waits for the members
	// to rejoin, and so how long a restarted sink waits for the members a
	// kill left behind; default DefaultRebalanceTimeout.
	RebalanceTimeout time.Duration
	// StallTimeout is how long one batch write may be pending (waiting or
	// failing) before Ready reports the sink cannot write; default twice
	// FlushInterval plus 5s.
	StallTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives the sink's logs; default slog.Default().
	Log *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if len(c.Topics) == 0 {
		c.Topics = SinkTopics
	}
	if c.BatchSize == 0 {
		c.BatchSize = 5000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.Mode == "" {
		c.Mode = ModeAuto
	}
	if c.Layout == nil {
		l := DefaultLayout(PathPostgres)
		c.Layout = &l
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = 10 * time.Minute
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 15 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 2*c.FlushInterval + 5*time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	for _, t := range c.Topics {
		if !slices.Contains(SinkTopics, t) {
			return fmt.Errorf("--topics: %q is not a topic the sink writes (known: %s)", t, strings.Join(SinkTopics, ", "))
		}
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 1_000_000:
		return fmt.Errorf("--batch-size: %d is out of range 1..1000000", c.BatchSize)
	case c.FlushInterval < time.Millisecond:
		return fmt.Errorf("--flush-interval: %s is below 1ms", c.FlushInterval)
	case c.MaintenanceInterval < time.Second:
		return fmt.Errorf("--maintenance-interval: %s is below 1s", c.MaintenanceInterval)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("--retry-max: %s must be at least the minimum backoff %s", c.RetryMax, c.RetryMin)
	case c.SessionTimeout < time.Second || c.SessionTimeout > 30*time.Minute:
		return fmt.Errorf("--session-timeout: %s is out of range 1s..30m", c.SessionTimeout)
	case c.RebalanceTimeout < time.Second || c.RebalanceTimeout > 30*time.Minute:
		return fmt.Errorf("--rebalance-timeout: %s is out of range 1s..30m", c.RebalanceTimeout)
	case c.StallTimeout < 0:
		return fmt.Errorf("--stall-timeout: %s is negative (0 = twice --flush-interval plus 5s)", c.StallTimeout)
	}
	return c.Layout.validate()
}

// Sink consumes the sink topics and writes them into the database. Create
// it with New and run it with Run once.
type Sink struct {
	cfg    Config
	db     *pgx.ConnConfig
	kopts  []kgo.Opt
	dec    *decoder
	m      *metrics
	log    *slog.Logger
	writer *Writer
	cl     *kgo.Client
	layout Layout

	mu      sync.Mutex
	ready   error // nil when the last database operation succeeded
	started bool
	// writeSince is when the batch write in progress began (writeDepth >
	// 0), for the stall check.
	writeSince time.Time
	writeDepth int
	committed  map[string]map[int32]kgo.EpochOffset // written but not yet committed
	hw         map[string]map[int32]int64           // high watermarks seen
}

// ErrNotStarted is the readiness error before the sink has migrated and
// joined its group.
var ErrNotStarted = errors.New("sink not started yet")

// New returns a sink writing to the database at db (see ParseURL), reading
// with the franz-go options kopts (seed brokers, TLS, SASL; the sink adds
// its group, topics and commit settings) and decoding with serde.
func New(cfg Config, db *pgx.ConnConfig, kopts []kgo.Opt, serde *schemas.Serde) (*Sink, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if db == nil || serde == nil {
		return nil, errors.New("sink: database config and serde are required")
	}
	s := &Sink{
		cfg: cfg, db: db, kopts: kopts, log: cfg.Log,
		dec:       newDecoder(serde, cfg.Now),
		m:         newMetrics(cfg.Registerer),
		ready:     ErrNotStarted,
		committed: map[string]map[int32]kgo.EpochOffset{},
		hw:        map[string]map[int32]int64{},
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "drover", Subsystem: "sink", Name: "write_pending_seconds",
				Help: "How long the batch write in progress has been pending (waiting or retrying); 0 when none.",
			}, func() float64 {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.pendingLocked().Seconds()
			}),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: "drover", Subsystem: "sink", Name: "write_stalled",
				Help: "1 while a batch write has been pending for longer than --stall-timeout (/readyz then fails), else 0.",
			}, func() float64 {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.pendingLocked() > s.cfg.StallTimeout {
					return 1
				}
				return 0
			}),
		)
		for _, path := range []string{"direct", "staged"} {
			cfg.Registerer.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "drover", Subsystem: "sink", Name: "copy_batches_total",
				Help:        "Per-table batches of insert-only tables by path: direct (COPY into the table) or staged (COPY into staging, then INSERT ... ON CONFLICT DO NOTHING, after a duplicate).",
				ConstLabels: prometheus.Labels{"path": path},
			}, func() float64 {
				s.mu.Lock()
				w := s.writer
				s.mu.Unlock()
				if w == nil {
					return 0
				}
				if path == "direct" {
					return float64(w.Paths.Direct.Load())
				}
				return float64(w.Paths.Staged.Load())
			}))
		}
	}
	return s, nil
}

// Ready reports nil when the sink is running, its last database operation
// succeeded and no batch write has been pending for longer than
// Config.StallTimeout (the /readyz check). A write that waits without
// failing (for a lock, say) is such a stall.
func (s *Sink) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready != nil {
		return s.ready
	}
	if d := s.pendingLocked(); d > s.cfg.StallTimeout {
		return fmt.Errorf("%w: a batch write has been pending for %s (over --stall-timeout %s); see pg_stat_activity for what it waits on",
			ErrStalled, d.Round(time.Millisecond), s.cfg.StallTimeout)
	}
	return nil
}

// ErrStalled is the readiness error of a sink whose batch write takes too
// long.
var ErrStalled = errors.New("sink cannot write")

func (s *Sink) setReady(err error) {
	s.mu.Lock()
	s.ready = err
	s.mu.Unlock()
	if err == nil {
		s.m.dbUp.Set(1)
	} else {
		s.m.dbUp.Set(0)
	}
}

// Layout returns the layout in use (valid once Run has migrated).
func (s *Sink) Layout() Layout {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.layout
}

// Run migrates (unless disabled), joins the group and writes batches until
// ctx is cancelled; then it writes and commits what it has read, leaves the
// group and returns nil. While the database is down it retries with capped
// backoff and commits nothing.
func (s *Sink) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("sink: Run called twice")
	}
	s.started = true
	s.mu.Unlock()

	layout, err := s.prepareSchema(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.mu.Lock()
	s.layout = layout
	s.mu.Unlock()
	s.mu.Lock()
	s.writer = NewWriter(s.db, layout)
	s.writer.now = s.cfg.Now
	s.mu.Unlock()
	defer s.writer.Close(context.Background())

	opts := append([]kgo.Opt{}, s.kopts...)
	opts = append(opts,
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, s.cfg.SessionTimeout/5)),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
		s.consumeTopics(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
		kgo.WithLogger(kgoLogger{s.log.With("component", "kafka")}),
	)
	if s.cfg.AppRecords {
		opts = append(opts, kgo.ConsumeRegex(), kgo.MetadataMaxAge(AppTopicRefresh))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl
	s.setReady(nil)
	s.log.Info("sink started", "group", s.cfg.Group, "topics", s.cfg.Topics, "app_records", s.cfg.AppRecords, "path", string(layout.Path()),
		"batch_size", s.cfg.BatchSize, "flush_interval", s.cfg.FlushInterval.String())

	mctx, stopMaint := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.maintainLoop(mctx, layout) }()

	err = s.consume(ctx)
	stopMaint()
	wg.Wait()
	// With BlockRebalanceOnPoll, leaving the group waits for the last poll's
	// rebalance to be allowed: without this, Close blocks forever.
	cl.AllowRebalance()
	cl.Close() // leaves the group; onRevoked commits anything written
	if err != nil {
		return err
	}
	s.log.Info("sink stopped")
	return nil
}

// prepareSchema migrates (or, with Migrate=false, reads the recorded path),
// retrying while the database is unreachable.
func (s *Sink) prepareSchema(ctx context.Context) (Layout, error) {
	layout := *s.cfg.Layout
	doMigrate := s.cfg.Migrate == nil || *s.cfg.Migrate
	var res MigrateResult
	err := s.retry(ctx, "migrate", func(ctx context.Context) (bool, error) {
		conn, err := pgx.ConnectConfig(ctx, s.db.Copy())
		if err != nil {
			// Down or unreachable: retry. Refused credentials or a missing
			// database: fail now, naming the flag.
			return isConnError(err), fmt.Errorf("connecting to the database (--database-url %s): %w", safeURL(s.db), err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if doMigrate {
			res, err = Migrate(ctx, conn, s.cfg.Mode, layout, s.log)
		} else {
			res, err = recordedPath(ctx, conn, layout)
		}
		if err != nil {
			// Connection-level failures are worth retrying; a bad schema is not.
			return conn.IsClosed() || isConnError(err), err
		}
		return false, nil
	})
	if err != nil {
		return layout, err
	}
	return res.Layout, nil
}

// recordedPath reads the path of an already migrated database (for
// --migrate=false) and completes layout with it.
func recordedPath(ctx context.Context, conn *pgx.Conn, layout Layout) (MigrateResult, error) {
	var res MigrateResult
	var p string
	err := conn.QueryRow(ctx, "SELECT path, version FROM schema_migrations ORDER BY version DESC LIMIT 1").Scan(&p, &res.Current)
	if err != nil {
		return res, fmt.Errorf("reading schema_migrations (run drover sink migrate first): %w", err)
	}
	res.Path = Path(p)
	layout.Timescale = res.Path == PathTimescale
	if layout.Timescale {
		if layout.ExtSchema, err = extensionSchema(ctx, conn); err != nil {
			return res, err
		}
	}
	res.Layout = layout
	return res, nil
}

// retry runs f until it succeeds, returns a non-retryable error, or ctx
// ends, sleeping with capped exponential backoff between attempts and
// marking the sink not ready meanwhile.
func (s *Sink) retry(ctx context.Context, what string, f func(context.Context) (retryable bool, err error)) error {
	wait := s.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		retryable, err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !retryable {
			return err
		}
		s.setReady(fmt.Errorf("%s: %w", what, err))
		s.log.Warn("retrying", "op", what, "attempt", attempt, "backoff", wait.String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

// write is a batch being written in the background by consume.
type write struct {
	records  []*kgo.Record
	finished chan struct{} // closed when err is set
	err      error
}

// rebalanceEvery is how often consume lets a pending group rebalance
// proceed while busy (it always does when idle).
const rebalanceEvery = time.Second

// consume is the poll → batch → write → commit loop. One batch is written
// in the background while the next one is read and decoded; offsets are
// committed, in order, once a batch's transaction has committed.
// Rebalances are held back (BlockRebalanceOnPoll) and allowed only when
// nothing is pending or in flight, so a revoked partition never has
// written-but-uncommitted records.
func (s *Sink) consume(ctx context.Context) error {
	var pending []*kgo.Record
	var batchStart, lastAllow time.Time
	var inflight *write
	// Writes and commits run on wctx, which outlives ctx by DrainTimeout:
	// on shutdown the batch in flight finishes and is committed.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	stopDrainTimer := context.AfterFunc(ctx, func() { time.AfterFunc(s.cfg.DrainTimeout, wcancel) })
	defer stopDrainTimer()
	// settle waits for the background write and commits it.
	settle := func() error {
		if inflight == nil {
			return nil
		}
		<-inflight.finished
		err := inflight.err
		if err == nil {
			s.commit(wctx, inflight.records)
		}
		inflight = nil
		return err
	}
	allow := func() {
		s.cl.AllowRebalance()
		lastAllow = s.cfg.Now()
	}
	for {
		if ctx.Err() != nil {
			err := settle()
			if err != nil {
				return nil // cancelled while the database was down: nothing committed
			}
			return s.drain(pending)
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if len(pending) > 0 {
			pollCtx, cancel = context.WithDeadline(ctx, batchStart.Add(s.cfg.FlushInterval))
		} else if inflight != nil {
			// Idle with a write in flight: stop polling when it finishes, so
			// its offsets are committed at once.
			var c context.CancelFunc
			pollCtx, c = context.WithCancel(ctx)
			w := inflight
			go func() {
				select {
				case <-w.finished:
					c()
				case <-pollCtx.Done():
				}
			}()
			cancel = c
		}
		fetches := s.cl.PollRecords(pollCtx, s.cfg.BatchSize-len(pending))
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		s.mu.Lock()
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			if s.hw[p.Topic] == nil {
				s.hw[p.Topic] = map[int32]int64{}
			}
			s.hw[p.Topic][p.Partition] = p.HighWatermark
		})
		s.mu.Unlock()
		if len(pending) == 0 {
			batchStart = s.cfg.Now()
		}
		fetches.EachRecord(func(r *kgo.Record) { pending = append(pending, r) })
		if len(pending) == 0 {
			if err := settle(); err != nil {
				return s.stopErr(ctx, err)
			}
			allow()
			continue
		}
		if len(pending) < s.cfg.BatchSize && s.cfg.Now().Sub(batchStart) < s.cfg.FlushInterval && ctx.Err() == nil {
			continue // keep filling
		}
		if ctx.Err() != nil {
			continue // drain at the top of the loop
		}
		records := pending
		pending = nil
		b, outcomes, err := s.decode(wctx, records)
		if err != nil {
			return s.stopErr(ctx, errors.Join(err, settle()))
		}
		// Wait for the write in flight; its offsets are committed once
		// this batch's write has started, so the database is not idle
		// during the commit round trip (its transaction has committed:
		// committing them later changes nothing of what is committed when).
		var written []*kgo.Record
		if inflight != nil {
			<-inflight.finished
			w := inflight
			inflight = nil
			if w.err != nil {
				return s.stopErr(ctx, w.err)
			}
			written = w.records
		}
		if s.cfg.Now().Sub(lastAllow) >= rebalanceEvery {
			// Write this batch in the foreground, then let a waiting
			// rebalance through with nothing in flight.
			if written != nil {
				s.commit(wctx, written)
			}
			if err := s.write(wctx, records, b, outcomes); err != nil {
				return s.stopErr(ctx, err)
			}
			s.commit(wctx, records)
			allow()
			continue
		}
		inflight = &write{records: records, finished: make(chan struct{})}
		go func(w *write) {
			w.err = s.write(wctx, w.records, b, outcomes)
			close(w.finished)
		}(inflight)
		if written != nil {
			s.commit(wctx, written)
		}
	}
}

// stopErr is consume's result for a failed write: nil when ctx was
// cancelled (a clean stop while the database was down; nothing was
// committed), err otherwise.
func (s *Sink) stopErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// drain writes and commits the records read before shutdown, within
// DrainTimeout.
func (s *Sink) drain(pending []*kgo.Record) error {
	if len(pending) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.flush(ctx, pending); err != nil {
		s.log.Warn("shutdown: last batch not written; it will be read again", "records", len(pending), "err", err)
		return nil
	}
	s.commit(ctx, pending)
	return nil
}

// flush decodes and writes records, retrying transient failures until ctx
// ends. Records the database rejects are isolated by bisection and stored
// as dead letters.
func (s *Sink) flush(ctx context.Context, records []*kgo.Record) error {
	b, outcomes, err := s.decode(ctx, records)
	if err != nil {
		return err
	}
	return s.write(ctx, records, b, outcomes)
}

// decode turns records into a batch, retrying while the registry fails.
func (s *Sink) decode(ctx context.Context, records []*kgo.Record) (*Batch, []outcome, error) {
	// The high-volume slices get their size up front: grown by append, a
	// batch of 5000 readings was copied about twice over.
	var readings, fixes int
	for _, r := range records {
		switch r.Topic {
		case topics.RawSensor:
			readings++
		case topics.RawGPS:
			fixes++
		}
	}
	b := &Batch{Readings: make([]schemas.SensorReading, 0, readings), Fixes: make([]schemas.GPSFix, 0, fixes)}
	b.src.readings, b.src.fixes = make([]*kgo.Record, 0, readings), make([]*kgo.Record, 0, fixes)
	outcomes := make([]outcome, len(records))
	err := s.retry(ctx, "decode", func(ctx context.Context) (bool, error) {
		b.Reset()
		for i, r := range records {
			o, err := s.dec.add(ctx, b, r)
			if err != nil {
				s.m.errors.WithLabelValues("decode").Inc()
				return true, fmt.Errorf("decoding %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			outcomes[i] = o
		}
		return false, nil
	})
	return b, outcomes, err
}

// write writes a decoded batch, retrying transient failures until ctx ends.
func (s *Sink) write(ctx context.Context, records []*kgo.Record, b *Batch, outcomes []outcome) error {
	defer s.writing()()
	var dataErr error
	var res Result
	err := s.retry(ctx, "write", func(ctx context.Context) (bool, error) {
		start := time.Now()
		var err error
		res, err = s.writer.Write(ctx, b)
		if err != nil {
			if IsDataError(err) {
				dataErr = err
				return false, nil
			}
			s.m.errors.WithLabelValues("write").Inc()
			return true, err
		}
		s.setReady(nil)
		s.m.batchTime.Observe(time.Since(start).Seconds())
		s.countResult(res)
		return false, nil
	})
	if err != nil {
		return err
	}
	if dataErr != nil {
		return s.bisect(ctx, records, dataErr)
	}
	conflicted := make(map[*kgo.Record]bool, len(res.DeadLettered))
	for _, r := range res.DeadLettered {
		conflicted[r] = true
	}
	for i, r := range records {
		label := outcomeLabels[outcomes[i]]
		if conflicted[r] {
			label = outcomeLabels[outDeadLetter]
		}
		s.m.records.WithLabelValues(r.Topic, label).Inc()
	}
	return nil
}

// countResult adds what a Write did to the metrics, and logs conflicts.
func (s *Sink) countResult(res Result) {
	for t, n := range res.Written {
		s.m.rows.WithLabelValues(t).Add(float64(n))
	}
	for t, n := range res.Skipped {
		s.m.duplicates.WithLabelValues(t, "skipped").Add(float64(n))
	}
	for t, n := range res.Conflicts {
		if n > 0 {
			s.m.duplicates.WithLabelValues(t, "dead_letter").Add(float64(n))
			s.log.Warn("records met their natural key holding different content; stored as dead letters",
				"table", t, "records", n)
		}
	}
}

// writing marks a batch write as in progress, for the stall check of
// Ready, and returns the function that ends it. Writes nest (bisect).
func (s *Sink) writing() func() {
	s.mu.Lock()
	if s.writeDepth == 0 {
		s.writeSince = s.cfg.Now()
	}
	s.writeDepth++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.writeDepth--; s.writeDepth == 0 {
			s.writeSince = time.Time{}
		}
		s.mu.Unlock()
	}
}

// pendingLocked returns how long the batch write in progress has taken
// (0 when none). s.mu must be held.
func (s *Sink) pendingLocked() time.Duration {
	if s.writeDepth == 0 {
		return 0
	}
	return s.cfg.Now().Sub(s.writeSince)
}

// bisect writes records whose batch the database rejected: halves are
// retried on their own until the offending record is alone, which is then
// stored as a dead letter.
func (s *Sink) bisect(ctx context.Context, records []*kgo.Record, cause error) error {
	if len(records) > 1 {
		mid := len(records) / 2
		if err := s.flush(ctx, records[:mid]); err != nil {
			return err
		}
		return s.flush(ctx, records[mid:])
	}
	r := records[0]
	s.log.Warn("database rejected a record; storing it as a dead letter", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", cause)
	b := Batch{DeadLetters: []DeadLetter{s.dec.poison(r, ReasonRejected, cause.Error())}}
	err := s.retry(ctx, "write", func(ctx context.Context) (bool, error) {
		w, err := s.writer.Write(ctx, &b)
		if err != nil {
			if IsDataError(err) {
				return false, fmt.Errorf("storing the dead letter of %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			return true, err
		}
		s.m.rows.WithLabelValues(TableDeadLetters).Add(float64(w.Written[TableDeadLetters]))
		return false, nil
	})
	if err == nil {
		s.m.records.WithLabelValues(r.Topic, "dead_letter").Inc()
	}
	return err
}

// commit commits the offsets of written records. A failed commit is kept and
// retried on the next commit or at revocation; at worst the records are read
// again, which writes nothing twice.
func (s *Sink) commit(ctx context.Context, records []*kgo.Record) {
	s.mu.Lock()
	for _, r := range records {
		m := s.committed[r.Topic]
		if m == nil {
			m = map[int32]kgo.EpochOffset{}
			s.committed[r.Topic] = m
		}
		if eo, ok := m[r.Partition]; !ok || r.Offset+1 > eo.Offset {
			m[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		}
	}
	s.mu.Unlock()
	s.commitWritten(ctx, nil)
	now := s.cfg.Now()
	for _, r := range records {
		s.m.endToEnd.Observe(now.Sub(r.Timestamp).Seconds())
	}
	s.m.batchSize.Observe(float64(len(records)))
}

// commitWritten commits the written-but-uncommitted offsets (of only the
// partitions in only, when not nil).
func (s *Sink) commitWritten(ctx context.Context, only map[string][]int32) {
	s.mu.Lock()
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range s.committed {
		for p, eo := range ps {
			if only != nil && !containsPartition(only[t], p) {
				continue
			}
			if offsets[t] == nil {
				offsets[t] = map[int32]kgo.EpochOffset{}
			}
			offsets[t][p] = eo
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	var commitErr error
	s.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					commitErr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr)
				}
			}
		}
	})
	if commitErr != nil {
		s.m.errors.WithLabelValues("commit").Inc()
		s.log.Warn("offset commit failed; the records may be read again (writing nothing twice)", "err", commitErr)
		return
	}
	s.mu.Lock()
	for t, ps := range offsets {
		for p, eo := range ps {
			if cur, ok := s.committed[t][p]; ok && cur.Offset <= eo.Offset {
				delete(s.committed[t], p)
			}
			if hw, ok := s.hw[t][p]; ok {
				s.m.lag.WithLabelValues(t, strconv.Itoa(int(p))).Set(float64(max(0, hw-eo.Offset)))
			}
		}
	}
	s.mu.Unlock()
}

func containsPartition(ps []int32, p int32) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

// onRevoked commits what was written from the revoked partitions before
// they move to another member.
func (s *Sink) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.commitWritten(ctx, revoked)
	s.forget(revoked)
}

// onLost forgets lost partitions: their offsets can no longer be committed
// by this member (the new owner re-reads; the natural keys absorb it).
func (s *Sink) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.forget(lost)
}

func (s *Sink) forget(parts map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(s.committed[t], p)
			delete(s.hw[t], p)
			s.m.lag.DeleteLabelValues(t, strconv.Itoa(int(p)))
		}
	}
}

// maintainLoop keeps partitions ahead and refreshes rollups on schedule.
func (s *Sink) maintainLoop(ctx context.Context, layout Layout) {
	var lastRefresh time.Time
	run := func() {
		conn, err := pgx.ConnectConfig(ctx, s.db.Copy())
		if err != nil {
			if ctx.Err() == nil {
				s.m.errors.WithLabelValues("maintenance").Inc()
				s.log.Warn("maintenance: connecting", "err", err)
			}
			return
		}
		defer conn.Close(context.WithoutCancel(ctx))
		res, err := Maintain(ctx, conn, layout, s.cfg.Now())
		if err != nil && ctx.Err() == nil {
			s.m.errors.WithLabelValues("maintenance").Inc()
			s.log.Warn("maintenance failed", "err", err)
		}
		s.m.maintained.WithLabelValues("partition_created").Add(float64(len(res.Created)))
		s.m.maintained.WithLabelValues("partition_dropped").Add(float64(len(res.Dropped)))
		if len(res.Created) > 0 || len(res.Dropped) > 0 || res.DeadLettersDeleted > 0 || res.AppRecordsDeleted > 0 {
			s.log.Info("maintenance", "partitions_created", len(res.Created), "partitions_dropped", res.Dropped,
				"dead_letters_deleted", res.DeadLettersDeleted, "app_records_deleted", res.AppRecordsDeleted)
		}
		if len(res.Dropped) > 0 && s.writer != nil {
			s.writer.forgetPartitions()
		}
		// Measured from the start of the last refresh, with a tenth of slack
		// for the ticker's jitter, so refreshes keep the interval on a ticker
		// of the same period instead of skipping every other tick.
		if begun := s.cfg.Now(); begun.Sub(lastRefresh) >= layout.RefreshInterval*9/10 {
			start := time.Now()
			r, err := refreshRollups(ctx, conn, layout, nil)
			if err != nil {
				if ctx.Err() == nil {
					s.m.errors.WithLabelValues("maintenance").Inc()
					s.log.Warn("refreshing rollups failed", "err", err)
				}
				return
			}
			lastRefresh = begun
			if !r.Skipped {
				s.m.maintained.WithLabelValues("view_refreshed").Inc()
				s.m.refreshSeconds.Observe(time.Since(start).Seconds())
				s.log.Debug("rollups refreshed", "rows", r.Rows, "took", time.Since(start))
			}
		}
	}
	run()
	tick := min(s.cfg.MaintenanceInterval, layout.RefreshInterval)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			run()
		}
	}
}

// isConnError reports whether err is a connection-level failure worth
// retrying: not a PostgreSQL error at all, or one of the classes 08
// (connection), 53 (resources), 57 (operator intervention, e.g. shutdown)
// and 40 (serialisation failure, deadlock).
func isConnError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return !errors.Is(err, ErrPathMismatch) && !errors.Is(err, ErrTimescaleUnavailable)
	}
	switch pe.Code[:2] {
	case "08", "53", "57", "40":
		return true
	}
	return false
}

// kgoLogger hands franz-go's log lines to slog: group membership (joins,
// syncs, assignments) at info, problems at warn and error, the rest at
// debug when that is enabled.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelInfo
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	case kgo.LogLevelInfo:
		lvl = slog.LevelInfo
	}
	l.log.Log(context.Background(), lvl, msg, keyvals...)
}

// AppTopicRefresh is how often a sink with Config.AppRecords looks for new
// app target topics (Kafka metadata refresh).
const AppTopicRefresh = 10 * time.Second

// consumeTopics is the topic option: the configured topics, and with
// AppRecords every AppTopicPrefix topic too, as anchored regular
// expressions (franz-go then consumes matching topics created later).
func (s *Sink) consumeTopics() kgo.Opt {
	if !s.cfg.AppRecords {
		return kgo.ConsumeTopics(s.cfg.Topics...)
	}
	res := make([]string, 0, len(s.cfg.Topics)+1)
	for _, t := range s.cfg.Topics {
		res = append(res, "^"+regexp.QuoteMeta(t)+"$")
	}
	return kgo.ConsumeTopics(append(res, "^"+regexp.QuoteMeta(AppTopicPrefix)+".+$")...)
}
