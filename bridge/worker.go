package bridge

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/ingest/sparkplug"
)

// Kafka header names of the MQTT door, besides ingest's (drover.tenant,
// mqtt.topic, drover.stage, ...).
const (
	HeaderContentType = "content-type"
	// HeaderUserPrefix prefixes each MQTT v5 user property (mqtt.user.<name>).
	HeaderUserPrefix = "mqtt.user."
)

// Door is the MQTT bridge's name in dead letters and metrics (drover.door).
const Door = "mqtt"

// worker decodes, validates and produces messages one at a time; its
// Output is reused.
type worker struct {
	b   *Bridge
	out decode.Output
	buf []byte
}

// recordBatch is the set of Kafka records of one message.
type recordBatch []*kgo.Record

func (w *worker) process(m *message) {
	b := w.b
	match, err := b.cfg.Routes.Route(m.pub.Topic, b.cfg.DefaultTenant)
	if err != nil {
		w.deadLetter(m, match, err)
		return
	}
	if match.Route.Ignore {
		b.finish(m)
		return
	}
	_, flag, err := b.cfg.Admission.Check(&match)
	if err != nil {
		w.deadLetter(m, match, err)
		return
	}
	if match.Route.Reply {
		w.reply(m, match)
		return
	}
	in := decode.Input{
		Tenant: match.Tenant, DeviceID: match.Device, Source: match.Source, Kind: match.Kind,
		Payload: m.pub.Payload, ReceivedAt: m.received.UTC().Truncate(time.Millisecond),
	}
	if match.Route.Decoder.Name == decode.Sparkplug {
		err = w.decodeSparkplug(m.pub.Topic, &in)
	} else {
		err = w.decode(match, &in)
	}
	if err != nil {
		w.deadLetter(m, match, err)
		return
	}
	if w.out.Len() == 0 { // a Sparkplug message without numbers (a stale death, say)
		b.finish(m)
		return
	}
	if err := b.waitSchema(match.Topic); err != nil {
		b.abandon(m)
		return
	}
	headers := recordHeaders(m.pub, match.Tenant)
	if flag != "" {
		headers = append(headers, kgo.RecordHeader{Key: ingest.HeaderRegistry, Value: []byte(flag)})
	}
	recs := make(recordBatch, 0, w.out.Len())
	key := []byte(identity.Key(match.Tenant, match.Device))
	add := func(v any) error {
		buf, err := b.cfg.Serde.AppendEncode(b.prodCtx, nil, match.Topic, v)
		if err != nil {
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonSchemaInvalid, Message: err.Error()}
		}
		recs = append(recs, &kgo.Record{Topic: match.Topic, Key: key, Value: buf, Headers: headers})
		return nil
	}
	for i := range w.out.Sensor {
		if d := w.out.Sensor[i].DeviceID; d != match.Device {
			// A Sparkplug death takes the devices behind an edge node
			// offline: each reading is keyed by its own device.
			key = []byte(identity.Key(match.Tenant, d))
		}
		if err := add(&w.out.Sensor[i]); err != nil {
			w.deadLetter(m, match, err)
			return
		}
	}
	for i := range w.out.GPS {
		if err := add(&w.out.GPS[i]); err != nil {
			w.deadLetter(m, match, err)
			return
		}
	}
	for i := range w.out.Media {
		if err := add(&w.out.Media[i]); err != nil {
			w.deadLetter(m, match, err)
			return
		}
	}
	b.produce(m, match, recs, false)
}

// decode runs the route's decoder; a panic (a bug) becomes an
// internal_error dead letter instead of crashing the bridge, which would
// only have the broker redeliver the message to the next replica.
func (w *worker) decode(match routes.Match, in *decode.Input) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.b.log.Error("decoder panic", "decoder", match.Route.Decoder.Name, "panic", r, "stack", string(debug.Stack()))
			err = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError,
				Message: fmt.Sprintf("decoder %s failed: %v (a bug; please report it)", match.Route.Decoder.Name, r)}
		}
	}()
	return decode.Decode(match.Route.Decoder.Func, in, w.b.cfg.Limits, &w.out)
}

