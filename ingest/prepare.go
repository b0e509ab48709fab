package ingest

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/ingest/sparkplug"
)

// Routed is one message its door has routed through the routes table:
// what [Core.Prepare] checks, decodes and encodes. The MQTT bridge routes
// its topic; the other doors' Ingest routes their device channel as the
// device topic it stands for.
type Routed struct {
	Door string
	// Topic is the MQTT topic, or the device topic the message stands for
	// (a Sparkplug B message's topic names its edge node and type).
	Topic string
	// Match is the route (not an ignored or a reply route). Prepare fills
	// its Tenant from the registry when the topic names none (WildFi).
	Match      routes.Match
	Payload    []byte
	ReceivedAt time.Time
	// Headers lead the Kafka headers of every record (the door's own:
	// mqtt.topic, content type, user properties); Prepare appends
	// drover.tenant, drover.door and, in observe mode, drover.registry,
	// in Headers' spare capacity if it has some.
	Headers []kgo.RecordHeader

	// meta, when set, keeps the headers and key Prepare made for a
	// message, for the next message of the same device with the same
	// door, tenant and flag (the items of a door's batch).
	meta *recordMeta
}

// recordMeta is the Kafka headers and key of a device's records.
type recordMeta struct {
	tenant, device, door string
	flag                 decode.Reason
	headers              []kgo.RecordHeader // full: an append copies
	key                  []byte
}

// recordMeta returns the headers (r.Headers, then drover.tenant,
// drover.door and drover.registry) and key (TENANT/DEVICE) of r's
// records: r.meta's when it was made for the same device, door and flag
// and r has no headers of its own, else made (and kept in r.meta).
// Records share them: they are read, never changed.
func (c *Core) recordMeta(r *Routed, flag decode.Reason) ([]kgo.RecordHeader, []byte) {
	tenant, device := r.Match.Tenant, r.Match.Device
	if m := r.meta; m != nil && m.headers != nil && len(r.Headers) == 0 &&
		m.tenant == tenant && m.device == device && m.door == r.Door && m.flag == flag {
		return m.headers, m.key
	}
	// One buffer for the values of drover.tenant and drover.door.
	vals := make([]byte, 0, len(tenant)+len(r.Door))
	vals = append(append(vals, tenant...), r.Door...)
	tv, door := vals[:len(tenant):len(tenant)], vals[len(tenant):]
	headers := append(r.Headers, kgo.RecordHeader{Key: HeaderTenant, Value: tv})
	if r.Door != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDoor, Value: door})
	}
	if flag != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderRegistry, Value: []byte(flag)})
	}
	key := []byte(identity.Key(tenant, device))
	if r.meta != nil && len(r.Headers) == 0 {
		*r.meta = recordMeta{tenant: tenant, device: device, door: r.Door, flag: flag, headers: headers[:len(headers):len(headers)], key: key}
	}
	return headers, key
}

// Prepared is what Prepare made of a message.
type Prepared struct {
	// Records are the message's Kafka records, ready to produce, in
	// order; none for a message without readings (a stale Sparkplug
	// death, say), which the door acknowledges as is.
	Records []*kgo.Record
	// Flag is, in observe mode, the reason enforce mode would have refused
	// the device for ("" when admitted); its records carry HeaderRegistry.
	Flag decode.Reason
}

