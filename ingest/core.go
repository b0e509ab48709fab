package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Router routes the messages of a door: a *routes.Table. A device channel
// routes as the topic DeviceTopic gives it (devices/{tenant}/{device}/{channel}
// with the default table), as if it came over MQTT.
type Router interface {
	DeviceTopic(tenant, device, channel string) (topic string, ok bool)
	Route(topic, defaultTenant string) (routes.Match, error)
}

var _ Router = (*routes.Table)(nil)

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
	// Router routes device channels (required).
	Router Router
	// Registry checks every message's device; nil = no check.
	Registry Registry
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
	cfg  Config
	pool sync.Pool // *decode.Output
}

// NewCore returns a Core.
func NewCore(cfg Config) (*Core, error) {
	if cfg.Kafka == nil || cfg.Serde == nil || cfg.Router == nil {
		return nil, errors.New("ingest: a core needs a Kafka client, a serde and a router")
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
	c := &Core{cfg: cfg}
	c.pool.New = func() any { return new(decode.Output) }
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
func (c *Core) IngestBatch(ctx context.Context, ms []Message) []error {
	ps := make([]*pending, len(ms))
	for i := range ms {
		ps[i] = c.start(ctx, &ms[i])
	}
	errs := make([]error, len(ms))
	for i, p := range ps {
		errs[i] = p.wait(ctx)
	}
	return errs
}

// pending is one message in flight.
type pending struct {
	c      *Core
	m      *Message
	letter Letter
	refuse *decode.Error // the refusal whose dead letter is in flight
	done   chan error    // the produce result (nil = acknowledged)
	err    error         // decided without producing
}

func (p *pending) wait(ctx context.Context) error {
	if p.done == nil {
		return p.err
	}
	select {
	case err := <-p.done:
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
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))
	}
}

func (c *Core) start(ctx context.Context, m *Message) *pending {
	l := Letter{Source: c.source(m), Door: m.Door, Tenant: m.Tenant, Device: m.Device, Payload: m.Payload,
		ReceivedAt: m.ReceivedAt, MaxPayload: c.cfg.Limits.MaxPayload}
	out := c.pool.Get().(*decode.Output)
	defer c.pool.Put(out)
	topicOf, de := c.decode(m, &l, out)
	if de != nil {
		return c.deadLetter(ctx, l, de)
	}
	if topicOf == nil { // an ignored route
		return &pending{}
	}
	headers := []kgo.RecordHeader{{Key: HeaderTenant, Value: []byte(l.Tenant)}, {Key: HeaderDoor, Value: []byte(m.Door)}}
	var recs []*kgo.Record
	add := func(kind decode.Kind, v any) *decode.Error {
		topic := topicOf(kind)
		buf, err := c.cfg.Serde.AppendEncode(ctx, nil, topic, v)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonSchemaInvalid, Message: err.Error()}
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(identity.Key(l.Tenant, l.Device)), Value: buf, Headers: headers})
		return nil
	}
	for i := range out.Sensor {
		if de := add(decode.KindSensor, &out.Sensor[i]); de != nil {
			return c.deadLetter(ctx, l, de)
		}
	}
	for i := range out.GPS {
		if de := add(decode.KindGPS, &out.GPS[i]); de != nil {
			return c.deadLetter(ctx, l, de)
		}
	}
	for i := range out.Media {
		if de := add(decode.KindMedia, &out.Media[i]); de != nil {
			return c.deadLetter(ctx, l, de)
		}
	}
	if ctx.Err() != nil {
		return &pending{err: fmt.Errorf("%w: %w", ErrUnavailable, context.Cause(ctx))}
	}
	return c.produce(ctx, &pending{c: c, m: m, letter: l}, recs)
}