// decodeSparkplug reads a Sparkplug B message with the bridge's session:
// its birth certificates resolve aliases, sequence gaps become readings,
// deaths take devices offline, and a DATA message before its BIRTH is
// refused (sparkplug.ReasonNoBirth). The records are checked as a
// decoder's are (decode.Validate).
func (w *worker) decodeSparkplug(topic string, in *decode.Input) error {
	w.out.Reset()
	if lim := w.b.cfg.Limits.MaxPayload; lim > 0 && len(in.Payload) > lim {
		return &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonPayloadTooLarge, Message: fmt.Sprintf("payload is %d bytes, limit %d", len(in.Payload), lim)}
	}
	t, err := sparkplug.ParseTopic(topic)
	if err != nil {
		return err
	}
	sm, err := w.b.sparkplug.Handle(t, in.Payload)
	if err != nil {
		return err
	}
	if sm.Gap != nil {
		w.b.log.Warn("sparkplug sequence gap", "topic", topic, "expected", sm.Gap.Expected, "got", sm.Gap.Got)
	}
	if err := sparkplug.Records(sm, in, &w.out); err != nil {
		return err
	}
	if w.out.Len() == 0 {
		return nil
	}
	return decode.Validate(in, w.b.cfg.Limits, &w.out)
}

// waitSchema makes sure topic's schema id is known, retrying while the
// registry is unreachable (that is not the message's fault).
func (b *Bridge) waitSchema(topic string) error {
	for attempt := 0; ; attempt++ {
		_, err := b.cfg.Serde.ID(b.prodCtx, topic)
		if err == nil {
			return nil
		}
		if b.prodCtx.Err() != nil {
			return b.prodCtx.Err()
		}
		if attempt%10 == 0 {
			b.log.Error("schema registry: cannot resolve schema; holding messages", "topic", topic, "err", err)
		}
		select {
		case <-b.prodCtx.Done():
			return b.prodCtx.Err()
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
}

// produce sends recs and acknowledges m when Kafka acknowledged all of
// them. A record Kafka refuses for good turns the message into a dead letter
// (stage produce); dead is true when recs is that dead letter.
func (b *Bridge) produce(m *message, match routes.Match, recs recordBatch, dead bool) {
	m.pending.Store(int32(len(recs)))
	m.failErr.Store(nil)
	for _, r := range recs {
		b.kafka.Produce(b.prodCtx, r, func(r *kgo.Record, err error) {
			if err != nil {
				m.failErr.CompareAndSwap(nil, &err)
			} else if dead {
				b.stats.DeadLetters.Add(1)
				b.m.produced.WithLabelValues(r.Topic).Inc()
			} else {
				b.stats.Records.Add(1)
				b.m.produced.WithLabelValues(r.Topic).Inc()
			}
			if m.pending.Add(-1) != 0 {
				return
			}
			perr := m.failErr.Load()
			switch {
			case perr == nil:
				b.finish(m)
			case b.prodCtx.Err() != nil || errors.Is(*perr, kgo.ErrClientClosed):
				b.abandon(m) // shutting down: the broker redelivers
			case dead:
				// The dead letter itself was refused: retry it, never ack
				// without it.
				b.log.Error("dead letter refused by kafka; retrying", "topic", m.pub.Topic, "err", *perr)
				go func() {
					select {
					case <-b.prodCtx.Done():
						b.abandon(m)
					case <-time.After(time.Second):
						b.produce(m, match, recs, true)
					}
				}()
			case !m.retried:
				// Kafka fails a whole batch when one record in it is too
				// large: give the message's records one more, separate try
				// before calling them bad.
				m.retried = true
				b.log.Warn("kafka refused a record; retrying the message once", "topic", m.pub.Topic, "err", *perr)
				go b.produce(m, match, recs, false)
			default:
				b.log.Warn("kafka refused a record again; writing a dead letter", "topic", m.pub.Topic, "err", *perr)
				de := &decode.Error{Stage: decode.StageProduce, Reason: decode.ReasonProduceFailed, Message: (*perr).Error()}
				go b.produceDeadLetter(m, match, de)
			}
		})
	}
}

func (w *worker) deadLetter(m *message, match routes.Match, err error) {
	var de *decode.Error
	if !errors.As(err, &de) {
		de = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonWrongShape, Message: err.Error()}
	}
	w.b.produceDeadLetter(m, match, de)
}

// produceDeadLetter writes m's dead letter and acknowledges m once Kafka
// has it. If the dead letter cannot even be built (registry down at
// shutdown), m is left unacknowledged for redelivery.
func (b *Bridge) produceDeadLetter(m *message, match routes.Match, de *decode.Error) {
	if err := b.waitSchema(b.cfg.DLQTopic); err != nil {
		b.abandon(m)
		return
	}
	rec, err := b.deadLetterRecord(m, match, de)
	if err != nil {
		b.log.Error("cannot encode dead letter; leaving the message unacknowledged", "topic", m.pub.Topic, "err", err)
		b.abandon(m)
		return
	}
	b.m.deadLetters.WithLabelValues(string(de.Stage), string(de.Reason)).Inc()
	b.log.Debug("dead letter", "topic", m.pub.Topic, "stage", de.Stage, "reason", de.Reason, "message", de.Message)
	b.produce(m, match, recordBatch{rec}, true)
}

// deadLetterRecord builds the dlq.events record for m (ingest's one
// dead-letter builder, with the MQTT message's properties).
func (b *Bridge) deadLetterRecord(m *message, match routes.Match, de *decode.Error) (*kgo.Record, error) {
	l := ingest.Letter{Source: m.pub.Topic, Tenant: match.Tenant, Device: match.Device, Payload: m.pub.Payload,
		Headers: map[string]string{}, ReceivedAt: m.received, MaxPayload: b.cfg.Limits.MaxPayload}
	if m.client != nil { // an MQTT message (not a downlink command)
		l.Door = Door
		l.RecordHeaders = recordHeaders(m.pub, "")
		l.Headers["mqtt.qos"] = strconv.Itoa(int(m.pub.QoS))
		if m.pub.Retain {
			l.Headers["mqtt.retain"] = "true"
		}
	}
	if p := m.pub.Properties; p != nil {
		l.ContentType = p.ContentType
		addUserProperties(l.Headers, p.User)
	}
	return ingest.DeadLetterRecord(b.prodCtx, b.cfg.Serde, b.cfg.DLQTopic, l, de, b.cfg.Now())
}

func recordHeaders(p *paho.Publish, tenant string) []kgo.RecordHeader {
	h := make([]kgo.RecordHeader, 0, 4)
	h = append(h, kgo.RecordHeader{Key: ingest.HeaderMQTTTopic, Value: []byte(p.Topic)})
	if tenant != "" {
		h = append(h, kgo.RecordHeader{Key: ingest.HeaderTenant, Value: []byte(tenant)})
	}
	if p.Properties != nil {
		if p.Properties.ContentType != "" {
			h = append(h, kgo.RecordHeader{Key: HeaderContentType, Value: []byte(p.Properties.ContentType)})
		}
		for _, up := range p.Properties.User {
			h = append(h, kgo.RecordHeader{Key: HeaderUserPrefix + up.Key, Value: []byte(up.Value)})
		}
	}
	return h
}

// addUserProperties stores MQTT v5 user properties in a dead letter's
// headers map as mqtt.user.<name>, so that a device cannot overwrite the
// bridge's own entries (mqtt.qos, mqtt.retain, ...). MQTT allows a name
// more than once: later values go under mqtt.user.<name>#2, #3, ...
// (the first free one), none is dropped.
func addUserProperties(h map[string]string, props paho.UserProperties) {
	for _, up := range props {
		k := HeaderUserPrefix + up.Key
		for n := 2; ; n++ {
			if _, taken := h[k]; !taken {
				break
			}
			k = HeaderUserPrefix + up.Key + "#" + strconv.Itoa(n)
		}
		h[k] = up.Value
	}
}
