package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/bridge/decode"
	"github.com/drover-iot/drover/schemas"
)

// Kafka header names on every record and dead letter the bridge writes.
const (
	HeaderMQTTTopic   = "mqtt.topic"
	HeaderTenant      = "drover.tenant"
	HeaderContentType = "content-type"
	// HeaderUserPrefix prefixes each MQTT v5 user property (mqtt.user.<name>).
	HeaderUserPrefix = "mqtt.user."

	HeaderStage      = "drover.stage"
	HeaderReason     = "drover.reason"
	HeaderSource     = "drover.source"
	HeaderMessage    = "drover.message"
	HeaderReceivedAt = "drover.received_at"
	HeaderDevice     = "drover.device_id"
	HeaderPayloadLen = "drover.payload_size"
)

// maxDeadLetterPayload caps the payload kept in a dead letter, so the dead
// letter fits Kafka's default 1 MB record limit whatever --max-payload says.
const maxDeadLetterPayload = 768 << 10

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
	in := decode.Input{
		Tenant: match.Tenant, DeviceID: match.Device, Source: match.Source, Kind: match.Kind,
		Payload: m.pub.Payload, ReceivedAt: m.received.UTC().Truncate(time.Millisecond),
	}
	if err := w.decode(match, &in); err != nil {
		w.deadLetter(m, match, err)
		return
	}
	if err := b.waitSchema(match.Topic); err != nil {
		b.abandon(m)
		return
	}
	headers := recordHeaders(m.pub, match.Tenant)
	recs := make(recordBatch, 0, w.out.Len())
	add := func(v any) error {
		buf, err := b.cfg.Serde.AppendEncode(b.prodCtx, nil, match.Topic, v)
		if err != nil {
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonSchemaInvalid, Message: err.Error()}
		}
		recs = append(recs, &kgo.Record{Topic: match.Topic, Key: []byte(match.Device), Value: buf, Headers: headers})
		return nil
	}
	for i := range w.out.Sensor {
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
func (w *worker) decode(match Match, in *decode.Input) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.b.log.Error("decoder panic", "decoder", match.Route.Decoder.Name, "panic", r, "stack", string(debug.Stack()))
			err = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError,
				Message: fmt.Sprintf("decoder %s failed: %v (a bug; please report it)", match.Route.Decoder.Name, r)}
		}
	}()
	return decode.Decode(match.Route.Decoder.Func, in, w.b.cfg.Limits, &w.out)
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
func (b *Bridge) produce(m *message, match Match, recs recordBatch, dead bool) {
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

func (w *worker) deadLetter(m *message, match Match, err error) {
	var de *decode.Error
	if !errors.As(err, &de) {
		de = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonWrongShape, Message: err.Error()}
	}
	w.b.produceDeadLetter(m, match, de)
}

// produceDeadLetter writes m's dead letter and acknowledges m once Kafka
// has it. If the dead letter cannot even be built (registry down at
// shutdown), m is left unacknowledged for redelivery.
func (b *Bridge) produceDeadLetter(m *message, match Match, de *decode.Error) {
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

// deadLetterRecord builds the dlq.events record for m.
func (b *Bridge) deadLetterRecord(m *message, match Match, de *decode.Error) (*kgo.Record, error) {
	payload := m.pub.Payload
	truncated := false
	if limit := min(b.cfg.Limits.MaxPayload, maxDeadLetterPayload); len(payload) > limit {
		payload, truncated = payload[:limit], true
	}
	recv := m.received.UTC().Truncate(time.Millisecond)
	// Every path builds its message from device data; whatever it
	// quoted, the dead letter carries printable text.
	msg := decode.Escape(de.Message)
	h := sha256.New()
	for _, s := range []string{m.pub.Topic, string(de.Stage), string(de.Reason)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(m.pub.Payload)
	dl := schemas.DeadLetter{
		ID:          hex.EncodeToString(h.Sum(nil)[:16]),
		Stage:       string(de.Stage),
		Reason:      string(de.Reason),
		Message:     msg,
		Source:      m.pub.Topic,
		Payload:     payload,
		PayloadSize: int64(len(m.pub.Payload)),
		Truncated:   truncated,
		Headers:     map[string]string{},
		ReceivedAt:  recv,
		TS:          recv,
		IngestedAt:  b.cfg.Now().UTC().Truncate(time.Millisecond),
	}
	if match.Tenant != "" {
		t := match.Tenant
		dl.Tenant = &t
	}
	if match.Device != "" {
		d := match.Device
		dl.DeviceID = &d
	}
	var headers []kgo.RecordHeader
	if m.client != nil { // an MQTT message (not a downlink command)
		headers = recordHeaders(m.pub, match.Tenant)
		dl.Headers["mqtt.qos"] = strconv.Itoa(int(m.pub.QoS))
		if m.pub.Retain {
			dl.Headers["mqtt.retain"] = "true"
		}
	} else if match.Tenant != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTenant, Value: []byte(match.Tenant)})
	}
	if p := m.pub.Properties; p != nil {
		if p.ContentType != "" {
			ct := p.ContentType
			dl.ContentType = &ct
		}
		addUserProperties(dl.Headers, p.User)
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(de.Stage)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(de.Reason)},
		kgo.RecordHeader{Key: HeaderSource, Value: []byte(m.pub.Topic)},
		kgo.RecordHeader{Key: HeaderMessage, Value: []byte(clipBytes(msg, 1024))},
		kgo.RecordHeader{Key: HeaderReceivedAt, Value: []byte(recv.Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderPayloadLen, Value: []byte(strconv.Itoa(len(m.pub.Payload)))},
	)
	if match.Device != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDevice, Value: []byte(match.Device)})
	}
	key := match.Device
	if key == "" {
		key = m.pub.Topic
	}
	value, err := b.cfg.Serde.AppendEncode(b.prodCtx, nil, b.cfg.DLQTopic, &dl)
	if err != nil {
		return nil, err
	}
	return &kgo.Record{Topic: b.cfg.DLQTopic, Key: []byte(key), Value: value, Headers: headers}, nil
}

func recordHeaders(p *paho.Publish, tenant string) []kgo.RecordHeader {
	h := make([]kgo.RecordHeader, 0, 4)
	h = append(h, kgo.RecordHeader{Key: HeaderMQTTTopic, Value: []byte(p.Topic)})
	if tenant != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderTenant, Value: []byte(tenant)})
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

// clipBytes cuts s to at most n bytes at a rune boundary.
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
