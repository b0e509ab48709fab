package gokakgo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is what the builders need besides the brokers: the connection
// options (TLS, SASL, hooks such as kprom) and the group timing.
type Config struct {
	// Opts connect a client to the cluster (TLS, SASL, dial timeout,
	// metrics hooks). Seed brokers, client id and the consumer settings
	// are added by the builders.
	Opts []kgo.Opt
	// SessionTimeout, RebalanceTimeout and HeartbeatInterval of the
	// consumer group (kgo's defaults when zero).
	SessionTimeout, RebalanceTimeout, HeartbeatInterval time.Duration
	// CommitInterval is how often a session commits its marked offsets
	// (default 1 s, sarama's).
	CommitInterval time.Duration
	// ChannelBufferSize is the capacity of each claim's and partition
	// consumer's message channel (default 4096).
	ChannelBufferSize int
	// FetchMaxPartitionBytes bounds one partition's share of a fetch
	// (kgo's default when zero).
	FetchMaxPartitionBytes int32
	// MaxPollRecords bounds one poll (default 10000).
	MaxPollRecords int
	// ClientOpt, when set, adds an option per client, by role
	// ("<client id>-consumer", "-tables", "-topics"): the stage's kprom
	// metrics (admin.Server.KafkaMetrics).
	ClientOpt func(role string) kgo.Opt
	// Log receives the adapter's own diagnostics at debug level.
	Log *slog.Logger
}

func (c Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// maxWait bounds how long a broker holds a fetch without data.
const maxWait = 250 * time.Millisecond

func (c Config) bufferSize() int {
	if c.ChannelBufferSize > 0 {
		return c.ChannelBufferSize
	}
	return 4096
}

func (c Config) maxPoll() int {
	if c.MaxPollRecords > 0 {
		return c.MaxPollRecords
	}
	return 10000
}

func (c Config) baseOpts(brokers []string, clientID, role string) []kgo.Opt {
	opts := append([]kgo.Opt(nil), c.Opts...)
	if c.ClientOpt != nil {
		opts = append(opts, c.ClientOpt(clientID+"-"+role))
	}
	opts = append(opts, kgo.SeedBrokers(brokers...), kgo.ClientID(clientID),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// kgo waits up to 5 s for data by default; a partition added while
		// such a fetch is in flight (a table to recover) would wait that
		// long. sarama's default is 500 ms.
		kgo.FetchMaxWait(maxWait))

	if c.FetchMaxPartitionBytes > 0 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(c.FetchMaxPartitionBytes))
	}
	return opts
}

// ConsumerGroupBuilder returns goka's consumer-group builder on kgo
// (goka.WithConsumerGroupBuilder takes it).
func ConsumerGroupBuilder(cfg Config) func(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
	return func(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
		return NewConsumerGroup(cfg, brokers, group, clientID), nil
	}
}

// NewConsumerGroup returns a consumer group for group; its kgo client
// starts (and joins) at the first Consume, which names the topics.
func NewConsumerGroup(cfg Config, brokers []string, group, clientID string) *ConsumerGroup {
	return &ConsumerGroup{cfg: cfg, brokers: brokers, group: group, clientID: clientID,
		errs: make(chan error, 64), closed: make(chan struct{}), assigned: make(chan assignment, 1)}
}

// ConsumerGroup is sarama.ConsumerGroup on a kgo group consumer; see the
// package documentation.
type ConsumerGroup struct {
	cfg             Config
	brokers         []string
	group, clientID string
	errs            chan error
	closed          chan struct{}
	closeOnce       sync.Once
	assigned        chan assignment // the latest assignment not yet in a session
	consumeMu       sync.Mutex      // one Consume at a time
	mu              sync.Mutex
	cl              *kgo.Client
	topics          []string
	epoch           uint64 // counts revocations
	cur             *session
}

type assignment struct {
	claims map[string][]int32
	member string
	gen    int32
	epoch  uint64
}