// Prepare is the ingest path every door shares, short of producing:
// the registry check (Config.Admission, else Config.Registry), decoding
// with the route's decoder (Sparkplug B through the core's session:
// births resolve aliases, gaps are reported, deaths take devices
// offline), validation, and Avro encoding for r.Match.Topic, each record
// keyed by TENANT/DEVICE.
//
// It returns a *decode.Error when the message is refused (the door writes
// its dead letter, DeadLetter), or an error wrapping ErrUnavailable when
// the schema registry cannot resolve the topic's schema; that is checked
// before anything else, so the door may wait and call Prepare again.
// A decoder panic (a bug) becomes an internal_error refusal.
func (c *Core) Prepare(ctx context.Context, r *Routed) (Prepared, error) {
	if _, err := c.cfg.Serde.ID(ctx, r.Match.Topic); err != nil {
		return Prepared{}, fmt.Errorf("%w: schema of %s: %v", ErrUnavailable, r.Match.Topic, err)
	}
	flag, de := c.check(&r.Match)
	if de != nil {
		return Prepared{Flag: flag}, de
	}
	sc := c.pool.Get().(*scratch)
	defer c.putScratch(sc)
	out := &sc.out
	sc.in = decode.Input{
		Tenant: r.Match.Tenant, DeviceID: r.Match.Device, Source: r.Match.Source, Kind: r.Match.Kind,
		Payload: r.Payload, ReceivedAt: r.ReceivedAt.UTC().Truncate(time.Millisecond),
	}
	if err := c.decodeRoute(r, &sc.in, out); err != nil {
		return Prepared{Flag: flag}, asDecodeErr(err, decode.StageDecode)
	}
	if out.Len() == 0 {
		return Prepared{Flag: flag}, nil
	}
	headers, key := c.recordMeta(r, flag)
	t := r.Match.Topic
	recs, de := c.encodeKeyed(ctx, r.Match.Tenant, r.Match.Device, key, out, kindTopics{t, t, t}, headers)
	if de != nil {
		return Prepared{Flag: flag}, de
	}
	return Prepared{Records: recs, Flag: flag}, nil
}

// scratch is a Prepare's decoder input and output, pooled.
type scratch struct {
	out decode.Output
	in  decode.Input
}

func (c *Core) putScratch(sc *scratch) {
	sc.in = decode.Input{} // do not pin the payload
	c.pool.Put(sc)
}

// decodeRoute runs r's decoder into out.
func (c *Core) decodeRoute(r *Routed, in *decode.Input, out *decode.Output) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.cfg.Log.Error("ingest: decoder panic", "door", r.Door, "topic", r.Topic, "decoder", r.Match.Route.Decoder.Name,
				"panic", p, "stack", string(debug.Stack()))
			err = &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonInternalError,
				Message: fmt.Sprintf("decoder %s failed: %v (a bug; please report it)", r.Match.Route.Decoder.Name, p)}
		}
	}()
	if r.Match.Route.Decoder.Name == decode.Sparkplug {
		return c.decodeSparkplug(r.Topic, in, out)
	}
	return decode.Decode(r.Match.Route.Decoder.Func, in, c.cfg.Limits, out)
}

// decodeSparkplug reads a Sparkplug B message with the core's session: a
// DATA message before its BIRTH is refused (sparkplug.ReasonNoBirth). The
// records are checked as a decoder's are (decode.Validate).
func (c *Core) decodeSparkplug(topic string, in *decode.Input, out *decode.Output) error {
	out.Reset()
	if lim := c.cfg.Limits.MaxPayload; lim > 0 && len(in.Payload) > lim {
		return &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonPayloadTooLarge, Message: fmt.Sprintf("payload is %d bytes, limit %d", len(in.Payload), lim)}
	}
	t, err := sparkplug.ParseTopic(topic)
	if err != nil {
		return err
	}
	sm, err := c.spark.Handle(t, in.Payload)
	if err != nil {
		return err
	}
	if sm.Gap != nil {
		c.cfg.Log.Warn("sparkplug sequence gap", "topic", topic, "expected", sm.Gap.Expected, "got", sm.Gap.Got)
	}
	if err := sparkplug.Records(sm, in, out); err != nil {
		return err
	}
	if out.Len() == 0 {
		return nil
	}
	return decode.Validate(in, c.cfg.Limits, out)
}

// kindTopics is the Kafka topic of each record kind.
type kindTopics struct{ sensor, gps, media string }

// encode encodes out's records for their topics, each keyed by its own
// device (a Sparkplug death takes the devices behind an edge node
// offline: each reading is keyed by its device).
func (c *Core) encode(ctx context.Context, tenant, device string, out *decode.Output, t kindTopics, headers []kgo.RecordHeader) ([]*kgo.Record, *decode.Error) {
	return c.encodeKeyed(ctx, tenant, device, []byte(identity.Key(tenant, device)), out, t, headers)
}

