package sparkplug

import (
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/sparkplug/spb"
)

// Sparkplug data types (the datatype field of a metric).
const (
	TypeInt8     = 1
	TypeInt16    = 2
	TypeInt32    = 3
	TypeInt64    = 4
	TypeUInt8    = 5
	TypeUInt16   = 6
	TypeUInt32   = 7
	TypeUInt64   = 8
	TypeFloat    = 9
	TypeDouble   = 10
	TypeBoolean  = 11
	TypeString   = 12
	TypeDateTime = 13
	TypeText     = 14
)

// BdSeqMetric is the NBIRTH/NDEATH metric that ties a death certificate to
// its birth.
const BdSeqMetric = "bdSeq"

// RebirthMetric is the NCMD metric that asks an edge node to publish its
// birth certificates again.
const RebirthMetric = "Node Control/Rebirth"

// Metric is one resolved numeric value.
type Metric struct {
	Name       string
	Value      float64
	TS         time.Time
	Datatype   uint32
	Historical bool // is_historical: back-filled, not the current value
}

// Gap is a sequence-number gap: Got arrived where Expected was due, so
// (Got-Expected) mod 256 messages of the edge node were lost (or a
// duplicate arrived when Got is the previous number).
type Gap struct {
	Expected, Got uint8
}

// Missing is how many messages the gap skipped (255 for a repeat of the
// previous number).
func (g Gap) Missing() int { return int(g.Got-g.Expected) & 0xff }

// Message is one Sparkplug B message with its metrics resolved.
type Message struct {
	Topic   Topic
	Seq     *uint8    // nil on NDEATH
	TS      time.Time // the payload's timestamp (zero when absent)
	Metrics []Metric  // numeric metrics, names resolved through the birth's aliases
	// Skipped counts metrics that carry no number: null, string, bytes,
	// DataSet, Template, and the session metrics (bdSeq, Node Control/*,
	// Device Control/*).
	Skipped int
	// Gap is set when Seq is not the one due after the previous message.
	Gap *Gap
	// Offline lists the device ids (Topic.DeviceID form) this death
	// certificate took offline: the edge node and every device it had
	// born for NDEATH, the device for DDEATH.
	Offline []string
	// Stale is set on an NDEATH whose bdSeq is not the current birth's: a
	// death of an earlier session (the broker's will, published after the
	// node already reconnected), which changes nothing.
	Stale bool
}

type metricDef struct {
	name     string
	datatype uint32
}

type birth struct {
	aliases map[uint64]metricDef
	types   map[string]uint32 // name → datatype
}

func newBirth() *birth {
	return &birth{aliases: map[uint64]metricDef{}, types: map[string]uint32{}}
}

type node struct {
	bdSeq   *uint64
	seq     uint8
	birth   *birth
	devices map[string]*birth // born devices by Sparkplug device id
}

type nodeKey struct{ group, edge string }

// Session is the Sparkplug state of the edge nodes a door has seen. The
// zero value is not usable; call NewSession.
type Session struct {
	mu    sync.Mutex
	nodes map[nodeKey]*node
}

// NewSession returns an empty session: every edge node must publish its
// NBIRTH before its data is accepted.
func NewSession() *Session { return &Session{nodes: map[nodeKey]*node{}} }

// Online reports whether the edge node (device "") or the device behind it
// has a birth certificate and no death since.
func (s *Session) Online(group, edge, device string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.nodes[nodeKey{group, edge}]
	if !ok {
		return false
	}
	if device == "" {
		return true
	}
	_, ok = n.devices[device]
	return ok
}