var _ sarama.ConsumerGroup = (*ConsumerGroup)(nil)

// Client returns the kgo client once Consume started it (nil before).
func (g *ConsumerGroup) Client() *kgo.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cl
}

func (g *ConsumerGroup) start(topics []string) (*kgo.Client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cl != nil {
		if fmt.Sprint(g.topics) != fmt.Sprint(topics) {
			return nil, fmt.Errorf("gokakgo: consumer group %s: topics changed from %v to %v", g.group, g.topics, topics)
		}
		return g.cl, nil
	}
	select {
	case <-g.closed:
		return nil, sarama.ErrClosedConsumerGroup
	default:
	}
	opts := g.cfg.baseOpts(g.brokers, g.clientID, "consumer")
	opts = append(opts,
		kgo.ConsumerGroup(g.group),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(g.onAssigned),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) { g.onRevoked(false) }),
		kgo.OnPartitionsLost(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) { g.onRevoked(true) }),
	)
	if g.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(g.cfg.SessionTimeout))
	}
	if g.cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(g.cfg.RebalanceTimeout))
	}
	if g.cfg.HeartbeatInterval > 0 {
		opts = append(opts, kgo.HeartbeatInterval(g.cfg.HeartbeatInterval))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("gokakgo: consumer group %s: %w", g.group, err)
	}
	g.cl, g.topics = cl, append([]string(nil), topics...)
	return cl, nil
}

// onAssigned runs in kgo's group goroutine with the full assignment (the
// balancer is eager) and hands it to Consume.
func (g *ConsumerGroup) onAssigned(_ context.Context, cl *kgo.Client, claims map[string][]int32) {
	member, gen := cl.GroupMetadata()
	g.mu.Lock()
	a := assignment{claims: claims, member: member, gen: gen, epoch: g.epoch}
	g.mu.Unlock()
	select { // replace a stale one
	case <-g.assigned:
	default:
	}
	g.assigned <- a
	g.cfg.log().Debug("gokakgo: partitions assigned", "group", g.group, "generation", gen, "claims", claims)
}

// onRevoked runs in kgo's group goroutine before it rejoins: the current
// session ends (Cleanup, final commit unless lost) before it returns.
func (g *ConsumerGroup) onRevoked(lost bool) {
	g.mu.Lock()
	g.epoch++
	s := g.cur
	g.mu.Unlock()
	select { // an assignment not yet started is void now
	case <-g.assigned:
	default:
	}
	if s == nil {
		return
	}
	g.cfg.log().Debug("gokakgo: partitions revoked, ending session", "group", g.group, "generation", s.gen, "lost", lost)
	s.revoke(lost)
	<-s.ended
}

// Consume runs one session: it waits for an assignment, runs the handler
// on it, and returns once the session ended (rebalance or ctx).
func (g *ConsumerGroup) Consume(ctx context.Context, topics []string, h sarama.ConsumerGroupHandler) error {
	g.consumeMu.Lock()
	defer g.consumeMu.Unlock()
	cl, err := g.start(topics)
	if err != nil {
		return err
	}
	for {
		var a assignment
		select {
		case <-ctx.Done():
			return nil
		case <-g.closed:
			return sarama.ErrClosedConsumerGroup
		case a = <-g.assigned:
		}
		s := newSession(ctx, g, cl, a)
		g.mu.Lock()
		if a.epoch != g.epoch { // revoked before it started
			g.mu.Unlock()
			s.cancel()
			continue
		}
		g.cur = s
		g.mu.Unlock()
		return s.run(h)
	}
}

// Errors returns the errors of the group's clients (fetch errors that are
// not retried). The channel is never closed.
func (g *ConsumerGroup) Errors() <-chan error { return g.errs }

func (g *ConsumerGroup) report(err error) {
	select {
	case g.errs <- err:
	default: // nobody reads them: goka reads between sessions only
	}
}

