// Package avrobin appends Avro binary encoding's primitive values
// (https://avro.apache.org/docs/current/specification/#binary-encoding),
// for drover's hand-written encoders (schemas' fast path for the hottest
// record types, the features group's state codec), which are held to
// hamba/avro byte for byte by their tests.
package avrobin

import (
	"encoding/binary"
	"math"
)

// AppendLong appends i zigzag-encoded as a varint (an int widened to
// int64 encodes as Avro's int does).
func AppendLong(b []byte, i int64) []byte {
	return binary.AppendUvarint(b, uint64(i<<1)^uint64(i>>63))
}

// AppendDouble appends f as 8 little-endian bytes.
func AppendDouble(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// AppendBool appends v as one byte.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendString appends s as its length (a long) and its bytes.
func AppendString(b []byte, s string) []byte {
	return append(AppendLong(b, int64(len(s))), s...)
}
