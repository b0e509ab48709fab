package bridge

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/schemas"
)

// Bridge moves MQTT messages into Kafka. Build it with New and start it
// with Run; Ready and Stats are safe to call concurrently with Run.
type Bridge struct {
	cfg         Config
	log         *slog.Logger
	m           *metrics
	kafka       *kgo.Client
	status      *kgo.Client // commands.status and downlink dead letters: no linger (each is awaited); nil without the downlink
	cm          atomic.Pointer[autopaho.ConnectionManager]
	queues      []chan *message
	seed        maphash.Seed
	infl        atomic.Int64  // messages received and not finished or abandoned
	stop        atomic.Bool   // set when draining: new messages are left unacknowledged
	stopCh      chan struct{} // closed when draining
	slots       chan struct{} // one per message in flight, capacity ReceiveMaximum
	subOK       atomic.Bool
	connOK      atomic.Bool
	connections atomic.Int64
	backoff     *backoff
	stats       Stats
	prodCtx     context.Context  // records are produced with this; cancelled after the drain
	tracker     *control.Tracker // commands known from commands.status; nil without the downlink
	statusOK    atomic.Bool      // commands.status was read to its end (or no tracker)
	presence    *presence        // who is connected; nil unless the downlink waits for connects
	core        *ingest.Core     // decode → validate → route, the registry check, dead letters
	owner       *owner           // the devices this replica sends to; nil without the downlink
	shadows     *shadows         // pending shadow deltas (state.latest); nil without the downlink
	replyWrites *replyWrites     // reply records being written; nil without the downlink

	testOnReceive   func(*paho.Publish)            // test hook, nil in production
	testPuback      func(commandID string)         // test hook: a command's PUBACK came, before its delivered record; nil in production
	testStatusAcked func(r *schemas.CommandStatus) // test hook: Kafka acknowledged r, not yet folded (produceStatusAsync); nil in production
}

// Stats are running totals, for tests and the dev summary line.
type Stats struct {
	Received    atomic.Int64 // MQTT messages received
	Records     atomic.Int64 // records acknowledged by Kafka (raw.*)
	DeadLetters atomic.Int64 // dead letters acknowledged by Kafka
	Acked       atomic.Int64 // MQTT messages acknowledged
	Commands    atomic.Int64 // downlink commands published
}

// message is one MQTT message in flight.
type message struct {
	client   *paho.Client
	pub      *paho.Publish
	received time.Time
	pending  atomic.Int32
	failErr  atomic.Pointer[error]
	retried  bool // the records were produced a second time after a failure
}

// New validates cfg and creates the Kafka producer. Nothing connects to MQTT
// before Run.
func New(cfg Config) (*Bridge, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{}, c.KafkaOpts...)
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.SnappyCompression(), kgo.NoCompression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.UnknownTopicRetries(-1), // a missing topic holds the flow (and the acks) rather than failing
		kgo.MaxBufferedRecords(1<<16),
	)
	opts = append(opts, c.ProducerOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	b := &Bridge{cfg: c, log: c.Log, m: newMetrics(c.Metrics), kafka: cl, seed: maphash.MakeSeed(),
		stopCh: make(chan struct{}), slots: make(chan struct{}, c.ReceiveMaximum), backoff: newBackoff(c.Reconnect, c.Now)}
	b.core, err = ingest.NewCore(ingest.Config{Kafka: cl, Serde: c.Serde, Routes: c.Routes, Admission: c.Admission,
		Limits: c.Limits, DLQTopic: c.DLQTopic, Now: c.Now, Log: c.Log})
	if err != nil {
		cl.Close()
		return nil, err
	}
	if c.Downlink {
		// The downlink waits for each lifecycle record before the next
		// step; the raw producer's linger (batching for throughput) would
		// add 5 ms to every one of them.
		sopts := append([]kgo.Opt{}, c.KafkaOpts...)
		sopts = append(sopts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0), kgo.UnknownTopicRetries(-1))
		sopts = append(sopts, c.ProducerOpts...)
		sopts = append(sopts, kgo.ProducerLinger(0))
		if b.status, err = kgo.NewClient(sopts...); err != nil {
			cl.Close()
			return nil, fmt.Errorf("kafka status producer: %w", err)
		}
		b.tracker = control.NewTracker()
		b.owner = newOwner(c.CommandsTopic)
		b.shadows = newShadows()
		b.replyWrites = newReplyWrites()
		if c.Presence == PresenceEvents {
			b.presence = newPresence()
		}
	}
	return b, nil
}

// Stats returns the bridge's running totals.
func (b *Bridge) Stats() *Stats { return &b.stats }