// oneValue is the room for its value that a message of one record gets
// with the record: a reading's value (Confluent header, event id, tenant,
// device, times, metric, value, source) is about 100 bytes without
// attributes.
const oneValue = 128

// encodeKeyed is encode with the key of device's records made.
func (c *Core) encodeKeyed(ctx context.Context, tenant, device string, key []byte, out *decode.Output, t kindTopics, headers []kgo.RecordHeader) ([]*kgo.Record, *decode.Error) {
	// The records and the slice of them in as few allocations as may be:
	// one for a message of one record (most) whose value fits in
	// oneValue bytes (a reading's without attributes does), two
	// otherwise.
	var recs []*kgo.Record
	var slab []kgo.Record
	var dst []byte // where the first value is encoded
	if n := out.Len(); n == 1 {
		one := new(struct {
			rec [1]kgo.Record
			ptr [1]*kgo.Record
			val [oneValue]byte
		})
		slab, recs, dst = one.rec[:], one.ptr[:0], one.val[:0]
	} else {
		slab, recs = make([]kgo.Record, n), make([]*kgo.Record, 0, n)
	}
	add := func(topic string, k []byte, v any) *decode.Error {
		buf, err := c.cfg.Serde.AppendEncode(ctx, dst, topic, v)
		if err != nil {
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonSchemaInvalid, Message: err.Error()}
		}
		dst = nil
		buf = buf[:len(buf):len(buf)] // an append to the value copies it
		r := &slab[len(recs)]
		*r = kgo.Record{Topic: topic, Key: k, Value: buf, Headers: headers}
		recs = append(recs, r)
		return nil
	}
	for i := range out.Sensor {
		k := key
		if d := out.Sensor[i].DeviceID; d != device && d != "" {
			k = []byte(identity.Key(tenant, d))
		}
		if de := add(t.sensor, k, &out.Sensor[i]); de != nil {
			return nil, de
		}
	}
	for i := range out.GPS {
		if de := add(t.gps, key, &out.GPS[i]); de != nil {
			return nil, de
		}
	}
	for i := range out.Media {
		if de := add(t.media, key, &out.Media[i]); de != nil {
			return nil, de
		}
	}
	return recs, nil
}

// Admit is the registry check of a route's device alone (the MQTT bridge
// checks the device of a command reply with it): Config.Admission's
// Check, else Config.Registry's Admit (enforce). It fills m.Tenant when
// the topic names none. flag is, in observe mode, what enforce mode would
// have refused the device for.
func (c *Core) Admit(m *routes.Match) (flag decode.Reason, err error) {
	flag, de := c.check(m)
	if de != nil {
		return flag, de
	}
	return flag, nil
}

func (c *Core) check(m *routes.Match) (decode.Reason, *decode.Error) {
	if c.cfg.Admission != nil {
		_, flag, err := c.cfg.Admission.Check(m)
		if err != nil {
			return flag, asDecodeErr(err, decode.StageRoute)
		}
		return flag, nil
	}
	if c.cfg.Registry == nil || m.Device == "" {
		return "", nil
	}
	if _, err := c.cfg.Registry.Admit(m.Tenant, m.Device); err != nil {
		return "", identityErr(err, identity.Key(m.Tenant, m.Device))
	}
	return "", nil
}

// DeadLetter encodes l's dead letter for de as the record of
// Config.DLQTopic ([DeadLetterRecord] with the core's serde and clock).
func (c *Core) DeadLetter(ctx context.Context, l Letter, de *decode.Error) (*kgo.Record, error) {
	return DeadLetterRecord(ctx, c.cfg.Serde, c.cfg.DLQTopic, l, de, c.cfg.Now())
}

// DLQTopic is where the core's dead letters go.
func (c *Core) DLQTopic() string { return c.cfg.DLQTopic }