// Close leaves the group (ending a running session first) and closes the
// client.
func (g *ConsumerGroup) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	g.mu.Lock()
	cl := g.cl
	g.mu.Unlock()
	if cl != nil {
		cl.Close() // leaves the group; revocation ends a session
	}
	return nil
}

// Pause stops fetching partitions.
func (g *ConsumerGroup) Pause(partitions map[string][]int32) {
	if cl := g.Client(); cl != nil {
		cl.PauseFetchPartitions(partitions)
	}
}

// Resume resumes paused partitions.
func (g *ConsumerGroup) Resume(partitions map[string][]int32) {
	if cl := g.Client(); cl != nil {
		cl.ResumeFetchPartitions(partitions)
	}
}

// PauseAll pauses every topic of the group.
func (g *ConsumerGroup) PauseAll() {
	if cl := g.Client(); cl != nil {
		cl.PauseFetchTopics(g.topics...)
	}
}

// ResumeAll resumes everything paused.
func (g *ConsumerGroup) ResumeAll() {
	if cl := g.Client(); cl != nil {
		cl.ResumeFetchTopics(cl.PauseFetchTopics()...)
		for t, ps := range cl.PauseFetchPartitions(nil) {
			cl.ResumeFetchPartitions(map[string][]int32{t: ps})
		}
	}
}

// session is one generation's sarama.ConsumerGroupSession.
type session struct {
	g      *ConsumerGroup
	cl     *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	claims map[string][]int32
	member string
	gen    int32

	mu        sync.Mutex
	marks     map[string]map[int32]mark
	committed map[string]map[int32]int64
	lost      bool
	revoked   bool

	chans  map[string]map[int32]*claim
	ended  chan struct{}
	commit chan chan struct{}
}

type mark struct {
	offset   int64
	metadata string
}

var _ sarama.ConsumerGroupSession = (*session)(nil)

func newSession(ctx context.Context, g *ConsumerGroup, cl *kgo.Client, a assignment) *session {
	sctx, cancel := context.WithCancel(ctx)
	s := &session{g: g, cl: cl, ctx: sctx, cancel: cancel, claims: a.claims, member: a.member, gen: a.gen,
		marks: map[string]map[int32]mark{}, committed: map[string]map[int32]int64{},
		chans: map[string]map[int32]*claim{}, ended: make(chan struct{}), commit: make(chan chan struct{})}
	if s.claims == nil {
		s.claims = map[string][]int32{}
	}
	for t, ps := range s.claims {
		s.chans[t] = map[int32]*claim{}
		for _, p := range ps {
			s.chans[t][p] = &claim{topic: t, partition: p, ch: make(chan *sarama.ConsumerMessage, g.cfg.bufferSize()),
				batches: make(chan []sarama.ConsumerMessage, batchQueue), stopped: make(chan struct{}), wanted: make(chan struct{})}
		}
	}
	return s
}

func (s *session) revoke(lost bool) {
	s.mu.Lock()
	s.revoked, s.lost = true, s.lost || lost
	s.mu.Unlock()
	s.cancel()
}

// run is one session, from Setup to the final commit.
func (s *session) run(h sarama.ConsumerGroupHandler) (err error) {
	defer func() {
		s.cancel()
		s.g.mu.Lock()
		if s.g.cur == s {
			s.g.cur = nil
		}
		s.g.mu.Unlock()
		close(s.ended)
	}()
	if err := h.Setup(s); err != nil {
		s.cancel()
		cerr := h.Cleanup(s)
		s.finalCommit()
		return errors.Join(err, cerr)
	}
	var (
		claims sync.WaitGroup
		loops  sync.WaitGroup
		pumps  sync.WaitGroup
		errMu  sync.Mutex
		errs   []error
	)
	pollCtx, stopPoll := context.WithCancel(s.ctx)
	loops.Add(2)
	go func() { defer loops.Done(); s.poll(pollCtx) }()
	go func() { defer loops.Done(); s.commitLoop(pollCtx) }()
	for _, ps := range s.chans {
		for _, c := range ps {
			pumps.Add(1)
			go func() { defer pumps.Done(); c.pump(pollCtx) }()
			claims.Add(1)
			go func() {
				defer claims.Done()
				defer close(c.stopped)
				if err := h.ConsumeClaim(s, c); err != nil {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					s.g.report(err)
				}
			}()
		}
	}
	<-s.ctx.Done()
	stopPoll()
	loops.Wait()
	pumps.Wait()
	for _, ps := range s.chans {
		for _, c := range ps {
			close(c.ch)
		}
	}
	claims.Wait()
	if err := h.Cleanup(s); err != nil {
		errs = append(errs, err)
	}
	s.finalCommit()
	return errors.Join(errs...)
}

