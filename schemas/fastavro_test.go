package schemas

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/topics"
)

// hambaBody is v's Avro body as hamba/avro writes it with the Serde's
// configuration: what the hand-written encoders must reproduce.
func hambaBody(t testing.TB, s *Serde, schema avro.Schema, v any) []byte {
	t.Helper()
	w := avro.NewWriter(nil, 512, avro.WithWriterConfig(s.api))
	w.WriteVal(schema, v)
	if w.Error != nil {
		t.Fatalf("hamba: %v", w.Error)
	}
	return bytes.Clone(w.Buffer())
}

// sameEncoding fails t unless ours is hamba's encoding of a record whose
// attrs are m and whose encoding without attrs (nil) is bare: byte for
// byte, or, with two entries or more (hamba writes a map in Go's random
// iteration order), byte for byte up to the map and then the same map
// blocks with the same entries.
func sameEncoding(t testing.TB, what string, ours, hamba, bare []byte, m map[string]string) {
	t.Helper()
	if len(m) <= 1 {
		if !bytes.Equal(ours, hamba) {
			t.Fatalf("%s: hand-written\n%x\nhamba\n%x", what, ours, hamba)
		}
		return
	}
	n := len(bare) - 1 // the bytes before the map (a nil map is one 0)
	if len(ours) < n || len(hamba) < n || !bytes.Equal(ours[:n], hamba[:n]) || !bytes.Equal(hamba[:n], bare[:n]) {
		t.Fatalf("%s: before the map: hand-written\n%x\nhamba\n%x", what, ours, hamba)
	}
	bo, eo, err := readMap(ours[n:])
	if err != nil {
		t.Fatalf("%s: hand-written map: %v\n%x", what, err, ours)
	}
	bh, eh, err := readMap(hamba[n:])
	if err != nil {
		t.Fatalf("%s: hamba map: %v\n%x", what, err, hamba)
	}
	if fmt.Sprint(bo) != fmt.Sprint(bh) {
		t.Fatalf("%s: map block counts: hand-written %v, hamba %v", what, bo, bh)
	}
	if !maps.Equal(eo, m) || !maps.Equal(eh, m) {
		t.Fatalf("%s: map entries: hand-written %v, hamba %v, want %v", what, eo, eh, m)
	}
}

// readMap reads a map<string> of at least one entry that ends b: its
// blocks' counts and its entries, each block's size header checked
// against its entries.
func readMap(b []byte) ([]int, map[string]string, error) {
	var counts []int
	m := map[string]string{}
	long := func() (int64, error) {
		u, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, fmt.Errorf("bad varint")
		}
		b = b[n:]
		return int64(u>>1) ^ -int64(u&1), nil
	}
	str := func() (string, error) {
		l, err := long()
		if err != nil || l < 0 || l > int64(len(b)) {
			return "", fmt.Errorf("bad string")
		}
		s := string(b[:l])
		b = b[l:]
		return s, nil
	}
	for {
		c, err := long()
		if err != nil {
			return nil, nil, err
		}
		if c == 0 {
			break
		}
		if c > 0 {
			return nil, nil, fmt.Errorf("block without a size")
		}
		size, err := long()
		if err != nil || size < 0 || size > int64(len(b)) {
			return nil, nil, fmt.Errorf("bad block size")
		}
		left := len(b)
		for range -c {
			k, err := str()
			if err != nil {
				return nil, nil, err
			}
			v, err := str()
			if err != nil {
				return nil, nil, err
			}
			if _, dup := m[k]; dup {
				return nil, nil, fmt.Errorf("duplicate key")
			}
			m[k] = v
		}
		if int64(left-len(b)) != size {
			return nil, nil, fmt.Errorf("block size %d, entries %d bytes", size, left-len(b))
		}
		counts = append(counts, int(-c))
	}
	if len(b) != 0 || len(counts) == 0 {
		return nil, nil, fmt.Errorf("trailing bytes or no entries")
	}
	return counts, m, nil
}

