package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/ingest/sparkplug"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Registry is the registry check: Admit as registry.View has it, and the
// DevEUI lookup of LoRaWAN webhooks.
type Registry interface {
	Admit(tenant, device string) (*registry.Device, error)
	DeviceByAltID(kind, value string) (*registry.Device, bool)
}

// Config configures a Core.
type Config struct {
	Kafka *kgo.Client    // the producer (idempotent, acks=all)
	Serde *schemas.Serde // Avro in the Confluent wire format
	// Routes is the routes table (required; routes.Default() is the
	// embedded one). A device channel routes as the device topic
	// DeviceTopic gives it (devices/{tenant}/{device}/{channel} with the
	// default table), as if it came over MQTT.
	Routes *routes.Table
	// Registry checks every message's device (enforce) and resolves
	// LoRaWAN DevEUIs; nil = no check.
	Registry Registry
	// Admission, when set, is the registry check of routed messages
	// instead of Registry's: enforce or observe mode, and the tenant of
	// topics that name none (the MQTT bridge's --registry).
	Admission *Admission
	// Limits are the decoders' checks (default decode.DefaultLimits()).
	Limits decode.Limits
	// DLQTopic, SensorTopic and GPSTopic default to dlq.events, raw.sensor
	// and raw.gps (the last two for LoRaWAN, whose records are not routed
	// by channel).
	DLQTopic, SensorTopic, GPSTopic string
	Now                             func() time.Time
	Log                             *slog.Logger
}

// Core decodes, validates, routes and produces the messages doors hand
// it, and writes the dead letter of each one it refuses. It is safe for
// concurrent use.
type Core struct {
	cfg   Config
	pool  sync.Pool          // *scratch
	spark *sparkplug.Session // the Sparkplug B births, sequences and deaths seen
}

// ProducerLinger is how long the producer of a door built on the core
// (Config.Kafka of `drover http`, `drover coap`, drover dev's doors) lets a
// partition's batch wait for more records: not at all. Every Ingest caller
// waits for Kafka's acknowledgement before it answers its client, so a
// linger is pure latency on each request: with franz-go's default (10 ms),
// or even 1 ms, one-reading HTTP requests from 16 clients completed a third
// of what a handler calling ProduceSync (which unlingers the partitions it
// waits for) did with the same client. Records still batch while a request
// to their broker is in flight.
const ProducerLinger time.Duration = 0