// poll feeds the claims until ctx ends.
func (s *session) poll(ctx context.Context) {
	for {
		fs := s.cl.PollRecords(ctx, s.g.cfg.maxPoll())
		if ctx.Err() != nil {
			return // the session ended: undelivered records were not marked
		}
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, kgo.ErrClientClosed) || errors.Is(err, context.Canceled) {
				return
			}
			s.g.report(&sarama.ConsumerError{Topic: t, Partition: p, Err: err})
		})
		if fs.IsClientClosed() {
			return
		}
		stop := false
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if stop || len(p.Records) == 0 {
				return
			}
			c := s.chans[p.Topic][p.Partition]
			if c == nil {
				return
			}
			c.hwm.Store(p.HighWatermark)
			// Each claim has its own pump goroutine: one slow
			// partition does not hold up the others.
			select {
			case c.batches <- toMessages(p.Records):
			case <-c.stopped: // goka left this claim
			case <-ctx.Done():
				stop = true
			}
		})
		if stop {
			return
		}
	}
}

// toMessages converts a partition's records into one slice of sarama
// messages, sharing keys and values.
func toMessages(rs []*kgo.Record) []sarama.ConsumerMessage {
	msgs := make([]sarama.ConsumerMessage, len(rs))
	for i, r := range rs {
		m := &msgs[i]
		m.Topic, m.Partition, m.Offset = r.Topic, r.Partition, r.Offset
		m.Key, m.Value, m.Timestamp = r.Key, r.Value, r.Timestamp
		if len(r.Headers) > 0 {
			hs := make([]sarama.RecordHeader, len(r.Headers))
			m.Headers = make([]*sarama.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				hs[j] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
				m.Headers[j] = &hs[j]
			}
		}
	}
	return msgs
}

func (s *session) commitLoop(ctx context.Context) {
	every := s.g.cfg.CommitInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.commitMarks(ctx)
		case done := <-s.commit:
			s.commitMarks(ctx)
			close(done)
		}
	}
}

// commitMarks commits every mark that moved since the last commit.
func (s *session) commitMarks(ctx context.Context) {
	s.mu.Lock()
	todo := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range s.marks {
		for p, m := range ps {
			if c, ok := s.committed[t][p]; ok && c == m.offset {
				continue
			}
			if todo[t] == nil {
				todo[t] = map[int32]kgo.EpochOffset{}
			}
			todo[t][p] = kgo.EpochOffset{Epoch: -1, Offset: m.offset}
		}
	}
	s.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	var cerr error
	s.cl.CommitOffsetsSync(ctx, todo, func(_ *kgo.Client, _ *kmsgCommitReq, resp *kmsgCommitResp, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerrOf(p.ErrorCode); perr != nil {
					cerr = errors.Join(cerr, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr))
				}
			}
		}
	})
	if cerr != nil {
		if ctx.Err() == nil {
			s.g.cfg.log().Warn("gokakgo: offset commit failed", "group", s.g.group, "err", cerr)
			s.g.report(fmt.Errorf("gokakgo: committing offsets of %s: %w", s.g.group, cerr))
		}
		return
	}
	s.mu.Lock()
	for t, ps := range todo {
		if s.committed[t] == nil {
			s.committed[t] = map[int32]int64{}
		}
		for p, eo := range ps {
			s.committed[t][p] = eo.Offset
		}
	}
	s.mu.Unlock()
}