// decode routes, checks identity and decodes m into out. It returns the
// Kafka topic of each record kind (nil for an ignored route), or the
// refusal.
func (c *Core) decode(m *Message, l *Letter, out *decode.Output) (topicOf func(decode.Kind) string, de *decode.Error) {
	defer func() {
		if r := recover(); r != nil {
			c.cfg.Log.Error("ingest: decoder panic", "door", m.Door, "channel", m.Channel, "panic", r, "stack", string(debug.Stack()))
			topicOf, de = nil, &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError,
				Message: fmt.Sprintf("decoding failed: %v (a bug; please report it)", r)}
		}
	}()
	recv := m.ReceivedAt.UTC().Truncate(time.Millisecond)
	if m.Door == LoRaWAN {
		return c.decodeLoRaWAN(m, l, recv, out)
	}
	topic, ok := c.cfg.Router.DeviceTopic(m.Tenant, m.Device, m.Channel)
	if !ok {
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel, Message: "no route names a tenant and a device"}
	}
	r, err := c.cfg.Router.Route(topic, "")
	if err != nil {
		return nil, asDecodeErr(err, decode.StageRoute)
	}
	if r.Route.Ignore {
		return nil, nil
	}
	if r.Route.Reply {
		// Command replies are recorded by the MQTT bridge only.
		return nil, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel,
			Message: fmt.Sprintf("channel %q: command replies are accepted over MQTT only", m.Channel)}
	}
	if de := c.admit(m.Tenant, m.Device); de != nil {
		return nil, de
	}
	in := decode.Input{Tenant: m.Tenant, DeviceID: m.Device, Source: r.Source, Kind: r.Kind, Payload: m.Payload, ReceivedAt: recv}
	if err := decode.Decode(r.Route.Decoder.Func, &in, c.cfg.Limits, out); err != nil {
		return nil, asDecodeErr(err, decode.StageDecode)
	}
	return func(decode.Kind) string { return r.Topic }, nil
}

// LoRaWAN is the Message.Door of network servers' webhooks.
const LoRaWAN = "lorawan"

func (c *Core) decodeLoRaWAN(m *Message, l *Letter, recv time.Time, out *decode.Output) (func(decode.Kind) string, *decode.Error) {
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
	return func(k decode.Kind) string {
		if k == decode.KindGPS {
			return c.cfg.GPSTopic
		}
		return c.cfg.SensorTopic
	}, nil
}

func (c *Core) admit(tenant, device string) *decode.Error {
	if err := identity.Validate(tenant, device); err != nil {
		return &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonBadIdentity, Message: err.Error()}
	}
	if c.cfg.Registry == nil {
		return nil
	}
	if _, err := c.cfg.Registry.Admit(tenant, device); err != nil {
		return identityErr(err, identity.Key(tenant, device))
	}
	return nil
}

func identityErr(err error, who string) *decode.Error {
	if errors.Is(err, registry.ErrDeviceInactive) {
		return &decode.Error{Stage: decode.StageRoute, Reason: ReasonDeviceRevoked, Message: err.Error()}
	}
	return &decode.Error{Stage: decode.StageRoute, Reason: ReasonUnknownDevice, Message: who + " is not in the device registry"}
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
func (c *Core) source(m *Message) string {
	if m.Door == LoRaWAN {
		return m.Channel
	}
	if t, ok := c.cfg.Router.DeviceTopic(m.Tenant, m.Device, m.Channel); ok {
		return t
	}
	return m.Tenant + "/" + m.Device + "/" + m.Channel
}

// deadLetter produces l's dead letter for de.
func (c *Core) deadLetter(ctx context.Context, l Letter, de *decode.Error) *pending {
	rec, err := DeadLetterRecord(ctx, c.cfg.Serde, c.cfg.DLQTopic, l, de, c.cfg.Now())
	if err != nil {
		return &pending{err: fmt.Errorf("%w: encoding the dead letter: %v", ErrUnavailable, err)}
	}
	return c.produce(ctx, &pending{c: c, letter: l, refuse: de}, []*kgo.Record{rec})
}

// produce sends recs; p.done gets the first error, or nil once all are
// acknowledged.
func (c *Core) produce(ctx context.Context, p *pending, recs []*kgo.Record) *pending {
	p.done = make(chan error, 1)
	if len(recs) == 0 {
		p.done <- nil
		return p
	}
	var mu sync.Mutex
	left := len(recs)
	var first error
	for _, r := range recs {
		c.cfg.Kafka.Produce(ctx, r, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			if left--; left == 0 {
				p.done <- first
			}
		})
	}
	return p
}
