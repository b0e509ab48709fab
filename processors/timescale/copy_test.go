package timescale

import (
	"bytes"
	"context"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/schemas"
)

// TestBinaryCopyMatchesPgx copies the same rows into two copies of each
// table with a binary encoder, once through pgx's CopyFrom (the row
// functions) and once through the sink's own encoder, and compares what
// the tables hold, column by column as text.
func TestBinaryCopyMatchesPgx(t *testing.T) {
	url, _ := migratedDB(t)
	c := connect(t, url)
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	odd := []time.Time{base, base.Add(999 * time.Nanosecond), time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC), base.In(time.FixedZone("x", -5*3600-1800))}
	var readings []schemas.SensorReading
	var fixes []schemas.GPSFix
	values := []float64{0, -1.5, math.Pi, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN(), math.Copysign(0, -1)}
	attrs := []map[string]string{nil, {}, {"k": "v"}, {"quote\"": "back\\slash", "ünï": "çødé 🐄", "nl": "a\nb\tc", "html": "<&>"}}
	units := []*string{nil, ptr(""), ptr("Cel"), ptr("µS/cm")}
	const n = 3000 // over 64 KiB: several reads of the stream
	for i := range n {
		ts := odd[i%len(odd)].Add(time.Duration(i) * time.Second)
		readings = append(readings, schemas.SensorReading{EventID: fmtID("e", i), Tenant: "farm", DeviceID: "dev-" + strings.Repeat("x", i%3),
			TS: ts, IngestedAt: ts.Add(time.Millisecond), Metric: "m" + fmtID(i%7), Value: values[i%len(values)], Unit: units[i%len(units)],
			Source: []string{"", "sensor", "replay"}[i%3], Replayed: i%2 == 0, Attrs: attrs[i%len(attrs)]})
		f := schemas.GPSFix{EventID: fmtID("g", i), Tenant: "farm", DeviceID: "cow", TS: ts, IngestedAt: ts, Lat: -90 + float64(i), Lon: 180 - float64(i)*1.25,
			Source: "gps", Replayed: i%3 == 0, Attrs: attrs[(i+1)%len(attrs)]}
		if i%2 == 1 {
			f.Alt, f.HDOP, f.Speed, f.Satellites = ptr(values[i%len(values)]), ptr(0.9), ptr(-0.0), ptr(int32(i-20))
		}
		fixes = append(fixes, f)
	}
	check := func(table string, cols []string, viaPgx, viaOwn func(tx pgx.Tx, name string) error) {
		t.Helper()
		for _, name := range []string{"a_" + table, "b_" + table} {
			if _, err := c.Exec(ctx, "CREATE TABLE "+name+" (LIKE "+table+" INCLUDING DEFAULTS, ord integer)"); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []func() error{
			func() error { return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return viaPgx(tx, "a_"+table) }) },
			func() error { return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error { return viaOwn(tx, "b_"+table) }) },
		} {
			if err := f(); err != nil {
				t.Fatalf("%s: %v", table, err)
			}
		}
		dump := func(name string) string {
			var s string
			q := "SELECT string_agg(x::text, E'\\n' ORDER BY x.event_id) FROM (SELECT " + strings.Join(cols, ", ") + ", ord FROM " + name + ") x"
			if err := c.QueryRow(ctx, q).Scan(&s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		a, b := dump("a_"+table), dump("b_"+table)
		if a != b || strings.Count(a, "\n") != n-1 {
			t.Errorf("%s: the binary encoder stored\n%s\npgx stored\n%s", table, b, a)
		}
	}
	pr := &part[schemas.SensorReading, readingKey]{def: &readingTable, rows: readings}
	check(TableSensorReadings, readingCols, func(tx pgx.Tx, name string) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{name}, append(readingCols[:len(readingCols):len(readingCols)], "ord"),
			pgx.CopyFromSlice(len(readings), func(i int) ([]any, error) { return append(readingRow(&readings[i]), int32(i)), nil }))
		return err
	}, func(tx pgx.Tx, name string) error {
		_, err := pr.copyStaged(ctx, tx, name, readingCols, true)
		return err
	})
	pf := &part[schemas.GPSFix, fixKey]{def: &fixTable, rows: fixes}
	check(TableGPSFixes, fixCols, func(tx pgx.Tx, name string) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{name}, append(fixCols[:len(fixCols):len(fixCols)], "ord"),
			pgx.CopyFromSlice(len(fixes), func(i int) ([]any, error) { return append(fixRow(&fixes[i]), int32(i)), nil }))
		return err
	}, func(tx pgx.Tx, name string) error {
		_, err := pf.copyStaged(ctx, tx, name, fixCols, true)
		return err
	})
}

// TestCopyReaderChunks reads the stream with buffers of several sizes and
// compares it with the rows encoded in one go.
func TestCopyReaderChunks(t *testing.T) {
	rows := benchReadings(2000)
	rows[3].Attrs = map[string]string{"a": "b"}
	var want copyBuf
	want.reset()
	for i := range rows {
		want.tuple(len(readingCols) + 1)
		if err := readingCopy(&want, &rows[i]); err != nil {
			t.Fatal(err)
		}
		want.int4(int32(i))
	}
	want.end()
	for _, size := range []int{1, 7, 100, 4096, 65531, 1 << 20} {
		r := &copyReader[schemas.SensorReading]{c: &copyBuf{}, n: len(rows), fields: len(readingCols) + 1, index: func(j int) int { return j },
			ord: true, rows: rows, enc: readingCopy}
		r.c.reset()
		var got []byte
		buf := make([]byte, size)
		for {
			k, err := r.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				t.Fatalf("read size %d: no progress", size)
			}
		}
		if !bytes.Equal(got, want.b) {
			t.Errorf("read size %d: %d bytes differ from the %d encoded in one go", size, len(got), len(want.b))
		}
	}
}
