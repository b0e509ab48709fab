package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/identity"
)

// Timeouts of a run.
const (
	// DefaultConnectTimeout bounds the wait for the first MQTT connection.
	DefaultConnectTimeout = 30 * time.Second
	// DrainTimeout bounds how long a stopping run waits for outstanding
	// PUBACKs and uploads before it gives up on them.
	DrainTimeout   = 30 * time.Second
	publishTimeout = 30 * time.Second
	// queueDepth is the hand-off buffer of each publish worker; small, as
	// media messages carry their object.
	queueDepth   = 8
	publishTries = 5
	// retryPause is the pause before the second try; it doubles for
	// each further one (0.2+0.4+0.8+1.6 s over all five).
	retryPause = 200 * time.Millisecond
)

// ErrNotConnected is returned by Run when no broker connection came up
// within Config.ConnectTimeout.
var ErrNotConnected = errors.New("mqtt broker not reachable")

// Run publishes the simulated traffic until ctx is cancelled, cfg.Duration
// has passed or cfg.Count messages went out, then waits (at most
// DrainTimeout) for outstanding acknowledgements, disconnects and returns
// what was sent. Stopping through ctx is a normal end: Run then returns the
// summary and a nil error. A bad cfg is a *ConfigError.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (Summary, error) {
	start := time.Now()
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return Summary{}, err
	}
	gen, err := NewGenerator(cfg)
	if err != nil {
		return Summary{}, err
	}
	cfg = gen.cfg // with defaults
	cnt := newCounters()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return Summary{}, err
	}

	var s3c *s3.Client
	if cfg.MediaRatio > 0 && gen.cameraShare > 0 {
		if s3c, err = newS3Client(ctx, cfg.S3); err != nil {
			return Summary{}, err
		}
		if cfg.S3.CreateBucket {
			bctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
			err := ensureBucket(bctx, s3c, cfg.Bucket)
			cancel()
			if err != nil {
				return Summary{}, fmt.Errorf("s3 %s: %w (media ratio 0 simulates without media)", cfg.S3.Endpoint, err)
			}
		}
	}

	// The connections outlive ctx: a stopping run still collects its
	// PUBACKs before it disconnects.
	connCtx, closeConns := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConns()
	conns, err := dial(ctx, connCtx, cfg, gen.devices, log, m)
	if err != nil {
		return Summary{}, err
	}
	log.Info("simulate: publishing", "mqtt", redactURL(cfg.MQTTURL), "tenant", cfg.Tenant, "devices", cfg.Devices,
		"rate", cfg.Rate, "duration", cfg.Duration.String(), "count", cfg.Count, "invalid_ratio", cfg.InvalidRatio, "seed", cfg.Seed)

	// Workers publish; a device always goes to the same worker (devices
	// take turns, so device i % workers spreads the load evenly), so its
	// messages keep their order.
	pubCtx, cancelPub := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelPub()
	p := &publisher{cfg: cfg, conns: conns, s3: s3c, cnt: cnt, m: m, log: log}
	queues := make([]chan Message, cfg.InFlight)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan Message, queueDepth)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range queues[i] {
				p.handle(pubCtx, msg)
			}
		}()
	}

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if cfg.SummaryEvery > 0 {
		progressWG.Add(1)
		go func() {
			defer progressWG.Done()
			t := time.NewTicker(cfg.SummaryEvery)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
					s := cnt.snapshot(time.Since(start))
					log.Info("simulate: "+s.String(), summaryAttrs(s)...)
				}
			}
		}()
	}

	stopReason := schedule(ctx, cfg, gen, queues, cnt)

	for _, q := range queues {
		close(q)
	}
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(DrainTimeout):
		log.Warn("simulate: drain timed out; abandoning outstanding publishes", "timeout", DrainTimeout.String())
		cancelPub()
		<-drained
	}
	close(progressDone)
	progressWG.Wait()
	for _, c := range conns {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = c.Disconnect(dctx)
		cancel()
	}
	closeConns()
	s := cnt.snapshot(time.Since(start))
	log.Info("simulate: done ("+stopReason+"): "+s.String(), summaryAttrs(s)...)
	return s, nil
}