// NewCore returns a Core.
func NewCore(cfg Config) (*Core, error) {
	if cfg.Kafka == nil || cfg.Serde == nil || cfg.Routes == nil {
		return nil, errors.New("ingest: a core needs a Kafka client, a serde and a routes table")
	}
	if cfg.Limits == (decode.Limits{}) {
		cfg.Limits = decode.DefaultLimits()
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = topics.DLQ
	}
	if cfg.SensorTopic == "" {
		cfg.SensorTopic = topics.RawSensor
	}
	if cfg.GPSTopic == "" {
		cfg.GPSTopic = topics.RawGPS
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Core{cfg: cfg, spark: sparkplug.NewSession()}
	c.pool.New = func() any { return new(scratch) }
	return c, nil
}

// Ingest handles one message: nil once Kafka acknowledged its records, the
// *decode.Error of its refusal once Kafka acknowledged its dead letter, or
// an error wrapping ErrUnavailable when neither was acknowledged before
// ctx ended (the door tells the client to retry: nothing was accepted).
func (c *Core) Ingest(ctx context.Context, m Message) error {
	return c.IngestBatch(ctx, []Message{m})[0]
}

// IngestBatch handles several messages at once: every message's records
// are produced, in order, before the first acknowledgement is awaited.
// Each message gets its own result, as Ingest would give it; the batch
// shares one channel that its messages signal as they complete.
func (c *Core) IngestBatch(ctx context.Context, ms []Message) []error {
	ps := make([]*pending, len(ms))
	room := make([]pending, len(ms)) // one allocation for the items produced
	sig := make(chan struct{}, len(ms))
	var rt channelRoute // a batch's items share their device channel's route
	for i := range ms {
		room[i].sig = sig
		ps[i] = c.start(ctx, &ms[i], &rt, &room[i])
	}
	errs := make([]error, len(ms))
	for i, p := range ps {
		errs[i] = p.wait(ctx)
	}
	return errs
}

// channelRoute is the route of a device channel (DeviceTopic, then
// Route, then the identity check): the routes table does not change, so
// the items of a batch, which share their device and channel, route once.
type channelRoute struct {
	valid                   bool
	tenant, device, channel string
	topic                   string
	ok                      bool // DeviceTopic found a route naming a tenant and a device
	match                   routes.Match
	err                     error      // Route's
	idErr                   error      // identity.Validate's
	meta                    recordMeta // the headers and key of its records (Prepare's)
}

// of returns m's channel route, computing it unless it is r's already.
func (r *channelRoute) of(t *routes.Table, m *Message) *channelRoute {
	if r.valid && r.tenant == m.Tenant && r.device == m.Device && r.channel == m.Channel {
		return r
	}
	*r = channelRoute{valid: true, tenant: m.Tenant, device: m.Device, channel: m.Channel}
	r.topic, r.ok = t.DeviceTopic(m.Tenant, m.Device, m.Channel)
	if r.ok {
		r.match, r.err = t.Route(r.topic, "")
		r.idErr = identity.Validate(m.Tenant, m.Device)
	}
	return r
}

// pending is one message in flight. It is the context of its records
// (the produce ctx, which franz-go would have given them, wrapped), so
// one function, pendingAcked, is the promise of every record: no
// closure per message.
type pending struct {
	context.Context // the produce ctx; set by produce

	c      *Core
	letter Letter
	refuse *decode.Error // the refusal whose dead letter is in flight
	err    error         // decided without producing
	// sig gets a value each time a message sharing it completes (its
	// capacity is the number of messages sharing it, so signalling never
	// blocks): the messages of a batch share one.
	sig      chan struct{}
	produced bool // produce was called: wait for completion

	left  atomic.Int32 // records not yet acknowledged
	mu    sync.Mutex
	first error       // the first produce error; final once fin is set
	fin   atomic.Bool // every record is acknowledged or failed
}

func (p *pending) wait(ctx context.Context) error {
	if !p.produced {
		return p.err
	}
	// A signal is sent after fin is set, and there is one per completed
	// message sharing sig: while p is not complete its own signal is yet
	// to come, so the loop cannot block past p's completion.
	for !p.fin.Load() {
		select {
		case <-p.sig:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
		}
	}
	p.mu.Lock()
	err := p.first
	p.mu.Unlock()
	if err == nil {
		if p.refuse != nil {
			return p.refuse
		}
		return nil
	}
	if p.refuse != nil || ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// Kafka refused a record for good (too large, say): the message
	// becomes a dead letter of stage produce.
	de := &decode.Error{Stage: decode.StageProduce, Reason: decode.ReasonProduceFailed, Message: err.Error()}
	q := p.c.deadLetter(ctx, p.letter, de)
	return q.wait(ctx)
}

// start prepares m and produces its records in p (its dead letter, or
// its result, in a pending of their own).
func (c *Core) start(ctx context.Context, m *Message, rt *channelRoute, p *pending) *pending {
	var cr *channelRoute
	source := ""
	if m.Door == LoRaWAN {
		source = m.Channel
	} else {
		cr = rt.of(c.cfg.Routes, m)
		source = cr.source()
	}
	l := Letter{Source: source, Door: m.Door, Tenant: m.Tenant, Device: m.Device, Payload: m.Payload,
		ReceivedAt: m.ReceivedAt, MaxPayload: c.cfg.Limits.MaxPayload}
	var recs []*kgo.Record
	var de *decode.Error
	if m.Door == LoRaWAN {
		recs, de = c.prepareLoRaWAN(ctx, m, &l)
	} else {
		var err error
		recs, err = c.prepareChannel(ctx, m, cr, &l)
		if err != nil {
			var ok bool
			if de, ok = asDecodeError(err); !ok {
				return &pending{err: err}
			}
		}
	}
	if de != nil {
		return c.deadLetter(ctx, l, de)
	}
	if ctx.Err() != nil {
		return &pending{err: fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))}
	}
	p.c, p.letter = c, l
	return c.produce(ctx, p, recs)
}

