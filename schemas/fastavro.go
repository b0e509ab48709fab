package schemas

import (
	"slices"
	"strings"
	"time"

	"github.com/drover-iot/drover/schemas/avrobin"
	"github.com/hamba/avro/v2"
)

// The ingest doors encode one SensorReading (or GPSFix) per reading, and
// hamba/avro's reflective encoder was a fifth of the HTTP door's CPU per
// reading (its map iterator alone, for the empty attrs of most readings,
// about 0.45 µs). For these two hot types the Serde appends the bytes
// itself, exactly as hamba/avro writes them:
//
//   - long and int: zigzag varints; timestamp-millis: the long
//     t.Unix()*1e3 + t.Nanosecond()/1e6 (hamba's formula, also for the
//     zero time and times before 1970); double: IEEE 754 bits, little
//     endian, NaN and infinities as they are; boolean: one byte;
//   - string: its length as a long, then its bytes, as they are (no
//     UTF-8 check, as hamba);
//   - ["null", T] from a pointer: index 0 for nil, else index 1 and T;
//   - map: blocks of at most 100 entries (hamba's default block length),
//     each headed by minus its count and its size in bytes, entries in the
//     map's iteration order (random in Go, as with hamba), then a 0 block;
//     a nil or empty map is the 0 block alone.
//
// It is used only when the topic's schema has exactly the shape it writes
// (fastShape, checked field by field: names, order, types, logical types,
// union order), so a schema given with WithSchemas that differs in any way
// goes through hamba. A differential test and fuzz test
// (TestFastEncodeMatchesHamba, FuzzFastEncode) hold its bytes to
// hamba/avro's.

// fastKind is the hand-written encoder a topic's schema allows.
type fastKind uint8

const (
	fastNone fastKind = iota
	fastSensor
	fastGPS
)

// The field shapes the hand-written encoders write, in schema order.
var (
	sensorShape = []string{
		"event_id string", "tenant string", "device_id string",
		"ts long/timestamp-millis", "ingested_at long/timestamp-millis",
		"metric string", "value double", "unit [null,string]", "source string",
		"replayed boolean", "attrs map<string>",
	}
	gpsShape = []string{
		"event_id string", "tenant string", "device_id string",
		"ts long/timestamp-millis", "ingested_at long/timestamp-millis",
		"lat double", "lon double", "alt [null,double]", "hdop [null,double]",
		"speed [null,double]", "satellites [null,int]", "source string",
		"replayed boolean", "attrs map<string>",
	}
)

// fastKindOf returns the hand-written encoder s allows, if any.
func fastKindOf(s avro.Schema) fastKind {
	rs, ok := s.(*avro.RecordSchema)
	if !ok {
		return fastNone
	}
	fields := rs.Fields()
	shape := make([]string, len(fields))
	for i, f := range fields {
		shape[i] = f.Name() + " " + typeShape(f.Type())
	}
	switch {
	case slices.Equal(shape, sensorShape):
		return fastSensor
	case slices.Equal(shape, gpsShape):
		return fastGPS
	}
	return fastNone
}