// schedule paces the generator with a token bucket (cfg.Rate tokens per
// second, at most cfg.Burst saved up) and hands each message to its
// device's worker. It returns why it stopped.
func schedule(ctx context.Context, cfg Config, gen *Generator, queues []chan Message, cnt *counters) string {
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	burst := time.Duration(cfg.Burst) * interval
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := time.Now()
	var scheduled int64
	for {
		if cfg.Count > 0 && scheduled >= cfg.Count {
			return "count reached"
		}
		now := time.Now()
		if now.Sub(next) > burst {
			next = now.Add(-burst) // tokens do not pile up beyond the burst
		}
		if wait := next.Sub(now); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return "stopped"
			case <-deadline:
				return "duration reached"
			case <-timer.C:
			}
		} else {
			select {
			case <-ctx.Done():
				return "stopped"
			case <-deadline:
				return "duration reached"
			default:
			}
		}
		next = next.Add(interval)
		msg, ok := gen.Next(cfg.Clock.Now())
		if !ok {
			cnt.silent.Add(1)
			continue
		}
		q := queues[msg.dev%len(queues)]
		select {
		case q <- msg:
			scheduled++
		case <-ctx.Done():
			return "stopped"
		case <-deadline:
			return "duration reached"
		}
	}
}

// publisher uploads media and publishes messages with QoS 1.
type publisher struct {
	cfg   Config
	conns []*autopaho.ConnectionManager
	s3    *s3.Client
	cnt   *counters
	m     *metrics
	log   *slog.Logger

	warned atomic.Int64 // publish errors logged so far (the first few only)
}

