package lorawan

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var recv = time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)

func records(t *testing.T, e *Event) (*decode.Output, int) {
	t.Helper()
	var out decode.Output
	n, err := Records(e, "farm", "collar-1", recv, &out)
	if err != nil {
		t.Fatal(err)
	}
	return &out, n
}

func byMetric(out *decode.Output) map[string]float64 {
	m := map[string]float64{}
	for _, r := range out.Sensor {
		m[r.Metric] = r.Value
	}
	return m
}

func TestChirpStackUp(t *testing.T) {
	e, err := ParseChirpStack("up", read(t, "chirpstack-up.json"))
	if err != nil {
		t.Fatal(err)
	}
	if e.DevEUI != "0101010101010101" || e.DevAddr != "00189440" || *e.FCnt != 0 || *e.FPort != 1 || string(e.Data) != "\xaa" {
		t.Fatalf("event = %+v", e)
	}
	want := time.Date(2022, 7, 18, 9, 34, 15, 775023242, time.UTC)
	if !e.Time.Equal(want) {
		t.Fatalf("time %v", e.Time)
	}
	out, _ := records(t, e)
	got := byMetric(out)
	// No codec in the example: only the radio readings (fCnt omitted = 0).
	if len(got) != 4 || got[MetricRSSI] != -36 || got[MetricSNR] != 10.5 || got[MetricFCnt] != 0 || got[MetricGateways] != 1 {
		t.Fatalf("readings = %v", got)
	}
	for _, r := range out.Sensor {
		if r.Tenant != "farm" || r.DeviceID != "collar-1" || !r.TS.Equal(want) || r.Source != Source || r.Attrs["deveui"] != e.DevEUI || r.Attrs["network"] != "chirpstack" || !r.IngestedAt.Equal(recv) {
			t.Errorf("record %+v", r)
		}
	}
}

