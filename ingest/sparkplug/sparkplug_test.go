package sparkplug

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/sparkplug/spb"
)

var t0 = time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)

type metric = spb.Payload_Metric

func named(name string, alias uint64, dt uint32, v any) *metric {
	m := alias0(alias, v)
	m.Name = proto.String(name)
	m.Datatype = proto.Uint32(dt)
	return m
}

func alias0(alias uint64, v any) *metric {
	m := &metric{}
	if alias != 0 {
		m.Alias = proto.Uint64(alias)
	}
	switch v := v.(type) {
	case uint32:
		m.Value = &spb.Payload_Metric_IntValue{IntValue: v}
	case uint64:
		m.Value = &spb.Payload_Metric_LongValue{LongValue: v}
	case float32:
		m.Value = &spb.Payload_Metric_FloatValue{FloatValue: v}
	case float64:
		m.Value = &spb.Payload_Metric_DoubleValue{DoubleValue: v}
	case bool:
		m.Value = &spb.Payload_Metric_BooleanValue{BooleanValue: v}
	case string:
		m.Value = &spb.Payload_Metric_StringValue{StringValue: v}
	}
	return m
}

func payload(t *testing.T, seq int, ms ...*metric) []byte {
	t.Helper()
	p := &spb.Payload{Timestamp: proto.Uint64(uint64(t0.UnixMilli())), Metrics: ms}
	if seq >= 0 {
		p.Seq = proto.Uint64(uint64(seq))
	}
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func topic(t *testing.T, s string) Topic {
	t.Helper()
	tp, err := ParseTopic(s)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func handle(t *testing.T, s *Session, top string, b []byte) *Message {
	t.Helper()
	m, err := s.Handle(topic(t, top), b)
	if err != nil {
		t.Fatalf("%s: %v", top, err)
	}
	return m
}

func reasonOf(t *testing.T, err error) decode.Reason {
	t.Helper()
	var de *decode.Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *decode.Error", err)
	}
	return de.Reason
}

func names(m *Message) []string {
	var out []string
	for _, mt := range m.Metrics {
		out = append(out, mt.Name)
	}
	return out
}

func TestParseTopic(t *testing.T) {
	for _, tc := range []struct {
		topic  string
		want   Topic
		reason decode.Reason
	}{
		{topic: "spBv1.0/farm-a/NBIRTH/gw1", want: Topic{Group: "farm-a", Type: NBIRTH, Edge: "gw1"}},
		{topic: "spBv1.0/farm-a/DDATA/gw1/pump.3", want: Topic{Group: "farm-a", Type: DDATA, Edge: "gw1", Device: "pump.3"}},
		{topic: "spBv1.0/farm-a/NDATA/gw1/pump", reason: ReasonInvalidTopic},
		{topic: "spBv1.0/farm-a/DDATA/gw1", reason: ReasonInvalidTopic},
		{topic: "spBv1.0/farm-a/NCMD/gw1", reason: ReasonInvalidTopic},
		{topic: "spBv1.0/STATE/host", reason: ReasonInvalidTopic},
		{topic: "spAv1.0/farm-a/NDATA/gw1", reason: ReasonInvalidTopic},
		{topic: "spBv1.0/farm a/NDATA/gw1", reason: decode.ReasonBadIdentity},
		{topic: "spBv1.0/farm-a/DDATA/gw1/-x", reason: decode.ReasonBadIdentity},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			got, err := ParseTopic(tc.topic)
			if tc.reason != "" {
				if err == nil || reasonOf(t, err) != tc.reason {
					t.Fatalf("err = %v, want reason %s", err, tc.reason)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseTopic = %+v, %v; want %+v", got, err, tc.want)
			}
			if got.String() != tc.topic {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
	if id := (Topic{Group: "g", Type: DDATA, Edge: "gw1", Device: "pump"}).DeviceID(); id != "gw1:pump" {
		t.Errorf("DeviceID = %q", id)
	}
}

// A node's life: NBIRTH defines aliases, NDATA uses them, DBIRTH and DDATA
// likewise, a gap is reported, NDEATH takes node and devices offline and
// afterwards data is refused until the next birth.
func TestSessionLifecycle(t *testing.T) {
	s := NewSession()
	m := handle(t, s, "spBv1.0/farm/NBIRTH/gw1", payload(t, 0,
		named(BdSeqMetric, 0, TypeInt64, uint64(7)),
		named("Node Control/Rebirth", 0, TypeBoolean, false),
		named("temperature", 1, TypeFloat, float32(21.5)),
		named("offset", 2, TypeInt16, uint32(0xfffe)), // -2 as two's complement
		named("label", 3, TypeString, "barn"),
	))
	if got := names(m); !slices.Equal(got, []string{"temperature", "offset"}) {
		t.Fatalf("NBIRTH metrics = %v", got)
	}
	if m.Metrics[1].Value != -2 || m.Skipped != 3 {
		t.Fatalf("offset = %v, skipped %d; want -2 and 3 skipped (bdSeq, Node Control, string)", m.Metrics[1].Value, m.Skipped)
	}

	m = handle(t, s, "spBv1.0/farm/NDATA/gw1", payload(t, 1, alias0(1, float32(22)), alias0(2, uint32(5))))
	if got := names(m); !slices.Equal(got, []string{"temperature", "offset"}) || m.Metrics[0].Value != 22 || m.Gap != nil {
		t.Fatalf("NDATA = %+v", m)
	}
	if m.Metrics[0].Datatype != TypeFloat {
		t.Errorf("datatype from birth = %d, want %d", m.Metrics[0].Datatype, TypeFloat)
	}

	_, err := s.Handle(topic(t, "spBv1.0/farm/DDATA/gw1/pump"), payload(t, 2, alias0(10, 1.5)))
	if reasonOf(t, err) != ReasonNoBirth {
		t.Fatalf("DDATA before DBIRTH: %v", err)
	}
	handle(t, s, "spBv1.0/farm/DBIRTH/gw1/pump", payload(t, 3, named("flow", 10, TypeDouble, 1.25)))
	if !s.Online("farm", "gw1", "pump") {
		t.Fatal("pump not online after DBIRTH")
	}
	m = handle(t, s, "spBv1.0/farm/DDATA/gw1/pump", payload(t, 6, alias0(10, 2.5)))
	if m.Gap == nil || m.Gap.Expected != 4 || m.Gap.Got != 6 || m.Gap.Missing() != 2 {
		t.Fatalf("gap = %+v, want expected 4 got 6", m.Gap)
	}
	if names(m)[0] != "flow" || m.Metrics[0].Value != 2.5 {
		t.Fatalf("DDATA = %+v", m.Metrics)
	}

	_, err = s.Handle(topic(t, "spBv1.0/farm/NDATA/gw1"), payload(t, 7, alias0(99, 1.0)))
	if reasonOf(t, err) != ReasonUnknownAlias {
		t.Fatalf("unknown alias: %v", err)
	}
	// The refused message still counts for the sequence: no gap next.
	if m = handle(t, s, "spBv1.0/farm/NDATA/gw1", payload(t, 8, alias0(1, float32(1)))); m.Gap != nil {
		t.Fatalf("gap after a refused message: %+v", m.Gap)
	}

	// A death of an earlier session (other bdSeq) changes nothing.
	m = handle(t, s, "spBv1.0/farm/NDEATH/gw1", payload(t, -1, named(BdSeqMetric, 0, TypeInt64, uint64(6))))
	if !m.Stale || len(m.Offline) != 0 || !s.Online("farm", "gw1", "") {
		t.Fatalf("stale NDEATH = %+v", m)
	}
	m = handle(t, s, "spBv1.0/farm/NDEATH/gw1", payload(t, -1, named(BdSeqMetric, 0, TypeInt64, uint64(7))))
	if !slices.Equal(m.Offline, []string{"gw1", "gw1:pump"}) {
		t.Fatalf("NDEATH offline = %v", m.Offline)
	}
	if s.Online("farm", "gw1", "") || s.Online("farm", "gw1", "pump") {
		t.Fatal("still online after NDEATH")
	}
	_, err = s.Handle(topic(t, "spBv1.0/farm/NDATA/gw1"), payload(t, 9, alias0(1, float32(1))))
	if reasonOf(t, err) != ReasonNoBirth {
		t.Fatalf("NDATA after NDEATH: %v", err)
	}
}

func TestSessionDDEATH(t *testing.T) {
	s := NewSession()
	handle(t, s, "spBv1.0/g/NBIRTH/e", payload(t, 0))
	handle(t, s, "spBv1.0/g/DBIRTH/e/d", payload(t, 1, named("x", 0, TypeDouble, 1.0)))
	m := handle(t, s, "spBv1.0/g/DDEATH/e/d", payload(t, 2))
	if !slices.Equal(m.Offline, []string{"e:d"}) || s.Online("g", "e", "d") || !s.Online("g", "e", "") {
		t.Fatalf("DDEATH = %+v", m)
	}
	if _, err := s.Handle(topic(t, "spBv1.0/g/DDATA/e/d"), payload(t, 3, named("x", 0, TypeDouble, 2.0))); reasonOf(t, err) != ReasonNoBirth {
		t.Fatalf("DDATA after DDEATH: %v", err)
	}
}

func TestSessionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, topic string
		payload     func(t *testing.T) []byte
		reason      decode.Reason
		field       string
	}{
		{"not protobuf", "spBv1.0/g/NBIRTH/e", func(*testing.T) []byte { return []byte{0xff, 0xff, 0xff} }, ReasonInvalidPayload, ""},
		{"no seq", "spBv1.0/g/NBIRTH/e", func(t *testing.T) []byte { return payload(t, -1) }, ReasonInvalidPayload, "seq"},
		{"seq above 255", "spBv1.0/g/NBIRTH/e", func(t *testing.T) []byte { return payload(t, 256) }, ReasonInvalidPayload, "seq"},
		{"birth metric without name", "spBv1.0/g/NBIRTH/e", func(t *testing.T) []byte { return payload(t, 0, alias0(1, 1.0)) }, ReasonInvalidPayload, "metrics[0].name"},
		{"alias given twice", "spBv1.0/g/NBIRTH/e", func(t *testing.T) []byte {
			return payload(t, 0, named("a", 1, TypeDouble, 1.0), named("b", 1, TypeDouble, 1.0))
		}, ReasonInvalidPayload, "metrics[1].alias"},
		{"data before birth", "spBv1.0/g/NDATA/e", func(t *testing.T) []byte { return payload(t, 1, named("a", 0, TypeDouble, 1.0)) }, ReasonNoBirth, ""},
		{"death before birth", "spBv1.0/g/NDEATH/e", func(t *testing.T) []byte { return payload(t, -1) }, ReasonNoBirth, ""},
		{"no timestamp", "spBv1.0/g/NBIRTH/e", func(t *testing.T) []byte {
			b, _ := proto.Marshal(&spb.Payload{Seq: proto.Uint64(0), Metrics: []*metric{named("a", 0, TypeDouble, 1.0)}})
			return b
		}, decode.ReasonMissingField, "metrics[0].timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSession().Handle(topic(t, tc.topic), tc.payload(t))
			var de *decode.Error
			if !errors.As(err, &de) || de.Reason != tc.reason || de.Field != tc.field {
				t.Fatalf("err = %#v, want reason %s field %q", err, tc.reason, tc.field)
			}
		})
	}
}

func TestRecords(t *testing.T) {
	s := NewSession()
	handle(t, s, "spBv1.0/farm/NBIRTH/gw1", payload(t, 0, named(BdSeqMetric, 0, TypeInt64, uint64(1))))
	handle(t, s, "spBv1.0/farm/DBIRTH/gw1/pump", payload(t, 1, named("flow", 4, TypeDouble, 1.0)))
	hist := alias0(4, 3.0)
	hist.IsHistorical = proto.Bool(true)
	hist.Timestamp = proto.Uint64(uint64(t0.Add(-time.Minute).UnixMilli()))
	m := handle(t, s, "spBv1.0/farm/DDATA/gw1/pump", payload(t, 5, hist))
	recv := t0.Add(time.Second)
	in := &decode.Input{Payload: []byte("x"), ReceivedAt: recv}
	var out decode.Output
	if err := Records(m, in, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Sensor) != 2 {
		t.Fatalf("records = %+v", out.Sensor)
	}
	r, g := out.Sensor[0], out.Sensor[1]
	if r.Tenant != "farm" || r.DeviceID != "gw1:pump" || r.Metric != "flow" || r.Value != 3 || !r.TS.Equal(t0.Add(-time.Minute)) ||
		r.Source != Source || r.Attrs["historical"] != "true" || r.Attrs["device"] != "pump" || !r.IngestedAt.Equal(recv) {
		t.Errorf("reading = %+v", r)
	}
	if g.Metric != GapMetric || g.Value != 3 || g.Attrs["expected_seq"] != "2" || g.Attrs["seq"] != "5" || !g.TS.Equal(recv) {
		t.Errorf("gap reading = %+v", g)
	}
	if r.EventID == g.EventID || r.EventID == "" {
		t.Errorf("event ids %q %q", r.EventID, g.EventID)
	}

	m = handle(t, s, "spBv1.0/farm/NDEATH/gw1", payload(t, -1, named(BdSeqMetric, 0, TypeInt64, uint64(1))))
	out.Reset()
	if err := Records(m, &decode.Input{Payload: []byte("y"), ReceivedAt: recv}, &out); err != nil {
		t.Fatal(err)
	}
	var offline []string
	for _, r := range out.Sensor {
		if r.Metric != OfflineMetric || r.Tenant != "farm" || r.Attrs["cause"] != "NDEATH" {
			t.Errorf("death record = %+v", r)
		}
		offline = append(offline, r.DeviceID)
	}
	if !slices.Equal(offline, []string{"gw1", "gw1:pump"}) {
		t.Fatalf("offline records for %v", offline)
	}
}

func TestRecordsRefuseNaN(t *testing.T) {
	s := NewSession()
	handle(t, s, "spBv1.0/g/NBIRTH/e", payload(t, 0, named("x", 0, TypeDouble, 1.0)))
	m := handle(t, s, "spBv1.0/g/NDATA/e", payload(t, 1, named("x", 0, TypeDouble, float64NaN())))
	err := Records(m, &decode.Input{Payload: []byte("z"), ReceivedAt: t0}, &decode.Output{})
	if reasonOf(t, err) != decode.ReasonInvalidValue {
		t.Fatalf("NaN: %v", err)
	}
}

func float64NaN() float64 { z := 0.0; return z / z }

func TestRebirthRequest(t *testing.T) {
	top, b := RebirthRequest(Topic{Group: "farm", Type: NDATA, Edge: "gw1"}, t0)
	if top != "spBv1.0/farm/NCMD/gw1" {
		t.Fatalf("topic %q", top)
	}
	var p spb.Payload
	if err := proto.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Metrics) != 1 || p.Metrics[0].GetName() != RebirthMetric || !p.Metrics[0].GetBooleanValue() {
		t.Fatalf("rebirth payload %v", &p)
	}
	if !strings.Contains(p.String(), "Rebirth") {
		t.Fatal(p.String())
	}
}