// Kafka returns the bridge's producer client (for readiness pings).
func (b *Bridge) Kafka() *kgo.Client { return b.kafka }

// Ready reports whether the bridge is subscribed on MQTT and Kafka answers.
func (b *Bridge) Ready(ctx context.Context) error {
	select {
	case <-b.cfg.Admission.Ready():
	default:
		return errors.New("device registry not restored yet (nothing is acknowledged until it is)")
	}
	if !b.statusOK.Load() {
		return errors.New("command lifecycle not restored from commands.status yet (does the topic exist? drover topics apply creates it)")
	}
	if !b.connOK.Load() {
		return errors.New("mqtt not connected")
	}
	if !b.subOK.Load() {
		return errors.New("mqtt not subscribed")
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := b.kafka.Ping(pctx); err != nil {
		return fmt.Errorf("kafka unreachable: %w", err)
	}
	return nil
}

// Run connects, subscribes and bridges until ctx is cancelled, then drains:
// it stops taking new messages (they stay unacknowledged in the broker
// session), waits up to DrainTimeout for in-flight messages to reach Kafka
// and be acknowledged, disconnects and closes the producer. It returns nil
// after a clean stop.
func (b *Bridge) Run(ctx context.Context) error {
	defer b.kafka.Close()
	if b.status != nil {
		defer b.status.Close()
	}
	prodCtx, cancelProd := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelProd()
	b.prodCtx = prodCtx

	b.queues = make([]chan *message, b.cfg.Workers)
	var workers sync.WaitGroup
	for i := range b.queues {
		b.queues[i] = make(chan *message, b.cfg.ReceiveMaximum)
		workers.Add(1)
		go func(q <-chan *message) {
			defer workers.Done()
			w := &worker{b: b}
			for m := range q {
				w.process(m)
			}
		}(b.queues[i])
	}

	// The command lifecycle: restore what commands.status knows before
	// taking replies or sending commands, and keep following it.
	var follow sync.WaitGroup
	followCtx, cancelFollow := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { cancelFollow(); follow.Wait() }()
	statusReady := make(chan struct{})
	var readyOnce sync.Once
	markReady := func() { readyOnce.Do(func() { b.statusOK.Store(true); close(statusReady) }) }
	if b.tracker != nil {
		follow.Add(1)
		go func() {
			defer follow.Done()
			for followCtx.Err() == nil {
				if err := b.followStatus(followCtx, markReady); err != nil {
					b.log.Warn("following commands.status; retrying", "err", err)
					select {
					case <-followCtx.Done():
					case <-time.After(time.Second):
					}
				}
			}
		}()
	} else {
		markReady()
	}

	// Without the registry the bridge could only dead-letter every
	// message: take none until the view is restored.
	for _, ready := range []<-chan struct{}{b.cfg.Admission.Ready(), statusReady} {
		select {
		case <-ready:
		case <-ctx.Done():
			close(b.stopCh)
			for _, q := range b.queues {
				close(q)
			}
			workers.Wait()
			return nil
		}
	}
	if b.tracker != nil {
		b.log.Info("command lifecycle restored", "commands", b.tracker.Len())
	}

	mqttCtx, cancelMQTT := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelMQTT()
	cm, err := autopaho.NewConnection(mqttCtx, b.clientConfig(mqttCtx))
	if err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	b.cm.Store(cm)

	var down sync.WaitGroup
	downErr := make(chan error, 1)
	downCtx, cancelDown := context.WithCancel(ctx)
	defer cancelDown()
	if b.cfg.Downlink {
		down.Add(2)
		go func() {
			defer down.Done()
			if err := b.runDownlink(downCtx, cm); err != nil {
				downErr <- err
			}
		}()
		go func() {
			defer down.Done()
			b.expireLoop(downCtx, b.cfg.ExpiryTick)
		}()
		if b.cfg.ShadowDeltas {
			down.Add(1)
			go func() {
				defer down.Done()
				b.followShadows(downCtx, cm)
			}()
		}
		if b.presence != nil {
			down.Add(1)
			go func() {
				defer down.Done()
				b.runFlusher(downCtx, cm)
			}()
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case <-cm.Done():
		runErr = errors.New("mqtt connection manager stopped")
	case runErr = <-downErr:
	}
	cancelDown()
	down.Wait()

	// Drain: take nothing new, wait for what is in flight.
	b.stop.Store(true)
	close(b.stopCh)
	b.log.Info("bridge draining", "inflight", b.infl.Load())
	deadline := time.Now().Add(b.cfg.DrainTimeout)
	for b.infl.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.infl.Load(); n > 0 {
		b.log.Warn("bridge drain timed out; unacknowledged messages will be redelivered", "inflight", n)
	} else {
		// Let paho send the last acknowledgements before disconnecting.
		time.Sleep(3 * b.cfg.AckInterval)
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = cm.Disconnect(dctx)
	cancel()
	cancelMQTT()
	<-cm.Done()
	cancelProd() // unblocks anything still waiting on Kafka
	for _, q := range b.queues {
		close(q)
	}
	workers.Wait()
	b.log.Info("bridge stopped", "received", b.stats.Received.Load(), "acked", b.stats.Acked.Load())
	return runErr
}

func (b *Bridge) clientConfig(ctx context.Context) autopaho.ClientConfig {
	u, _ := url.Parse(b.cfg.MQTTURL) // validated in withDefaults
	var filters []paho.SubscribeOptions
	for _, f := range b.cfg.Filters {
		filters = append(filters, paho.SubscribeOptions{Topic: "$share/" + b.cfg.Group + "/" + f, QoS: 1})
	}
	if b.presence != nil {
		// Not shared: every replica needs to know who is connected.
		filters = append(filters, paho.SubscribeOptions{Topic: PresenceFilter, QoS: 0})
	}
	rm := uint16(b.cfg.ReceiveMaximum)
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        b.cfg.TLS,
		KeepAlive:                     uint16(b.cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(b.cfg.SessionExpiry / time.Second),
		ReconnectBackoff:              b.backoff.delay,
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               b.cfg.Username,
		ConnectPassword:               b.cfg.Password,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &rm
			// autopaho leaves this false, which asks the broker to strip
			// user properties (mochi does); we want them.
			cp.Properties.RequestProblemInfo = true
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			b.backoff.up()
			b.connOK.Store(true)
			b.m.connected.Set(1)
			b.m.connections.Inc()
			if b.connections.Add(1) > 1 {
				b.m.reconnects.Inc()
			}
			b.log.Info("mqtt connected", "url", b.cfg.MQTTURL, "client_id", b.cfg.ClientID, "session_present", ca.SessionPresent)
			go b.subscribe(ctx, cm, filters)
		},
		OnConnectionDown: func() bool {
			lasted, short := b.backoff.down()
			b.connOK.Store(false)
			b.subOK.Store(false)
			b.m.connected.Set(0)
			b.m.subscribed.Set(0)
			b.logConnectionLost(lasted, short)
			return true
		},
		OnConnectError: func(err error) {
			b.m.connectErrors.Inc()
			if ctx.Err() == nil {
				b.log.Warn("mqtt connect failed", "url", b.cfg.MQTTURL, "err", err)
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   b.cfg.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           b.cfg.AckInterval,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){b.onPublish},
			OnClientError: func(err error) {
				if ctx.Err() == nil {
					b.log.Warn("mqtt client error", "err", err)
				}
			},
			OnServerDisconnect: b.onServerDisconnect,
		},
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
		cc.AttemptConnection = func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			return dialBuffered(ctx, u, b.cfg.TLS)
		}
	}
	return cc
}

// subscribe (re)establishes the shared subscriptions, retrying while the
// connection lasts.
func (b *Bridge) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, filters []paho.SubscribeOptions) {
	for attempt := 0; ctx.Err() == nil && b.connOK.Load(); attempt++ {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		sa, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: filters})
		cancel()
		if err == nil {
			for i, rc := range sa.Reasons {
				if rc >= 0x80 {
					err = fmt.Errorf("broker refused %s with reason code 0x%02x", filters[i].Topic, rc)
					break
				}
			}
		}
		if err == nil {
			b.subOK.Store(true)
			b.m.subscribed.Set(1)
			b.log.Info("mqtt subscribed", "filters", len(filters), "group", b.cfg.Group)
			return
		}
		b.log.Error("mqtt subscribe failed", "err", err, "attempt", attempt+1)
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
		}
	}
}

