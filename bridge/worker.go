package bridge

import (
	"errors"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
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

// worker hands messages, one at a time, to the ingest core (registry
// check, decoding, validation, encoding) and produces what it returns.
type worker struct {
	b *Bridge
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
	if match.Route.Reply {
		if _, err := b.core.Admit(&match); err != nil {
			w.deadLetter(m, match, err)
			return
		}
		w.reply(m, match)
		return
	}
	r := ingest.Routed{Door: Door, Topic: m.pub.Topic, Match: match, Payload: m.pub.Payload, ReceivedAt: m.received,
		Headers: recordHeaders(m.pub)}
	for {
		p, err := b.core.Prepare(b.prodCtx, &r)
		if errors.Is(err, ingest.ErrUnavailable) {
			// The schema registry cannot resolve the topic's schema: that
			// is not the message's fault. Prepare checks that first, so the
			// message is prepared again once the registry answers.
			if err := b.waitSchema(r.Match.Topic); err != nil {
				b.abandon(m)
				return
			}
			continue
		}
		if err != nil {
			w.deadLetter(m, r.Match, err)
			return
		}
		if len(p.Records) == 0 { // a Sparkplug message without numbers (a stale death, say)
			b.finish(m)
			return
		}
		b.produce(m, r.Match, p.Records, false)
		return
	}
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
		l.RecordHeaders = recordHeaders(m.pub)
		l.Headers["mqtt.qos"] = strconv.Itoa(int(m.pub.QoS))
		if m.pub.Retain {
			l.Headers["mqtt.retain"] = "true"
		}
	}
	if p := m.pub.Properties; p != nil {
		l.ContentType = p.ContentType
		addUserProperties(l.Headers, p.User)
	}
	return b.core.DeadLetter(b.prodCtx, l, de)
}

// recordHeaders are the MQTT message's Kafka headers: mqtt.topic, the
// content type and user properties; with room for the ingest core's
// drover.tenant, drover.door and drover.registry.
func recordHeaders(p *paho.Publish) []kgo.RecordHeader {
	n := 5
	if p.Properties != nil {
		n += 1 + len(p.Properties.User)
	}
	h := make([]kgo.RecordHeader, 0, n)
	h = append(h, kgo.RecordHeader{Key: ingest.HeaderMQTTTopic, Value: []byte(p.Topic)})
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