// finalCommit commits the marks at the end of the session, unless the
// assignment was lost (the coordinator would refuse the generation).
func (s *session) finalCommit() {
	s.mu.Lock()
	lost := s.lost
	s.mu.Unlock()
	if lost {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.commitMarks(ctx)
}

// Claims returns the partitions of the session, by topic.
func (s *session) Claims() map[string][]int32 { return s.claims }

// MemberID returns the member id of this generation.
func (s *session) MemberID() string { return s.member }

// GenerationID returns the generation.
func (s *session) GenerationID() int32 { return s.gen }

// MarkOffset marks offset (the next record to read) as done; marks only
// move forward.
func (s *session) MarkOffset(topic string, partition int32, offset int64, metadata string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.marks[topic]
	if ps == nil {
		ps = map[int32]mark{}
		s.marks[topic] = ps
	}
	if m, ok := ps[partition]; !ok || offset > m.offset {
		ps[partition] = mark{offset, metadata}
	}
}

// ResetOffset sets the mark, also backwards.
func (s *session) ResetOffset(topic string, partition int32, offset int64, metadata string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.marks[topic]
	if ps == nil {
		ps = map[int32]mark{}
		s.marks[topic] = ps
	}
	ps[partition] = mark{offset, metadata}
	delete(s.committed[topic], partition)
}

// MarkMessage marks msg as done.
func (s *session) MarkMessage(msg *sarama.ConsumerMessage, metadata string) {
	s.MarkOffset(msg.Topic, msg.Partition, msg.Offset+1, metadata)
}

// Commit commits the marks now and waits for it (while the session runs).
func (s *session) Commit() {
	done := make(chan struct{})
	select {
	case s.commit <- done:
		<-done
	case <-s.ctx.Done():
	}
}

// Context ends with the session.
func (s *session) Context() context.Context { return s.ctx }

// batchQueue is how many fetched batches wait per partition.
const batchQueue = 4

// claim is one partition of a session.
type claim struct {
	topic     string
	partition int32
	hwm       atomicInt64
	ch        chan *sarama.ConsumerMessage
	batches   chan []sarama.ConsumerMessage
	stopped   chan struct{}
	// wanted is closed by the first Messages call: only then does the pump
	// feed ch (drover's patched goka takes MessageBatches instead).
	wanted     chan struct{}
	wantedOnce sync.Once
}

// pump hands the claim's batches to goka one message at a time, once goka
// asked for Messages, until ctx ends or goka leaves the claim.
func (c *claim) pump(ctx context.Context) {
	select {
	case <-c.wanted:
	case <-c.stopped:
		return
	case <-ctx.Done():
		return
	}
	for {
		select {
		case msgs := <-c.batches:
			for i := range msgs {
				select {
				case c.ch <- &msgs[i]:
				case <-c.stopped:
					return
				case <-ctx.Done():
					return
				}
			}
		case <-c.stopped:
			return
		case <-ctx.Done():
			return
		}
	}
}

var _ sarama.ConsumerGroupClaim = (*claim)(nil)

func (c *claim) Topic() string              { return c.topic }
func (c *claim) Partition() int32           { return c.partition }
func (c *claim) InitialOffset() int64       { return sarama.OffsetOldest }
func (c *claim) HighWaterMarkOffset() int64 { return c.hwm.Load() }
func (c *claim) Messages() <-chan *sarama.ConsumerMessage {
	c.wantedOnce.Do(func() { close(c.wanted) })
	return c.ch
}

// MessageBatches returns the claim's fetched batches, in offset order, for
// a handler that takes a batch at a time: drover's patched goka
// (third_party/goka, DROVER.md) reads these instead of Messages, which
// saves a channel hand-off per record. A handler reads either Messages or
// MessageBatches, never both.
func (c *claim) MessageBatches() <-chan []sarama.ConsumerMessage { return c.batches }
