package inspect

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
)

// timeLayout renders timestamps: RFC 3339 in UTC with milliseconds, the
// precision of Avro timestamp-millis and of Kafka record timestamps.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendTime appends t as a JSON string in timeLayout (UTC).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, timeLayout)
	return append(b, '"')
}

// appendValue appends v, a value decoded by hamba/avro's generic mapping
// with schema s, as JSON. Record fields keep the schema's order; Avro maps
// are written with sorted keys; timestamps become RFC 3339 strings, bytes
// base64, NaN and infinities the strings "NaN", "+Inf" and "-Inf".
func appendValue(b []byte, s avro.Schema, v any) []byte {
	if rs, ok := s.(*avro.RecordSchema); ok {
		if m, ok := v.(map[string]any); ok {
			b = append(b, '{')
			for i, f := range rs.Fields() {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, f.Name())
				b = append(b, ':')
				b = appendValue(b, f.Type(), m[f.Name()])
			}
			return append(b, '}')
		}
	}
	if rs, ok := s.(*avro.RefSchema); ok {
		return appendValue(b, rs.Schema(), v)
	}
	if us, ok := s.(*avro.UnionSchema); ok && v != nil {
		// A nullable union decodes to its plain value: write it with the
		// non-null member's schema so nested records keep their order.
		if us.Nullable() {
			for _, t := range us.Types() {
				if t.Type() != avro.Null {
					return appendValue(b, t, v)
				}
			}
		}
	}
	if as, ok := s.(*avro.ArraySchema); ok {
		if arr, ok := v.([]any); ok {
			b = append(b, '[')
			for i, e := range arr {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendValue(b, as.Items(), e)
			}
			return append(b, ']')
		}
	}
	return appendAny(b, v)
}

// appendAny appends a generic value as JSON.
func appendAny(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int32:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float32:
		return appendFloat(b, float64(x), 32)
	case float64:
		return appendFloat(b, x, 64)
	case time.Time:
		return appendTime(b, x)
	case time.Duration:
		return appendString(b, x.String())
	case []byte:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendAny(b, x[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAny(b, e)
		}
		return append(b, ']')
	case *big.Rat:
		return append(b, x.FloatString(10)...)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return appendString(b, "unprintable value: "+err.Error())
	}
	return append(b, j...)
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendUnicodeEscape appends \uXXXX for a rune of the basic plane (or one
// half of a surrogate pair).
func appendUnicodeEscape(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
// Besides what JSON requires, it escapes DEL and every non-printable rune
// (C1 controls, bidi overrides and other format characters, U+2028/9), so
// that a line read on a terminal shows them rather than obeys them.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if !strconv.IsPrint(r) {
			b = append(b, s[start:i]...)
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				b = appendUnicodeEscape(appendUnicodeEscape(b, r1), r2)
			} else {
				b = appendUnicodeEscape(b, r)
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