// onPublish is paho's handler: it only hands the message to its worker.
//
// It also enforces the in-flight bound itself: brokers are supposed to
// honour the Receive Maximum the bridge announces, but Mosquitto 2.0.11 and
// mochi-mqtt were seen sending more unacknowledged messages under load.
// When every slot is taken the handler waits, so paho stops reading and TCP
// pushes back on the broker.
func (b *Bridge) onPublish(pr paho.PublishReceived) (bool, error) {
	if b.presence != nil && isPresence(pr.Packet.Topic) {
		b.onPresence(pr.Packet.Topic, pr.Packet.Payload) // QoS 0: nothing to acknowledge
		return true, nil
	}
	// Count the message before looking at the stop flag, so the drain
	// (which sets the flag, then waits for the count to reach zero) never
	// misses a message on its way in.
	b.infl.Add(1)
	if b.stop.Load() {
		b.infl.Add(-1)
		return true, nil // draining: left unacknowledged, redelivered by the broker
	}
	select {
	case b.slots <- struct{}{}:
	default:
		b.m.blocked.Inc()
		select {
		case b.slots <- struct{}{}:
		case <-b.stopCh:
			b.infl.Add(-1)
			return true, nil
		}
	}
	m := &message{client: pr.Client, pub: pr.Packet, received: b.cfg.Now()}
	if b.testOnReceive != nil {
		b.testOnReceive(pr.Packet)
	}
	b.stats.Received.Add(1)
	b.m.received.Inc()
	b.m.inflight.Set(float64(b.infl.Load()))
	b.queues[b.shard(pr.Packet.Topic)] <- m
	return true, nil
}

