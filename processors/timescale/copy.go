package timescale

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/schemas"
)

// The high-volume tables (sensor_readings, gps_fixes) are copied in
// PostgreSQL's binary COPY format, encoded here straight from the rows:
// pgx's CopyFrom takes each row as []any, boxes every value and looks up
// an encode plan per value, which cost the sink about 1.8 µs of CPU per
// reading, more than decoding its Avro record, on a machine where the
// database server competes for the same cores. The bytes are the ones pgx
// sends for the same values (copy_test.go compares the stored rows).

// copyBuf builds one binary COPY stream.
type copyBuf struct{ b []byte }

// copyBufs recycles copy buffers (a little over 64 KiB each: see
// copyReader).
var copyBufs = sync.Pool{New: func() any { return &copyBuf{} }}

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's timestamp epoch, in Unix
// microseconds.
const pgEpochMicros = 946_684_800 * 1_000_000

// copySignature starts a binary COPY stream: the signature, a flags field
// and an empty header extension.
const copySignature = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"

func (c *copyBuf) reset() { c.b = append(c.b[:0], copySignature...) }

// end appends the trailer.
func (c *copyBuf) end() { c.b = binary.BigEndian.AppendUint16(c.b, 0xffff) }

// tuple starts a row of n fields.
func (c *copyBuf) tuple(n int) { c.b = binary.BigEndian.AppendUint16(c.b, uint16(n)) }

func (c *copyBuf) null() { c.b = binary.BigEndian.AppendUint32(c.b, math.MaxUint32) }

func (c *copyBuf) text(s string) {
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(s)))
	c.b = append(c.b, s...)
}

func (c *copyBuf) optText(s *string) {
	if s == nil {
		c.null()
		return
	}
	c.text(*s)
}

// timestamptz encodes t as pgx does: microseconds since 2000-01-01 UTC,
// the nanoseconds truncated.
func (c *copyBuf) timestamptz(t time.Time) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(t.Unix()*1_000_000+int64(t.Nanosecond())/1000-pgEpochMicros))
}

func (c *copyBuf) float8(f float64) {
	c.b = binary.BigEndian.AppendUint32(c.b, 8)
	c.b = binary.BigEndian.AppendUint64(c.b, math.Float64bits(f))
}

func (c *copyBuf) optFloat8(f *float64) {
	if f == nil {
		c.null()
		return
	}
	c.float8(*f)
}

func (c *copyBuf) int4(v int32) {
	c.b = binary.BigEndian.AppendUint32(c.b, 4)
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(v))
}

func (c *copyBuf) optInt4(v *int32) {
	if v == nil {
		c.null()
		return
	}
	c.int4(*v)
}

func (c *copyBuf) bool(v bool) {
	c.b = binary.BigEndian.AppendUint32(c.b, 1)
	if v {
		c.b = append(c.b, 1)
	} else {
		c.b = append(c.b, 0)
	}
}

// attrs encodes attrs as jsonb (version 1, then the JSON text), NULL when
// empty, as attrsValue gives it to pgx.
func (c *copyBuf) attrs(m map[string]string) error {
	if len(m) == 0 {
		c.null()
		return nil
	}
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.b = binary.BigEndian.AppendUint32(c.b, uint32(len(js)+1))
	c.b = append(c.b, 1)
	c.b = append(c.b, js...)
	return nil
}

// readingCopy encodes a sensor_readings row in readingCols order.
func readingCopy(c *copyBuf, r *schemas.SensorReading) error {
	c.timestamptz(r.TS)
	c.text(r.Tenant)
	c.text(r.DeviceID)
	c.text(r.Metric)
	c.float8(r.Value)
	c.optText(r.Unit)
	c.timestamptz(r.IngestedAt)
	c.text(r.Source)
	c.text(r.EventID)
	c.bool(r.Replayed)
	return c.attrs(r.Attrs)
}

// fixCopy encodes a gps_fixes row in fixCols order.
func fixCopy(c *copyBuf, r *schemas.GPSFix) error {
	c.timestamptz(r.TS)
	c.text(r.Tenant)
	c.text(r.DeviceID)
	c.float8(r.Lat)
	c.float8(r.Lon)
	c.optFloat8(r.Alt)
	c.optFloat8(r.HDOP)
	c.optFloat8(r.Speed)
	c.optInt4(r.Satellites)
	c.timestamptz(r.IngestedAt)
	c.text(r.Source)
	c.text(r.EventID)
	c.bool(r.Replayed)
	return c.attrs(r.Attrs)
}

// copyInto copies n rows into table: the j-th is the part's row index(j),
// followed, when ord is set (the staging table), by that index as ord.
// Tables with a binary encoder are sent as one binary COPY stream, the
// others through pgx's CopyFrom.
func (p *part[T, K]) copyInto(ctx context.Context, tx pgx.Tx, table string, cols []string, n int, index func(int) int, ord bool) error {
	if p.def.copy == nil {
		row := func(j int) ([]any, error) {
			i := index(j)
			if ord {
				return append(p.def.row(&p.rows[i]), int32(i)), nil
			}
			return p.def.row(&p.rows[i]), nil
		}
		if ord {
			cols = append(slices.Clip(cols), "ord")
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, row))
		return err
	}
	c := copyBufs.Get().(*copyBuf)
	defer copyBufs.Put(c)
	c.reset()
	r := &copyReader[T]{c: c, n: n, fields: len(cols), index: index, ord: ord, rows: p.rows, enc: p.def.copy}
	if ord {
		r.fields++
	}
	var sql strings.Builder
	sql.WriteString("COPY ")
	sql.WriteString(pgx.Identifier{table}.Sanitize())
	sql.WriteString(" (")
	for k, col := range cols {
		if k > 0 {
			sql.WriteString(", ")
		}
		sql.WriteString(pgx.Identifier{col}.Sanitize())
	}
	if ord {
		sql.WriteString(`, "ord"`)
	}
	sql.WriteString(") FROM STDIN (FORMAT binary)")
	_, err := tx.Conn().PgConn().CopyFrom(ctx, r, sql.String())
	return err
}

// copyReader is a binary COPY stream that encodes its rows as it is read
// (pgconn reads 64 KiB at a time), so the server works on the first rows
// while the rest are encoded.
type copyReader[T any] struct {
	c       *copyBuf
	off     int // bytes of c.b read already
	next, n int // rows encoded, rows in all
	fields  int
	index   func(int) int // row of the stream → index in rows
	ord     bool          // append the index as ord
	rows    []T
	enc     func(*copyBuf, *T) error
	done    bool // the trailer is in c.b
}

func (r *copyReader[T]) Read(p []byte) (int, error) {
	if r.off > 0 {
		r.c.b = append(r.c.b[:0], r.c.b[r.off:]...)
		r.off = 0
	}
	for len(r.c.b) < len(p) && !r.done {
		if r.next == r.n {
			r.c.end()
			r.done = true
			break
		}
		i := r.index(r.next)
		r.next++
		r.c.tuple(r.fields)
		if err := r.enc(r.c, &r.rows[i]); err != nil {
			return 0, err
		}
		if r.ord {
			r.c.int4(int32(i))
		}
	}
	k := copy(p, r.c.b)
	r.off = k
	if r.done && k == len(r.c.b) {
		return k, io.EOF
	}
	return k, nil
}