// Handle parses payload, a message on topic t, and applies it to the
// session. It returns a *decode.Error (the dead letter's stage and reason)
// when the payload cannot be accepted; the session then only notes the
// message's sequence number (the message arrived, it is no gap).
func (s *Session) Handle(t Topic, payload []byte) (*Message, error) {
	var p spb.Payload
	if err := proto.Unmarshal(payload, &p); err != nil {
		return nil, decodeErr(ReasonInvalidPayload, "", "payload is not a Sparkplug B protobuf Payload: %v", err)
	}
	m := &Message{Topic: t}
	if p.Timestamp != nil {
		m.TS = time.UnixMilli(int64(min(p.GetTimestamp(), math.MaxInt64)))
	}
	if t.Type != NDEATH {
		if p.Seq == nil {
			return nil, decodeErr(ReasonInvalidPayload, "seq", "%s message has no seq", t.Type)
		}
		if p.GetSeq() > 255 {
			return nil, decodeErr(ReasonInvalidPayload, "seq", "seq %d is outside 0-255", p.GetSeq())
		}
		sq := uint8(p.GetSeq())
		m.Seq = &sq
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := nodeKey{t.Group, t.Edge}
	n := s.nodes[k]
	if t.Type == NBIRTH {
		return m, s.nbirth(k, &p, m)
	}
	if n == nil {
		return nil, decodeErr(ReasonNoBirth, "", "%s from edge node %s/%s, which has no NBIRTH since the door started or since its NDEATH", t.Type, t.Group, t.Edge)
	}
	if t.Type == NDEATH {
		return m, s.ndeath(k, n, &p, m)
	}
	m.Gap = n.advance(*m.Seq)
	if err := n.apply(t, &p, m); err != nil {
		return nil, err
	}
	return m, nil
}

// apply applies NDATA, DBIRTH, DDATA or DDEATH to n.
func (n *node) apply(t Topic, p *spb.Payload, m *Message) error {
	switch t.Type {
	case NDATA:
		return resolve(n.birth, p, m)
	case DBIRTH:
		b := newBirth()
		if err := define(b, p); err != nil {
			return err
		}
		if err := resolve(b, p, m); err != nil {
			return err
		}
		n.devices[t.Device] = b
		return nil
	}
	b := n.devices[t.Device]
	if b == nil {
		return decodeErr(ReasonNoBirth, "", "%s from device %s of edge node %s/%s, which has no DBIRTH since the door started or since its death", t.Type, t.Device, t.Group, t.Edge)
	}
	if t.Type == DDATA {
		return resolve(b, p, m)
	}
	delete(n.devices, t.Device)
	m.Offline = []string{t.DeviceID()}
	return nil
}

// advance records seq as the node's latest and returns the gap, if any.
func (n *node) advance(seq uint8) *Gap {
	want := n.seq + 1
	n.seq = seq
	if seq != want {
		return &Gap{Expected: want, Got: seq}
	}
	return nil
}

func (s *Session) nbirth(k nodeKey, p *spb.Payload, m *Message) error {
	b := newBirth()
	if err := define(b, p); err != nil {
		return err
	}
	if err := resolve(b, p, m); err != nil {
		return err
	}
	n := &node{seq: *m.Seq, birth: b, devices: map[string]*birth{}}
	if v, ok := bdSeq(p); ok {
		n.bdSeq = &v
	}
	// A rebirth of a node that was online replaces its devices too: they
	// publish their DBIRTHs after the NBIRTH.
	s.nodes[k] = n
	return nil
}

func (s *Session) ndeath(k nodeKey, n *node, p *spb.Payload, m *Message) error {
	if v, ok := bdSeq(p); ok && n.bdSeq != nil && v != *n.bdSeq {
		m.Stale = true
		return nil
	}
	m.Offline = append(m.Offline, m.Topic.Edge)
	for _, d := range slices.Sorted(maps.Keys(n.devices)) {
		m.Offline = append(m.Offline, DeviceID(m.Topic.Edge, d))
	}
	delete(s.nodes, k)
	for _, mt := range p.Metrics {
		if mt.GetName() == BdSeqMetric {
			m.Skipped++
		}
	}
	return nil
}

func bdSeq(p *spb.Payload) (uint64, bool) {
	for _, mt := range p.Metrics {
		if mt.GetName() == BdSeqMetric {
			switch v := mt.Value.(type) {
			case *spb.Payload_Metric_LongValue:
				return v.LongValue, true
			case *spb.Payload_Metric_IntValue:
				return uint64(v.IntValue), true
			}
		}
	}
	return 0, false
}

// define records the names, aliases and data types of a birth certificate.
func define(b *birth, p *spb.Payload) error {
	for i, mt := range p.Metrics {
		if mt.Name == nil {
			return decodeErr(ReasonInvalidPayload, field(i, "name"), "birth certificate metric %d has no name", i)
		}
		d := metricDef{name: mt.GetName(), datatype: mt.GetDatatype()}
		b.types[d.name] = d.datatype
		if mt.Alias != nil {
			if prev, ok := b.aliases[mt.GetAlias()]; ok && prev.name != d.name {
				return decodeErr(ReasonInvalidPayload, field(i, "alias"), "birth certificate gives alias %d to both %q and %q", mt.GetAlias(), prev.name, d.name)
			}
			b.aliases[mt.GetAlias()] = d
		}
	}
	return nil
}

// resolve appends p's numeric metrics to m, names resolved through b.
func resolve(b *birth, p *spb.Payload, m *Message) error {
	for i, mt := range p.Metrics {
		var d metricDef
		switch {
		case mt.Name != nil:
			d = metricDef{name: mt.GetName(), datatype: b.types[mt.GetName()]}
		case mt.Alias != nil:
			var ok bool
			if d, ok = b.aliases[mt.GetAlias()]; !ok {
				return decodeErr(ReasonUnknownAlias, field(i, "alias"), "metric %d has alias %d, which the birth certificate does not define", i, mt.GetAlias())
			}
		default:
			return decodeErr(ReasonInvalidPayload, field(i, ""), "metric %d has neither a name nor an alias", i)
		}
		if mt.Datatype != nil {
			d.datatype = mt.GetDatatype()
		}
		if session(d.name) || mt.GetIsNull() {
			m.Skipped++
			continue
		}
		v, ok := number(mt, d.datatype)
		if !ok {
			m.Skipped++
			continue
		}
		ts := m.TS
		if mt.Timestamp != nil {
			ts = time.UnixMilli(int64(min(mt.GetTimestamp(), math.MaxInt64)))
		}
		if ts.IsZero() {
			return decodeErr(decode.ReasonMissingField, field(i, "timestamp"), "metric %q has no timestamp and the payload has none", d.name)
		}
		m.Metrics = append(m.Metrics, Metric{Name: d.name, Value: v, TS: ts, Datatype: d.datatype, Historical: mt.GetIsHistorical()})
	}
	return nil
}

// session reports whether name is a Sparkplug session metric rather than a
// measurement.
func session(name string) bool {
	return name == BdSeqMetric || strings.HasPrefix(name, "Node Control/") || strings.HasPrefix(name, "Device Control/")
}

// number returns mt's value as a float64 when it is numeric. Signed
// integers travel as two's complement in the unsigned fields.
func number(mt *spb.Payload_Metric, datatype uint32) (float64, bool) {
	switch v := mt.Value.(type) {
	case *spb.Payload_Metric_IntValue:
		switch datatype {
		case TypeInt8:
			return float64(int8(v.IntValue)), true
		case TypeInt16:
			return float64(int16(v.IntValue)), true
		case TypeInt32:
			return float64(int32(v.IntValue)), true
		}
		return float64(v.IntValue), true
	case *spb.Payload_Metric_LongValue:
		if datatype == TypeInt64 {
			return float64(int64(v.LongValue)), true
		}
		return float64(v.LongValue), true
	case *spb.Payload_Metric_FloatValue:
		return float64(v.FloatValue), true
	case *spb.Payload_Metric_DoubleValue:
		return v.DoubleValue, true
	case *spb.Payload_Metric_BooleanValue:
		if v.BooleanValue {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

func field(i int, name string) string {
	f := "metrics[" + strconv.Itoa(i) + "]"
	if name != "" {
		f += "." + name
	}
	return f
}

// RebirthRequest returns the NCMD topic and payload that ask the edge node
// of t to publish its birth certificates again (Sparkplug's answer to a
// DATA message before its BIRTH, an unknown alias or a sequence gap). now
// is the payload's timestamp.
func RebirthRequest(t Topic, now time.Time) (topic string, payload []byte) {
	p := &spb.Payload{
		Timestamp: proto.Uint64(uint64(now.UnixMilli())),
		Metrics: []*spb.Payload_Metric{{
			Name: proto.String(RebirthMetric), Datatype: proto.Uint32(TypeBoolean),
			Timestamp: proto.Uint64(uint64(now.UnixMilli())),
			Value:     &spb.Payload_Metric_BooleanValue{BooleanValue: true},
		}},
	}
	b, _ := proto.Marshal(p) // a fixed, valid message: cannot fail
	return Topic{Group: t.Group, Type: NCMD, Edge: t.Edge}.String(), b
}