func (p *publisher) handle(ctx context.Context, msg Message) {
	if msg.Media != nil {
		err := errors.New("no S3 client")
		if p.s3 != nil { // always set when the generator makes media
			uctx, cancel := context.WithTimeout(ctx, publishTimeout)
			err = putMedia(uctx, p.s3, msg.Media)
			cancel()
		}
		if err != nil {
			p.cnt.uploadErr.Add(1)
			p.m.uploads.WithLabelValues("error").Inc()
			p.warn("simulate: media upload failed; metadata message not sent", err, msg)
			return
		}
		p.cnt.uploads.Add(1)
		p.m.uploads.WithLabelValues("ok").Inc()
	}
	conn := p.conns[msg.dev%len(p.conns)]
	var err error
	for try := range publishTries {
		if try > 0 {
			// A connection that just dropped may still look up to
			// autopaho for a moment: without a pause the tries would all
			// fail against it within milliseconds.
			pause := time.NewTimer(retryPause << (try - 1))
			select {
			case <-ctx.Done():
			case <-pause.C:
			}
			pause.Stop()
			actx, cancel := context.WithTimeout(ctx, publishTimeout)
			_ = conn.AwaitConnection(actx)
			cancel()
			if ctx.Err() != nil {
				break
			}
		}
		// paho bounds the wait for the PUBACK (its PacketTimeout).
		var resp *paho.PublishResponse
		resp, err = conn.Publish(ctx, &paho.Publish{QoS: 1, Topic: msg.Topic, Payload: msg.Payload})
		if err == nil && resp != nil && resp.ReasonCode >= 0x80 {
			err = fmt.Errorf("broker refused the publish: reason code 0x%02x %s", resp.ReasonCode, resp.Properties.ReasonString)
			break // a refusal is final
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		p.cnt.pubErrs.Add(1)
		p.m.pubErrs.Inc()
		p.warn("simulate: publish failed", err, msg)
		return
	}
	if msg.Class != "" {
		p.cnt.invalid[msg.Class].Add(1)
		p.m.invalidBy[msg.Class].Inc()
		return
	}
	p.cnt.sent[msg.Channel].Add(1)
	p.m.sentBy[msg.Channel].Inc()
}

// warn logs the first 20 failures in full, then every 1000th.
func (p *publisher) warn(what string, err error, msg Message) {
	if n := p.warned.Add(1); n <= 20 || n%1000 == 0 {
		p.log.Warn(what, "err", err, "topic", msg.Topic, "bytes", len(msg.Payload), "failures", n)
	}
}

// dial opens cfg.Connections MQTT connections (MQTT v5, clean start: a
// device publisher needs no session) and waits, bounded by ConnectTimeout
// and ctx, until each is up. The connections live until connCtx ends.
func dial(ctx, connCtx context.Context, cfg Config, herd []*device, log *slog.Logger, m *metrics) ([]*autopaho.ConnectionManager, error) {
	u, err := brokerURL(cfg.MQTTURL)
	if err != nil {
		return nil, &ConfigError{Flag: "mqtt-url", Reason: err.Error()}
	}
	user, pass := cfg.MQTTUser, cfg.MQTTPassword
	if u.User != nil {
		if user == "" {
			user = u.User.Username()
		}
		if pw, ok := u.User.Password(); ok && pass == "" {
			pass = pw
		}
		u.User = nil
	}
	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(250*time.Millisecond, 10*time.Second, 500*time.Millisecond, 2),
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts", "wss":
		tc, err := cli.TLSConfig("mqtt-tls", cfg.TLS.CA, cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, err
		}
		ac.TlsCfg = tc
	}
	if user != "" {
		ac.ConnectUsername = user
		ac.ConnectPassword = []byte(pass)
	}
	prefix := cfg.ClientID
	if prefix == "" {
		prefix = "drover-simulate-" + strconv.Itoa(os.Getpid())
	}
	var up atomic.Int64
	n := cfg.Connections
	if cfg.Credentials != nil {
		n = len(herd) // connection i is device i (Message.dev)
	}
	conns := make([]*autopaho.ConnectionManager, 0, n)
	for i := range n {
		c := ac
		c.ClientID = prefix
		if n > 1 {
			c.ClientID = prefix + "-" + strconv.Itoa(i)
		}
		if cfg.Credentials != nil {
			key := identity.Key(cfg.Tenant, herd[i].id)
			secret, ok := cfg.Credentials[herd[i].id]
			if !ok {
				return nil, &ConfigError{Flag: "secrets-file", Reason: "no secret for device " + key}
			}
			c.ClientID, c.ConnectUsername, c.ConnectPassword = key, key, []byte(secret)
		}
		id := c.ClientID
		answering := cfg.Credentials != nil && cfg.AnswerCommands
		following := cfg.Credentials != nil && cfg.FollowShadow
		var self atomic.Pointer[autopaho.ConnectionManager]
		var subs []paho.SubscribeOptions
		if answering {
			subs = append(subs, paho.SubscribeOptions{Topic: commandFilter(id), QoS: 1})
		}
		if following {
			subs = append(subs, paho.SubscribeOptions{Topic: shadowFilter(id), QoS: 1})
		}
		if len(subs) > 0 {
			c.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				cm := self.Load()
				switch {
				case cm == nil:
				case strings.HasSuffix(pr.Packet.Topic, "/shadow/delta"):
					go follow(connCtx, cm, id, pr.Packet, log, m)
				default:
					go answer(connCtx, cm, pr.Packet, log, m)
				}
				return true, nil
			}}
		}
		c.OnConnectionUp = func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			self.Store(cm)
			if len(subs) > 0 {
				go func() {
					sctx, cancel := context.WithTimeout(connCtx, 10*time.Second)
					defer cancel()
					if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: subs}); err != nil {
						log.Warn("simulate: subscribing to commands and shadow failed", "client_id", id, "err", err)
					}
				}()
			}
			m.connected.Set(float64(up.Add(1)))
			log.Debug("simulate: mqtt connected", "client_id", id)
			if cfg.OnConnect != nil {
				cfg.OnConnect()
			}
		}
		c.OnConnectionDown = func() bool {
			m.connected.Set(float64(up.Add(-1)))
			log.Warn("simulate: mqtt connection lost; reconnecting", "client_id", id)
			return true
		}
		c.OnConnectError = func(err error) {
			log.Debug("simulate: mqtt connect failed", "client_id", id, "err", err)
		}
		cm, err := autopaho.NewConnection(connCtx, c)
		if err != nil {
			return nil, fmt.Errorf("mqtt %s: %w", u.Redacted(), err)
		}
		conns = append(conns, cm)
	}
	actx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	for _, cm := range conns {
		if err := cm.AwaitConnection(actx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: no connection to %s within %s", ErrNotConnected, u.Redacted(), cfg.ConnectTimeout)
		}
	}
	return conns, nil
}

func redactURL(s string) string {
	u, err := brokerURL(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

func summaryAttrs(s Summary) []any {
	attrs := []any{"sent", s.Total(), "invalid", s.InvalidTotal(), "publish_errors", s.PublishErrors,
		"media_uploads", s.MediaUploads, "upload_errors", s.UploadErrors}
	for _, ch := range channels {
		attrs = append(attrs, "sent_"+ch, s.Sent[ch])
	}
	return attrs
}
