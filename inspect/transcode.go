package inspect

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"time"
	"unsafe"

	"github.com/hamba/avro/v2"
)

// A transcoder turns an Avro body straight into JSON, without building Go
// values: the fast path of `drover tail` for JSON output. It writes what
// appendValue writes for hamba/avro's generic decoding of the same body
// (record fields in schema order, timestamps as RFC 3339, bytes as base64,
// a nullable union as its value, another union as {"type": value}), except
// that Avro map keys keep their wire order.
type transcoder func(b []byte, r *avroReader) []byte

// errShort is a body that ends early or holds an impossible length.
var errShort = errors.New("avro body ends early or has a bad length")

// avroReader reads an Avro binary body.
type avroReader struct {
	buf []byte
	pos int
	err error
}

func (r *avroReader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.pos = len(r.buf)
}

func (r *avroReader) long() int64 {
	v, n := binary.Uvarint(r.buf[r.pos:])
	if n <= 0 {
		r.fail()
		return 0
	}
	r.pos += n
	return int64(v>>1) ^ -int64(v&1)
}

func (r *avroReader) bytes() []byte {
	n := r.long()
	if n < 0 || n > int64(len(r.buf)-r.pos) {
		r.fail()
		return nil
	}
	p := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return p
}

func (r *avroReader) fixed(n int) []byte {
	if n > len(r.buf)-r.pos {
		r.fail()
		return nil
	}
	p := r.buf[r.pos : r.pos+n]
	r.pos += n
	return p
}

// newTranscoder compiles schema s; nil when s uses something the fast path
// does not handle (decimal, duration), so the caller falls back to the
// generic decoder.
func newTranscoder(s avro.Schema) transcoder {
	return compile(s, map[string]*transcoder{})
}

func compile(s avro.Schema, named map[string]*transcoder) transcoder {
	switch x := s.(type) {
	case *avro.RefSchema:
		name := x.Schema().FullName()
		if p, ok := named[name]; ok {
			return func(b []byte, r *avroReader) []byte { return (*p)(b, r) }
		}
		return compile(x.Schema(), named)
	case *avro.RecordSchema:
		slot := new(transcoder)
		named[x.FullName()] = slot
		fields := x.Fields()
		names := make([][]byte, len(fields))
		codecs := make([]transcoder, len(fields))
		for i, f := range fields {
			sep := ","
			if i == 0 {
				sep = "{"
			}
			names[i] = appendString([]byte(sep), f.Name())
			names[i] = append(names[i], ':')
			if codecs[i] = compile(f.Type(), named); codecs[i] == nil {
				return nil
			}
		}
		*slot = func(b []byte, r *avroReader) []byte {
			if len(codecs) == 0 {
				return append(b, '{', '}')
			}
			for i, c := range codecs {
				b = append(b, names[i]...)
				b = c(b, r)
			}
			return append(b, '}')
		}
		return *slot
	case *avro.NullSchema:
		return func(b []byte, _ *avroReader) []byte { return append(b, "null"...) }
	case *avro.PrimitiveSchema:
		return compilePrimitive(x)
	case *avro.EnumSchema:
		syms := make([][]byte, len(x.Symbols()))
		for i, s := range x.Symbols() {
			syms[i] = appendString(nil, s)
		}
		return func(b []byte, r *avroReader) []byte {
			i := r.long()
			if i < 0 || i >= int64(len(syms)) {
				r.fail()
				return b
			}
			return append(b, syms[i]...)
		}
	case *avro.FixedSchema:
		if x.Logical() != nil {
			return nil
		}
		n := x.Size()
		return func(b []byte, r *avroReader) []byte { return appendBase64(b, r.fixed(n)) }
	case *avro.ArraySchema:
		item := compile(x.Items(), named)
		if item == nil {
			return nil
		}
		return func(b []byte, r *avroReader) []byte {
			b = append(b, '[')
			first := true
			for r.err == nil {
				n := blockCount(r)
				if n == 0 {
					break
				}
				for ; n > 0 && r.err == nil; n-- {
					if !first {
						b = append(b, ',')
					}
					first = false
					b = item(b, r)
				}
			}
			return append(b, ']')
		}
	case *avro.MapSchema:
		val := compile(x.Values(), named)
		if val == nil {
			return nil
		}
		return func(b []byte, r *avroReader) []byte {
			b = append(b, '{')
			first := true
			for r.err == nil {
				n := blockCount(r)
				if n == 0 {
					break
				}
				for ; n > 0 && r.err == nil; n-- {
					if !first {
						b = append(b, ',')
					}
					first = false
					b = appendString(b, bytesString(r.bytes()))
					b = append(b, ':')
					b = val(b, r)
				}
			}
			return append(b, '}')
		}
	case *avro.UnionSchema:
		types := x.Types()
		codecs := make([]transcoder, len(types))
		wrap := make([][]byte, len(types))
		nullable := x.Nullable()
		for i, t := range types {
			if codecs[i] = compile(t, named); codecs[i] == nil {
				return nil
			}
			if !nullable && t.Type() != avro.Null {
				wrap[i] = append(appendString([]byte{'{'}, unionName(t)), ':')
			}
		}
		return func(b []byte, r *avroReader) []byte {
			i := r.long()
			if i < 0 || i >= int64(len(codecs)) {
				r.fail()
				return b
			}
			if wrap[i] == nil {
				return codecs[i](b, r)
			}
			b = append(b, wrap[i]...)
			b = codecs[i](b, r)
			return append(b, '}')
		}
	}
	return nil
}