// shard keeps one device's messages on one worker: it hashes the topic up
// to the device segment the routes table gives (devices/{tenant}/{device},
// wildfi/{device} with the default table).
func (b *Bridge) shard(topic string) int {
	if len(b.queues) == 1 {
		return 0
	}
	return int(maphash.String(b.seed, b.cfg.Routes.ShardKey(topic)) % uint64(len(b.queues)))
}

// finish acknowledges m on MQTT (its records or dead letter are in Kafka).
func (b *Bridge) finish(m *message) {
	if m.pub.QoS > 0 {
		if err := m.client.Ack(m.pub); err != nil {
			// The connection that delivered m is gone; the broker redelivers.
			b.log.Debug("mqtt ack after reconnect skipped", "topic", m.pub.Topic, "err", err)
		}
	}
	b.stats.Acked.Add(1)
	b.m.acked.Inc()
	b.m.produceLatency.Observe(b.cfg.Now().Sub(m.received).Seconds())
	b.m.inflight.Set(float64(b.infl.Add(-1)))
	<-b.slots
}

// abandon gives m up without acknowledging it (shutdown): the broker keeps
// it in the session and redelivers it.
func (b *Bridge) abandon(m *message) {
	b.m.inflight.Set(float64(b.infl.Add(-1)))
	<-b.slots
}

// bufConn buffers reads (paho reads each packet with several small reads)
// and coalesces writes: paho writes every PUBACK separately, so a burst of
// acknowledgements would cost one syscall each. Write appends to a buffer
// that one flusher goroutine writes out, in order, as soon as it runs; a
// write error is returned by the next Write and Close.
//
// It is a sync.Locker, which paho requires of a connection written from
// several goroutines: paho writes each packet in several Writes (fixed
// header, variable header, properties, payload) and holds the connection's
// lock across them only when it has one. Without it, the downlink's
// publishes (up to 64 devices at once) and paho's PUBACKs interleaved
// fragments of different packets, and the broker read a corrupt stream.
type bufConn struct {
	net.Conn
	r *bufio.Reader

	sync.Mutex // held by paho across one packet's writes (packets.ControlPacket.WriteTo)

	mu      sync.Mutex
	pending []byte
	err     error
	kick    chan struct{} // capacity 1: pending has data
	done    chan struct{} // closed by Close
	once    sync.Once
	flushed chan struct{} // closed when the flusher returned
}

func newBufConn(conn net.Conn) *bufConn {
	c := &bufConn{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10),
		kick: make(chan struct{}, 1), done: make(chan struct{}), flushed: make(chan struct{})}
	go c.flusher()
	return c
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	c.pending = append(c.pending, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *bufConn) flusher() {
	defer close(c.flushed)
	var out []byte
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		runtime.Gosched() // let a burst of writes (acks) accumulate
		c.mu.Lock()
		out, c.pending = c.pending, out[:0]
		c.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		if _, err := c.Conn.Write(out); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		if cap(out) > 1<<20 {
			out = nil // do not pin a huge buffer
		}
	}
}

// Close writes what is pending (best effort, bounded by a deadline) and
// closes the connection.
func (c *bufConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		<-c.flushed
		c.mu.Lock()
		rest := c.pending
		c.pending = nil
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.mu.Unlock()
		if len(rest) > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Conn.Write(rest)
		}
	})
	return c.Conn.Close()
}

func dialBuffered(ctx context.Context, u *url.URL, tlsCfg *tls.Config) (net.Conn, error) {
	host := u.Host
	var conn net.Conn
	var err error
	switch strings.ToLower(u.Scheme) {
	case "ssl", "tls", "mqtts":
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "8883")
		}
		cfg := tlsCfg
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		d := tls.Dialer{Config: cfg}
		conn, err = d.DialContext(ctx, "tcp", host)
	default:
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "1883")
		}
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", host)
	}
	if err != nil {
		return nil, err
	}
	return newBufConn(conn), nil
}