// prepareChannel routes m's device channel as the device topic it stands
// for and Prepares it: its records (none for an ignored route), its
// refusal (a *decode.Error), or an error wrapping ErrUnavailable.
func (c *Core) prepareChannel(ctx context.Context, m *Message, cr *channelRoute, l *Letter) ([]*kgo.Record, error) {
	topic, r := cr.topic, cr.match
	if !cr.ok {
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel, Message: "no route names a tenant and a device"}
	}
	if cr.err != nil {
		return nil, asDecodeErr(cr.err, decode.StageRoute)
	}
	if r.Route.Ignore {
		return nil, nil
	}
	if r.Route.Reply {
		// Command replies are recorded by the MQTT bridge only.
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel,
			Message: fmt.Sprintf("channel %q: command replies are accepted over MQTT only", m.Channel)}
	}
	if err := cr.idErr; err != nil {
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonBadIdentity, Message: err.Error()}
	}
	rt := Routed{Door: m.Door, Topic: topic, Match: r, Payload: m.Payload, ReceivedAt: m.ReceivedAt, meta: &cr.meta}
	p, err := c.Prepare(ctx, &rt)
	l.Tenant = rt.Match.Tenant
	if err != nil {
		return nil, err
	}
	return p.Records, nil
}

// LoRaWAN is the Message.Door of network servers' webhooks.
const LoRaWAN = "lorawan"

// prepareLoRaWAN reads a network server's webhook, resolves its DevEUI in
// the registry and encodes its records (readings to raw.sensor, positions
// to raw.gps); none for an event the pipeline ignores.
func (c *Core) prepareLoRaWAN(ctx context.Context, m *Message, l *Letter) (recs []*kgo.Record, de *decode.Error) {
	defer func() {
		if r := recover(); r != nil {
			c.cfg.Log.Error("ingest: decoder panic", "door", m.Door, "channel", m.Channel, "panic", r, "stack", string(debug.Stack()))
			recs, de = nil, &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError,
				Message: fmt.Sprintf("decoding failed: %v (a bug; please report it)", r)}
		}
	}()
	recv := m.ReceivedAt.UTC().Truncate(time.Millisecond)
	var ev *lorawan.Event
	var err error
	switch {
	case m.Channel == "lorawan/tts":
		ev, err = lorawan.ParseTTS(m.Payload)
	case strings.HasPrefix(m.Channel, "lorawan/chirpstack/"):
		ev, err = lorawan.ParseChirpStack(strings.TrimPrefix(m.Channel, "lorawan/chirpstack/"), m.Payload)
	default:
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel, Message: fmt.Sprintf("no LoRaWAN network server at %q", m.Channel)}
	}
	if err != nil {
		return nil, asDecodeErr(err, decode.StageDecode)
	}
	if ev.Kind == lorawan.KindIgnored {
		return nil, nil
	}
	if c.cfg.Registry == nil {
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: ReasonUnknownDevice, Message: "no registry to resolve DevEUI " + ev.DevEUI}
	}
	d, err := lorawan.Resolve(c.cfg.Registry, ev.DevEUI)
	if err != nil {
		return nil, identityErr(err, "DevEUI "+ev.DevEUI)
	}
	m.Tenant, m.Device = d.Tenant, d.ID
	l.Tenant, l.Device = d.Tenant, d.ID
	sc := c.pool.Get().(*scratch)
	defer c.putScratch(sc)
	out := &sc.out
	// Through decode.Decode, so the records get MQTT's validation (ts
	// window, finite values, printable metric names, one value per metric
	// and time).
	records := func(_ *decode.Input, out *decode.Output) error {
		_, err := lorawan.Records(ev, d.Tenant, d.ID, recv, out)
		return err
	}
	in := decode.Input{Tenant: d.Tenant, DeviceID: d.ID, Source: lorawan.Source, Payload: m.Payload, ReceivedAt: recv}
	if err := decode.Decode(records, &in, c.cfg.Limits, out); err != nil {
		return nil, asDecodeErr(err, decode.StageDecode)
	}
	headers := []kgo.RecordHeader{{Key: HeaderTenant, Value: []byte(d.Tenant)}, {Key: HeaderDoor, Value: []byte(m.Door)}}
	return c.encode(ctx, d.Tenant, d.ID, out, kindTopics{c.cfg.SensorTopic, c.cfg.GPSTopic, c.cfg.SensorTopic}, headers)
}

