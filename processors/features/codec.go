package features

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/drover-iot/drover/schemas/avrobin"
)

// stateSchemaV1 is the Avro schema of a device's entry in the group table
// (deviceState), version 1. Change it only by adding a new version to
// stateCodec; old entries stay readable.
const stateSchemaV1 = `{
  "type": "record", "name": "FeaturesDeviceState", "namespace": "io.drover.processors.features",
  "fields": [
    {"name": "tenant", "type": "string"},
    {"name": "wm", "type": "long"},
    {"name": "lw", "type": "long"},
    {"name": "w", "type": {"type": "array", "items": {
      "type": "record", "name": "Window",
      "fields": [
        {"name": "m", "type": "string"},
        {"name": "z", "type": "long"},
        {"name": "s", "type": "long"},
        {"name": "n", "type": "long"},
        {"name": "min", "type": "double"},
        {"name": "max", "type": "double"},
        {"name": "mean", "type": "double"},
        {"name": "m2", "type": "double"},
        {"name": "f", "type": "double"},
        {"name": "fts", "type": "long"},
        {"name": "l", "type": "double"},
        {"name": "lts", "type": "long"},
        {"name": "mo", "type": "boolean"},
        {"name": "d", "type": "double"},
        {"name": "vmax", "type": "double"},
        {"name": "mov", "type": "double"},
        {"name": "sta", "type": "double"},
        {"name": "late", "type": "long"},
        {"name": "e", "type": "boolean"}
      ]}}},
    {"name": "fix", "type": ["null", {"type": "record", "name": "Fix", "fields": [
      {"name": "ts", "type": "long"},
      {"name": "lat", "type": "double"},
      {"name": "lon", "type": "double"}
    ]}], "default": null},
    {"name": "so", "type": "long", "default": 0},
    {"name": "go", "type": "long", "default": 0}
  ]
}`

// stateVersion is the version byte in front of every table value.
const stateVersion = 1

// stateCodec is the goka codec of the features group table: a version byte
// (1) followed by the Avro binary encoding of deviceState with
// stateSchemaV1, written and read by hand. goka decodes and re-encodes a
// device's state for every input record; reflection-based Avro (hamba)
// spent a fifth of the group's CPU there. A test checks the bytes against
// hamba/avro with the schema, so any Avro tool reads them.
var stateCodec codec

type codec struct{}

// Encode implements goka.Codec; v is *deviceState.
func (codec) Encode(v interface{}) ([]byte, error) {
	d, ok := v.(*deviceState)
	if !ok || d == nil {
		return nil, fmt.Errorf("features state codec: cannot encode %T", v)
	}
	b := make([]byte, 0, 32+len(d.Tenant)+len(d.Windows)*128)
	b = append(b, stateVersion)
	b = avrobin.AppendString(b, d.Tenant)
	b = binary.AppendVarint(b, d.Watermark)
	b = binary.AppendVarint(b, d.LastWall)
	if n := len(d.Windows); n > 0 {
		b = binary.AppendVarint(b, int64(n))
		for _, w := range d.Windows {
			b = avrobin.AppendString(b, w.Metric)
			b = binary.AppendVarint(b, w.Size)
			b = binary.AppendVarint(b, w.Start)
			b = binary.AppendVarint(b, w.Count)
			b = avrobin.AppendDouble(b, w.Min)
			b = avrobin.AppendDouble(b, w.Max)
			b = avrobin.AppendDouble(b, w.Mean)
			b = avrobin.AppendDouble(b, w.M2)
			b = avrobin.AppendDouble(b, w.First)
			b = binary.AppendVarint(b, w.FirstTS)
			b = avrobin.AppendDouble(b, w.Last)
			b = binary.AppendVarint(b, w.LastTS)
			b = avrobin.AppendBool(b, w.Motion)
			b = avrobin.AppendDouble(b, w.Dist)
			b = avrobin.AppendDouble(b, w.MaxSpeed)
			b = avrobin.AppendDouble(b, w.Moving)
			b = avrobin.AppendDouble(b, w.Stationary)
			b = binary.AppendVarint(b, w.Late)
			b = avrobin.AppendBool(b, w.Emitted)
		}
	}
	b = binary.AppendVarint(b, 0) // end of the array
	if d.Fix == nil {
		b = binary.AppendVarint(b, 0)
	} else {
		b = binary.AppendVarint(b, 1)
		b = binary.AppendVarint(b, d.Fix.TS)
		b = avrobin.AppendDouble(b, d.Fix.Lat)
		b = avrobin.AppendDouble(b, d.Fix.Lon)
	}
	b = binary.AppendVarint(b, d.SensorNext)
	b = binary.AppendVarint(b, d.GPSNext)
	return b, nil
}

// Decode implements goka.Codec; it returns *deviceState.
func (codec) Decode(b []byte) (interface{}, error) {
	if len(b) == 0 || b[0] != stateVersion {
		if len(b) == 0 {
			return nil, errors.New("features state codec: empty value")
		}
		return nil, fmt.Errorf("features state codec: unknown version %d (this build reads %d)", b[0], stateVersion)
	}
	r := reader{b: b[1:]}
	d := &deviceState{}
	d.Tenant = r.string()
	d.Watermark = r.long()
	d.LastWall = r.long()
	for {
		n := r.long()
		if n == 0 || r.err != nil {
			break
		}
		if n < 0 { // a block with its size in bytes
			n = -n
			r.long()
		}
		if n > int64(len(r.b)) {
			r.fail("window count %d exceeds the value", n)
			break
		}
		for i := int64(0); i < n && r.err == nil; i++ {
			w := &window{}
			w.Metric = r.string()
			w.Size = r.long()
			w.Start = r.long()
			w.Count = r.long()
			w.Min = r.double()
			w.Max = r.double()
			w.Mean = r.double()
			w.M2 = r.double()
			w.First = r.double()
			w.FirstTS = r.long()
			w.Last = r.double()
			w.LastTS = r.long()
			w.Motion = r.bool()
			w.Dist = r.double()
			w.MaxSpeed = r.double()
			w.Moving = r.double()
			w.Stationary = r.double()
			w.Late = r.long()
			w.Emitted = r.bool()
			d.Windows = append(d.Windows, w)
		}
	}
	switch r.long() {
	case 0:
	case 1:
		d.Fix = &fix{TS: r.long(), Lat: r.double(), Lon: r.double()}
	default:
		r.fail("bad union index for fix")
	}
	d.SensorNext = r.long()
	d.GPSNext = r.long()
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("features state codec: %w", r.err)
	}
	return d, nil
}

// reader decodes Avro binary; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
	r.b = nil
}

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("truncated long")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) double() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated double")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) bool() bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < 1 || r.b[0] > 1 {
		r.fail("bad boolean")
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *reader) string() string {
	n := r.long()
	if r.err != nil {
		return ""
	}
	if n < 0 || n > int64(len(r.b)) {
		r.fail("bad string length %d", n)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