var oddStrings = []string{
	"", "a", "temperature", "Cel", "ünïcødé", "温度", "🐄🐄", "\x00", "\xff\xfe not utf-8", "a\"b\\c\n",
	strings.Repeat("x", 63), strings.Repeat("y", 64), strings.Repeat("z", 127), strings.Repeat("w", 128),
	strings.Repeat("long ", 3000),
}

var oddFloats = []float64{
	0, math.Copysign(0, -1), 1, -1, 38.6, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
	math.Inf(1), math.Inf(-1), math.NaN(), math.Float64frombits(0x7ff8000000000001), math.Float64frombits(0xfff0000000000001),
}

var oddTimes = func() []time.Time {
	loc := time.FixedZone("X", -(9*3600 + 30*60))
	return []time.Time{
		{}, time.Unix(0, 0), time.Unix(0, 999_999), time.Unix(-1, 0), time.Unix(-1, 1), time.Unix(-1, 999_999_999),
		time.UnixMilli(1_700_000_000_123).UTC(), time.Unix(1_700_000_000, 123_456_789).In(loc),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 500_000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 1_500_000, loc),
		time.Date(-50, 3, 1, 0, 0, 0, 7, time.UTC), time.Date(200000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}()

func randAttrs(r *rand.Rand) map[string]string {
	var n int
	switch r.IntN(8) {
	case 0:
		return nil
	case 1:
		return map[string]string{}
	case 2, 3:
		n = 1
	case 4, 5:
		n = 2 + r.IntN(5)
	case 6:
		n = 95 + r.IntN(10) // around one block
	default:
		n = 150 + r.IntN(200) // several blocks
	}
	m := make(map[string]string, n)
	for i := 0; len(m) < n; i++ {
		v := oddStrings[r.IntN(len(oddStrings)-1)] // the 15 kB string in small maps only
		if n <= 2 {
			v = pick(r, oddStrings)
		}
		m[fmt.Sprintf("%s%d", oddStrings[r.IntN(len(oddStrings)-1)], i)] = v
	}
	return m
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randReading(r *rand.Rand) *SensorReading {
	rd := &SensorReading{
		EventID: pick(r, oddStrings), Tenant: pick(r, oddStrings), DeviceID: pick(r, oddStrings),
		TS: pick(r, oddTimes), IngestedAt: pick(r, oddTimes), Metric: pick(r, oddStrings),
		Value: pick(r, oddFloats), Source: pick(r, oddStrings), Replayed: r.IntN(2) == 0, Attrs: randAttrs(r),
	}
	if r.IntN(3) == 0 {
		rd.TS = time.UnixMilli(r.Int64N(1<<50) - 1<<49).Add(time.Duration(r.IntN(1e6)))
		rd.Value = math.Float64frombits(r.Uint64())
	}
	if r.IntN(2) == 0 {
		rd.Unit = ptr(pick(r, oddStrings))
	}
	return rd
}

func randFix(r *rand.Rand) *GPSFix {
	f := &GPSFix{
		EventID: pick(r, oddStrings), Tenant: pick(r, oddStrings), DeviceID: pick(r, oddStrings),
		TS: pick(r, oddTimes), IngestedAt: pick(r, oddTimes), Lat: pick(r, oddFloats), Lon: pick(r, oddFloats),
		Source: pick(r, oddStrings), Replayed: r.IntN(2) == 0, Attrs: randAttrs(r),
	}
	for _, p := range []**float64{&f.Alt, &f.HDOP, &f.Speed} {
		if r.IntN(2) == 0 {
			*p = ptr(pick(r, oddFloats))
		}
	}
	if r.IntN(2) == 0 {
		f.Satellites = ptr(pick(r, []int32{0, 1, -1, 63, 64, -64, -65, 12, math.MaxInt32, math.MinInt32}))
	}
	return f
}

// TestFastEncodeMatchesHamba holds the hand-written encoders of
// SensorReading and GPSFix to hamba/avro's bytes over random records:
// unicode, invalid UTF-8 and long strings, NaN payloads and infinities,
// zero, pre-1970 and far times in other zones, nil and set optional
// fields, nil, empty, small and multi-block attrs.
func TestFastEncodeMatchesHamba(t *testing.T) {
	s := newSerde(t, nil)
	sensor, _ := ForTopic(topics.RawSensor)
	gps, _ := ForTopic(topics.RawGPS)
	r := rand.New(rand.NewPCG(18, 2026))
	for i := range 20000 {
		rd := randReading(r)
		got, ok := appendFast([]byte("prefix"), []byte{9}, fastSensor, rd)
		if !ok || !bytes.HasPrefix(got, []byte("prefix\x09")) {
			t.Fatalf("appendFast did not encode a *SensorReading after dst and header: %x", got)
		}
		if len(got)-7 > sensorSize(rd) {
			t.Fatalf("reading %d: %d bytes, sensorSize bounds it at %d", i, len(got)-7, sensorSize(rd))
		}
		bareRd := *rd
		bareRd.Attrs = nil
		sameEncoding(t, fmt.Sprintf("reading %d %+v", i, rd), got[7:], hambaBody(t, s, sensor, rd), hambaBody(t, s, sensor, &bareRd), rd.Attrs)

		f := randFix(r)
		got, ok = appendFast(nil, nil, fastGPS, f)
		if !ok {
			t.Fatal("appendFast did not encode a *GPSFix")
		}
		if len(got) > gpsSize(f) {
			t.Fatalf("fix %d: %d bytes, gpsSize bounds it at %d", i, len(got), gpsSize(f))
		}
		bareF := *f
		bareF.Attrs = nil
		sameEncoding(t, fmt.Sprintf("fix %d %+v", i, f), got, hambaBody(t, s, gps, f), hambaBody(t, s, gps, &bareF), f.Attrs)
	}
}

// TestFastEncodeOnlyForItsShape: the Serde uses a hand-written encoder
// only for a schema of exactly its shape, and only for its type; any other
// schema or value goes through hamba/avro.
func TestFastEncodeOnlyForItsShape(t *testing.T) {
	for topic, want := range map[string]fastKind{topics.RawSensor: fastSensor, topics.RawGPS: fastGPS, topics.RawImage2D: fastNone, topics.DLQ: fastNone} {
		s, _ := ForTopic(topic)
		if got := fastKindOf(s); got != want {
			t.Errorf("%s: fast kind %d, want %d", topic, got, want)
		}
	}
	text := Source(topics.RawSensor)
	for name, change := range map[string][2]string{
		"micros":        {`"timestamp-millis"}, "doc": "Event time`, `"timestamp-micros"}, "doc": "Event time`},
		"union order":   {`["null", "string"], "default": null`, `["string", "null"], "default": "x"`},
		"int value":     {`"type": "double"`, `"type": "float"`},
		"renamed field": {`"name": "metric"`, `"name": "metric_name"`},
		"map of longs":  {`"values": "string"`, `"values": "long"`},
	} {
		changed := strings.Replace(text, change[0], change[1], 1)
		if changed == text {
			t.Fatalf("%s: the change does not apply", name)
		}
		sc, err := parse(changed)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k := fastKindOf(sc); k != fastNone {
			t.Errorf("%s: a changed schema gets the hand-written encoder %d", name, k)
		}
	}
	// Through the Serde, with the registry: the wire format of each.
	_, client := newRegistry(t)
	ctx := testCtx(t)
	s := newSerde(t, client, AutoRegister(true))
	sensor, _ := ForTopic(topics.RawSensor)
	rd := benchReading()
	got, err := s.AppendEncode(ctx, []byte("x"), topics.RawSensor, rd)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.ID(ctx, topics.RawSensor)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("x"), Header(id)...), hambaBody(t, s, sensor, rd)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendEncode\n%x\nwant\n%x", got, want)
	}
	var back SensorReading
	if _, err := s.Decode(ctx, got[1:], &back); err != nil || back.Metric != rd.Metric || back.Value != rd.Value || *back.Unit != *rd.Unit {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	// A value that is not a *SensorReading still encodes (through hamba).
	asMap := map[string]any{"event_id": "e", "tenant": "t", "device_id": "d", "ts": time.UnixMilli(5), "ingested_at": time.UnixMilli(6),
		"metric": "m", "value": 1.5, "unit": nil, "source": "s", "replayed": false, "attrs": map[string]any{}}
	if _, err := s.Encode(ctx, topics.RawSensor, asMap); err != nil {
		t.Fatalf("a map for raw.sensor: %v", err)
	}
	if _, err := s.Encode(ctx, topics.RawSensor, *rd); err != nil {
		t.Fatalf("a SensorReading value: %v", err)
	}
}

// FuzzFastEncode: the hand-written SensorReading and GPSFix encodings
// equal hamba/avro's for any strings, times, float bits and attrs.
//
//	go test -run '^$' -fuzz FuzzFastEncode -fuzztime 30s ./schemas/
func FuzzFastEncode(f *testing.F) {
	f.Add("ev", "farm1", "cow-7", int64(1_700_000_000_123), int64(5), uint64(0x4043533333333333), "Cel", true, false, "fw", "1.2.3", uint8(1), int32(7))
	f.Add("", "", "", int64(-62135596800), int64(999_999_999), uint64(0x7ff8000000000001), "", false, true, "", "", uint8(0), int32(-1))
	f.Add("ünï", "\xff", "温度", int64(-1), int64(1), uint64(0xfff0000000000000), "🐄", true, true, "k", "v", uint8(230), int32(math.MinInt32))
	s := newSerde(f, nil)
	sensor, _ := ForTopic(topics.RawSensor)
	gps, _ := ForTopic(topics.RawGPS)
	f.Fuzz(func(t *testing.T, id, tenant, metric string, sec, nsec int64, bits uint64, unit string, hasUnit, replayed bool, k, v string, nattrs uint8, sats int32) {
		ts := time.Unix(sec%(300_000*365*86400), nsec)
		var attrs map[string]string
		if nattrs > 0 {
			attrs = map[string]string{k: v}
			for i := 1; i < int(nattrs); i++ {
				attrs[fmt.Sprint(k, i)] = v
			}
		}
		rd := &SensorReading{EventID: id, Tenant: tenant, DeviceID: metric, TS: ts, IngestedAt: ts.Add(time.Duration(bits % 1e12)),
			Metric: metric, Value: math.Float64frombits(bits), Source: unit, Replayed: replayed, Attrs: attrs}
		fx := &GPSFix{EventID: id, Tenant: tenant, DeviceID: metric, TS: ts, IngestedAt: ts, Lat: math.Float64frombits(bits),
			Lon: math.Float64frombits(^bits), Source: unit, Replayed: replayed, Attrs: attrs}
		if hasUnit {
			rd.Unit = &unit
			fx.Alt, fx.Satellites = ptr(math.Float64frombits(bits>>1)), &sats
		} else {
			fx.HDOP, fx.Speed = ptr(float64(sats)), ptr(-float64(nsec))
		}
		got, _ := appendFast(nil, nil, fastSensor, rd)
		bareRd, bareFx := *rd, *fx
		bareRd.Attrs, bareFx.Attrs = nil, nil
		sameEncoding(t, "reading", got, hambaBody(t, s, sensor, rd), hambaBody(t, s, sensor, &bareRd), attrs)
		got, _ = appendFast(nil, nil, fastGPS, fx)
		sameEncoding(t, "fix", got, hambaBody(t, s, gps, fx), hambaBody(t, s, gps, &bareFx), attrs)
	})
}