// unionName is the key hamba/avro gives a union member in generic decoding.
func unionName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	if p, ok := s.(*avro.PrimitiveSchema); ok && p.Logical() != nil {
		return string(p.Type()) + "." + string(p.Logical().Type())
	}
	return string(s.Type())
}

// blockCount reads an array or map block header (a negative count is
// followed by the block's size in bytes).
func blockCount(r *avroReader) int64 {
	n := r.long()
	if n < 0 {
		n = -n
		r.long()
	}
	if n > int64(len(r.buf)-r.pos) { // every item takes at least one byte... or none (null)
		if n > 1<<24 {
			r.fail()
			return 0
		}
	}
	return n
}

func compilePrimitive(p *avro.PrimitiveSchema) transcoder {
	var logical avro.LogicalType
	if l := p.Logical(); l != nil {
		logical = l.Type()
	}
	switch p.Type() {
	case avro.Boolean:
		return func(b []byte, r *avroReader) []byte {
			v := r.fixed(1)
			if len(v) == 1 && v[0] != 0 {
				return append(b, "true"...)
			}
			return append(b, "false"...)
		}
	case avro.Int:
		switch logical {
		case avro.Date:
			return func(b []byte, r *avroReader) []byte {
				return appendMillis(b, r.long()*86_400_000)
			}
		case avro.TimeMillis:
			return func(b []byte, r *avroReader) []byte {
				return appendString(b, (time.Duration(r.long()) * time.Millisecond).String())
			}
		}
		return func(b []byte, r *avroReader) []byte { return strconv.AppendInt(b, r.long(), 10) }
	case avro.Long:
		switch logical {
		case avro.TimestampMillis, avro.LocalTimestampMillis:
			return func(b []byte, r *avroReader) []byte { return appendMillis(b, r.long()) }
		case avro.TimestampMicros, avro.LocalTimestampMicros:
			return func(b []byte, r *avroReader) []byte {
				return appendTime(b, time.UnixMicro(r.long()))
			}
		case avro.TimeMicros:
			return func(b []byte, r *avroReader) []byte {
				return appendString(b, (time.Duration(r.long()) * time.Microsecond).String())
			}
		}
		return func(b []byte, r *avroReader) []byte { return strconv.AppendInt(b, r.long(), 10) }
	case avro.Float:
		return func(b []byte, r *avroReader) []byte {
			v := r.fixed(4)
			if len(v) < 4 {
				return b
			}
			return appendFloat(b, float64(math.Float32frombits(binary.LittleEndian.Uint32(v))), 32)
		}
	case avro.Double:
		return func(b []byte, r *avroReader) []byte {
			v := r.fixed(8)
			if len(v) < 8 {
				return b
			}
			return appendFloat(b, math.Float64frombits(binary.LittleEndian.Uint64(v)), 64)
		}
	case avro.String:
		return func(b []byte, r *avroReader) []byte { return appendString(b, bytesString(r.bytes())) }
	case avro.Bytes:
		if logical == avro.Decimal {
			return nil
		}
		return func(b []byte, r *avroReader) []byte { return appendBase64(b, r.bytes()) }
	case avro.Null:
		return func(b []byte, _ *avroReader) []byte { return append(b, "null"...) }
	}
	return nil
}

// bytesString views p as a string without copying; the string must not
// outlive the call it is passed to (appendString copies it into b).
func bytesString(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

func appendBase64(b, p []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendMillis appends a Unix millisecond timestamp as a JSON string in
// timeLayout, faster than time.Format.
func appendMillis(b []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return appendTime(b, t)
	}
	h, mi, s := t.Clock()
	milli := int(ms % 1000)
	if milli < 0 {
		milli += 1000
	}
	b = append(b, '"')
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10), '.',
		byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z', '"')
	return b
}