func identityErr(err error, who string) *decode.Error {
	if errors.Is(err, registry.ErrDeviceInactive) {
		return &decode.Error{Stage: decode.StageRoute, Reason: ReasonDeviceRevoked, Message: err.Error()}
	}
	return &decode.Error{Stage: decode.StageRoute, Reason: ReasonUnknownDevice, Message: who + " is not in the device registry"}
}

// asDecodeError is errors.As(err, &de) for a *decode.Error; de is a
// variable of its own so that a caller's does not escape to the heap
// (one allocation per message otherwise, refused or not).
func asDecodeError(err error) (de *decode.Error, ok bool) {
	ok = errors.As(err, &de)
	return de, ok
}

func asDecodeErr(err error, stage decode.Stage) *decode.Error {
	var de *decode.Error
	if errors.As(err, &de) {
		return de
	}
	return &decode.Error{Stage: stage, Reason: decode.ReasonInternalError, Message: err.Error()}
}

// source is what a dead letter names as its source: the device topic the
// message stands for, so a re-drive routes it like an MQTT message.
func (r *channelRoute) source() string {
	if r.ok {
		return r.topic
	}
	return r.tenant + "/" + r.device + "/" + r.channel
}

// deadLetter produces l's dead letter for de.
func (c *Core) deadLetter(ctx context.Context, l Letter, de *decode.Error) *pending {
	rec, err := DeadLetterRecord(ctx, c.cfg.Serde, c.cfg.DLQTopic, l, de, c.cfg.Now())
	if err != nil {
		return &pending{err: fmt.Errorf("%w: encoding the dead letter: %v", ErrUnavailable, err)}
	}
	return c.produce(ctx, &pending{c: c, letter: l, refuse: de}, []*kgo.Record{rec})
}

// produce sends recs in p; p completes with the first error, or nil
// once all are acknowledged. A p without a sig gets one of its own.
func (c *Core) produce(ctx context.Context, p *pending, recs []*kgo.Record) *pending {
	p.produced = true
	if len(recs) == 0 {
		p.fin.Store(true) // wait looks at fin first: no signal needed
		return p
	}
	if p.sig == nil {
		p.sig = make(chan struct{}, 1)
	}
	p.Context = ctx
	p.left.Store(int32(len(recs)))
	for _, r := range recs {
		r.Context = p
		c.cfg.Kafka.Produce(ctx, r, pendingAcked)
	}
	return p
}

// pendingAcked is the produce promise of every record produce sends: its
// context is its message's pending. Were it anything else (a producer hook
// replacing the context, which no hook of drover's does), the message would
// not complete and its caller would answer unavailable at its deadline —
// the client retries; nothing is lost and nothing panics.
func pendingAcked(r *kgo.Record, err error) {
	if p, ok := r.Context.(*pending); ok {
		p.acked(err)
	}
}

// acked counts one of p's records as acknowledged (err == nil) or failed.
func (p *pending) acked(err error) {
	if err != nil {
		p.mu.Lock()
		if p.first == nil {
			p.first = err
		}
		p.mu.Unlock()
	}
	if p.left.Add(-1) == 0 {
		p.fin.Store(true)
		p.sig <- struct{}{}
	}
}