// typeShape describes s as the shapes above do ("?" for anything the
// hand-written encoders do not write).
func typeShape(s avro.Schema) string {
	switch t := s.(type) {
	case *avro.NullSchema:
		return "null"
	case *avro.PrimitiveSchema:
		if lt := t.Logical(); lt != nil {
			return string(t.Type()) + "/" + string(lt.Type())
		}
		return string(t.Type())
	case *avro.UnionSchema:
		parts := make([]string, len(t.Types()))
		for i, u := range t.Types() {
			parts[i] = typeShape(u)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *avro.MapSchema:
		return "map<" + typeShape(t.Values()) + ">"
	}
	return "?"
}

// appendFast appends header and v's Avro body when kind has a
// hand-written encoder for v's type; ok is false otherwise (dst is
// returned as it was, and hamba encodes v).
func appendFast(dst, header []byte, kind fastKind, v any) ([]byte, bool) {
	switch kind {
	case fastSensor:
		if r, ok := v.(*SensorReading); ok && r != nil {
			return appendSensor(append(slices.Grow(dst, len(header)+sensorSize(r)), header...), r), true
		}
	case fastGPS:
		if r, ok := v.(*GPSFix); ok && r != nil {
			return appendGPS(append(slices.Grow(dst, len(header)+gpsSize(r)), header...), r), true
		}
	}
	return dst, false
}

// sensorSize and gpsSize bound the length of a record's body (a long
// takes at most 10 bytes), so that it is written into one allocation.
func sensorSize(r *SensorReading) int {
	n := strLen(r.EventID) + strLen(r.Tenant) + strLen(r.DeviceID) + 2*10 + strLen(r.Metric) + 8 + 1 + strLen(r.Source) + 1
	if r.Unit != nil {
		n += strLen(*r.Unit)
	}
	return n + mapSize(r.Attrs)
}

func gpsSize(r *GPSFix) int {
	return strLen(r.EventID) + strLen(r.Tenant) + strLen(r.DeviceID) + 2*10 + 2*8 + 3*(1+8) + 1 + 5 + strLen(r.Source) + 1 + mapSize(r.Attrs)
}

func strLen(s string) int { return varintLen(len(s)) + len(s) }

func mapSize(m map[string]string) int {
	n := 1 + (len(m)+mapBlock-1)/mapBlock*2*10
	for k, v := range m {
		n += strLen(k) + strLen(v)
	}
	return n
}

func appendSensor(b []byte, r *SensorReading) []byte {
	b = appendHead(b, r.EventID, r.Tenant, r.DeviceID, r.TS, r.IngestedAt)
	b = avrobin.AppendString(b, r.Metric)
	b = avrobin.AppendDouble(b, r.Value)
	if r.Unit == nil {
		b = append(b, 0)
	} else {
		b = avrobin.AppendString(append(b, 2), *r.Unit)
	}
	b = avrobin.AppendString(b, r.Source)
	b = avrobin.AppendBool(b, r.Replayed)
	return appendStringMap(b, r.Attrs)
}

func appendGPS(b []byte, r *GPSFix) []byte {
	b = appendHead(b, r.EventID, r.Tenant, r.DeviceID, r.TS, r.IngestedAt)
	b = avrobin.AppendDouble(b, r.Lat)
	b = avrobin.AppendDouble(b, r.Lon)
	for _, p := range [...]*float64{r.Alt, r.HDOP, r.Speed} {
		if p == nil {
			b = append(b, 0)
		} else {
			b = avrobin.AppendDouble(append(b, 2), *p)
		}
	}
	if r.Satellites == nil {
		b = append(b, 0)
	} else {
		b = avrobin.AppendLong(append(b, 2), int64(*r.Satellites))
	}
	b = avrobin.AppendString(b, r.Source)
	b = avrobin.AppendBool(b, r.Replayed)
	return appendStringMap(b, r.Attrs)
}

// appendHead appends the fields both record types start with.
func appendHead(b []byte, eventID, tenant, device string, ts, ingestedAt time.Time) []byte {
	b = avrobin.AppendString(b, eventID)
	b = avrobin.AppendString(b, tenant)
	b = avrobin.AppendString(b, device)
	b = appendMillis(b, ts)
	return appendMillis(b, ingestedAt)
}

func appendMillis(b []byte, t time.Time) []byte {
	return avrobin.AppendLong(b, t.Unix()*1e3+int64(t.Nanosecond()/1e6))
}

// mapBlock is hamba/avro's default block length of maps.
const mapBlock = 100

// appendStringMap appends m as hamba/avro writes a map: blocks of at most
// mapBlock entries headed by -count and their size in bytes, then 0.
func appendStringMap(b []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(b, 0)
	}
	var block []byte // the current block's entries
	n := 0
	flush := func() {
		b = avrobin.AppendLong(b, -int64(n))
		b = avrobin.AppendLong(b, int64(len(block)))
		b = append(b, block...)
		block, n = block[:0], 0
	}
	if len(m) <= mapBlock {
		// One block: its size is known before its entries are written.
		size := 0
		for k, v := range m {
			size += varintLen(len(k)) + len(k) + varintLen(len(v)) + len(v)
		}
		b = avrobin.AppendLong(b, -int64(len(m)))
		b = avrobin.AppendLong(b, int64(size))
		for k, v := range m {
			b = avrobin.AppendString(avrobin.AppendString(b, k), v)
		}
		return append(b, 0)
	}
	for k, v := range m {
		block = avrobin.AppendString(avrobin.AppendString(block, k), v)
		if n++; n == mapBlock {
			flush()
		}
	}
	if n > 0 {
		flush()
	}
	return append(b, 0)
}

// varintLen is the length of the Avro long l (l ≥ 0).
func varintLen(l int) int {
	u := uint64(l) << 1
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
