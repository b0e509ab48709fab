package timescale

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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

// copyBufs recycles copy buffers (a batch of 5000 readings is about 700 KB).
var copyBufs = sync.Pool{New: func() any { return &copyBuf{} }}

// maxPooledCopyBuf bounds the buffers kept for reuse (a batch of 5000
// readings takes under 1 MiB; --batch-size allows a million).
const maxPooledCopyBuf = 16 << 20

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
	defer func() {
		if cap(c.b) <= maxPooledCopyBuf {
			copyBufs.Put(c)
		}
	}()
	c.reset()
	fields := len(cols)
	if ord {
		fields++
	}
	for j := range n {
		i := index(j)
		c.tuple(fields)
		if err := p.def.copy(c, &p.rows[i]); err != nil {
			return err
		}
		if ord {
			c.int4(int32(i))
		}
	}
	c.end()
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
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.b), sql.String())
	return err
}