func TestChirpStackJoinStatus(t *testing.T) {
	e, err := ParseChirpStack("join", read(t, "chirpstack-join.json"))
	if err != nil || e.Kind != KindJoin {
		t.Fatalf("join: %+v %v", e, err)
	}
	out, _ := records(t, e)
	if len(out.Sensor) != 1 || out.Sensor[0].Metric != MetricJoin || out.Sensor[0].Attrs["dev_addr"] != "00189440" {
		t.Fatalf("join records %+v", out.Sensor)
	}
	e, err = ParseChirpStack("status", read(t, "chirpstack-status.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, _ = records(t, e)
	got := byMetric(out)
	if got[MetricBattery] != 87.4 || got[MetricMargin] != 7 || got[MetricExternalPower] != 0 || got[MetricStatus] != 1 {
		t.Fatalf("status readings %v", got)
	}
	e, err = ParseChirpStack("txack", []byte("anything"))
	if err != nil || e.Kind != KindIgnored {
		t.Fatalf("txack: %+v %v", e, err)
	}
}

func TestTTSUplink(t *testing.T) {
	e, err := ParseTTS(read(t, "tts-uplink.json"))
	if err != nil {
		t.Fatal(err)
	}
	if e.DevEUI != "0004a30b001c0530" || *e.FCnt != 7 || *e.FPort != 15 || len(e.Rx) != 2 {
		t.Fatalf("event %+v", e)
	}
	out, skipped := records(t, e)
	got := byMetric(out)
	if got["temperature"] != 21.3 || got["humidity"] != 61 || got[MetricRSSI] != -35 || got[MetricSNR] != 7.5 || got[MetricGateways] != 2 || got[MetricFCnt] != 7 {
		t.Fatalf("readings %v", got)
	}
	if _, ok := got["gps.latitude"]; ok {
		t.Error("the position's latitude became a reading too")
	}
	if skipped != 1 { // "label" is a string
		t.Errorf("skipped = %d, want 1", skipped)
	}
	if len(out.GPS) != 1 {
		t.Fatalf("fixes %+v", out.GPS)
	}
	f := out.GPS[0]
	if f.Lat != 52.2345 || f.Lon != 6.2345 || f.Alt == nil || *f.Alt != 13 || f.Attrs["path"] != "gps" || f.DeviceID != "collar-1" {
		t.Errorf("fix %+v", f)
	}
	for _, r := range out.Sensor {
		if r.Metric == MetricRSSI && r.Attrs["gateway"] != "gtw1" {
			t.Errorf("best gateway %q", r.Attrs["gateway"])
		}
	}
}

func TestTTSJoin(t *testing.T) {
	e, err := ParseTTS(read(t, "tts-join.json"))
	if err != nil || e.Kind != KindJoin || e.DevAddr != "01497ECC" {
		t.Fatalf("%+v %v", e, err)
	}
	if want := time.Date(2020, 2, 17, 7, 49, 9, 736532315, time.UTC); !e.Time.Equal(want) {
		t.Errorf("time %v", e.Time)
	}
	e, err = ParseTTS([]byte(`{"end_device_ids":{"dev_eui":"0004A30B001C0530"},"downlink_ack":{}}`))
	if err != nil || e.Kind != KindIgnored {
		t.Fatalf("downlink_ack: %+v %v", e, err)
	}
}

// The same frame through another network server (other gateways, other
// receive time) has the same event ids, and Dedup drops it once marked.
func TestRepeatedFrame(t *testing.T) {
	a, err := ParseTTS(read(t, "tts-uplink.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(read(t, "tts-uplink.json")), `"rssi": -35`, `"rssi": -99`, 1)
	body = strings.ReplaceAll(body, "2020-02-12T15:15:45.787Z", "2020-02-12T15:15:46.101Z")
	b, err := ParseTTS([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	oa, _ := records(t, a)
	ob, _ := records(t, b)
	ids := func(o *decode.Output) (s []string) {
		for _, r := range o.Sensor {
			s = append(s, r.Metric+"="+r.EventID)
		}
		return s
	}
	if !slices.Equal(ids(oa), ids(ob)) {
		t.Fatalf("event ids differ:\n%v\n%v", ids(oa), ids(ob))
	}
	d := NewDedup(time.Minute, 100)
	if d.Seen(Key(a), recv) {
		t.Fatal("seen before marking")
	}
	d.Mark(Key(a), recv)
	if !d.Seen(Key(b), recv.Add(time.Second)) {
		t.Fatal("the copy is not recognised")
	}
	if d.Seen(Key(b), recv.Add(time.Minute)) {
		t.Fatal("remembered past the ttl")
	}
	next := *b
	fc := uint32(8)
	next.FCnt = &fc
	if d.Seen(Key(&next), recv) {
		t.Fatal("the next frame counts as a copy")
	}
	for i := range 200 {
		n := next
		c := uint32(100 + i)
		n.FCnt = &c
		d.Mark(Key(&n), recv)
	}
	if d.Len() > 100 {
		t.Fatalf("remembers %d frames, max 100", d.Len())
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name          string
		parse         func() (*Event, error)
		reason        decode.Reason
		field, detail string
	}{
		{"chirpstack not json", func() (*Event, error) { return ParseChirpStack("up", []byte("{nope")) }, decode.ReasonNotJSON, "", ""},
		{"chirpstack empty", func() (*Event, error) { return ParseChirpStack("up", nil) }, decode.ReasonNotJSON, "", ""},
		{"chirpstack wrong shape", func() (*Event, error) { return ParseChirpStack("up", []byte(`{"fCnt":"x"}`)) }, decode.ReasonWrongShape, "", ""},
		{"chirpstack no event", func() (*Event, error) { return ParseChirpStack("", []byte(`{}`)) }, decode.ReasonMissingField, "event", ""},
		{"chirpstack no deviceInfo", func() (*Event, error) { return ParseChirpStack("up", []byte(`{"time":"2022-07-18T09:34:15Z"}`)) }, decode.ReasonMissingField, "deviceInfo", ""},
		{"chirpstack bad deveui", func() (*Event, error) {
			return ParseChirpStack("up", []byte(`{"time":"2022-07-18T09:34:15Z","deviceInfo":{"devEui":"01010101"}}`))
		}, decode.ReasonBadIdentity, "deviceInfo.devEui", "16 hex digits"},
		{"chirpstack no time", func() (*Event, error) {
			return ParseChirpStack("up", []byte(`{"deviceInfo":{"devEui":"0101010101010101"}}`))
		}, decode.ReasonMissingField, "time", ""},
		{"chirpstack bad time", func() (*Event, error) {
			return ParseChirpStack("up", []byte(`{"time":"yesterday","deviceInfo":{"devEui":"0101010101010101"}}`))
		}, decode.ReasonInvalidTS, "time", ""},
		{"chirpstack object not object", func() (*Event, error) {
			return ParseChirpStack("up", []byte(`{"time":"2022-07-18T09:34:15Z","deviceInfo":{"devEui":"0101010101010101"},"object":[1]}`))
		}, decode.ReasonWrongShape, "object", ""},
		{"tts no ids", func() (*Event, error) { return ParseTTS([]byte(`{"uplink_message":{}}`)) }, decode.ReasonMissingField, "end_device_ids", ""},
		{"tts trailing data", func() (*Event, error) { return ParseTTS([]byte(`{} {}`)) }, decode.ReasonNotJSON, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.parse()
			var de *decode.Error
			if !errors.As(err, &de) || de.Reason != tc.reason || de.Field != tc.field || !strings.Contains(de.Message, tc.detail) {
				t.Fatalf("err = %#v, want reason %s field %q", err, tc.reason, tc.field)
			}
		})
	}
}

func TestRecordsRefuse(t *testing.T) {
	for _, tc := range []struct {
		object string
		reason decode.Reason
	}{
		{`{"t": 1e999}`, decode.ReasonInvalidValue},
		{`{"lat": 91, "lon": 10}`, decode.ReasonOutOfRange},
	} {
		e, err := ParseChirpStack("up", []byte(`{"time":"2022-07-18T09:34:15Z","deviceInfo":{"devEui":"0101010101010101"},"object":`+tc.object+`}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Records(e, "farm", "d", recv, &decode.Output{})
		var de *decode.Error
		if !errors.As(err, &de) || de.Reason != tc.reason {
			t.Errorf("%s: err = %v, want %s", tc.object, err, tc.reason)
		}
	}
	// Nesting beyond MaxDepth is skipped, not refused.
	e, _ := ParseChirpStack("up", []byte(`{"time":"2022-07-18T09:34:15Z","deviceInfo":{"devEui":"0101010101010101"},"object":{"a":{"b":{"c":{"d":{"e":1}}}},"ok":true}}`))
	out := &decode.Output{}
	n, err := Records(e, "farm", "d", recv, out)
	if err != nil || n != 1 || byMetric(out)["ok"] != 1 {
		t.Fatalf("deep object: skipped %d, %v, %v", n, err, byMetric(out))
	}
}

type devices map[string]*registry.Device

func (d devices) DeviceByAltID(kind, v string) (*registry.Device, bool) {
	x, ok := d[kind+"="+v]
	return x, ok
}

func TestResolve(t *testing.T) {
	devs := devices{
		"deveui=0101010101010101": {Tenant: "farm", ID: "collar-1", Status: registry.StatusActive},
		"deveui=0202020202020202": {Tenant: "farm", ID: "collar-2", Status: registry.StatusRevoked},
	}
	if d, err := Resolve(devs, "0101010101010101"); err != nil || d.ID != "collar-1" {
		t.Fatalf("%v %v", d, err)
	}
	if _, err := Resolve(devs, "0202020202020202"); !errors.Is(err, registry.ErrDeviceInactive) {
		t.Fatalf("revoked: %v", err)
	}
	if _, err := Resolve(devs, "0303030303030303"); !errors.Is(err, registry.ErrUnknownDevice) {
		t.Fatalf("unknown: %v", err)
	}
}
