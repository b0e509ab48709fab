package groupkit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"
)

func TestMemStorage(t *testing.T) {
	st, err := MemoryBuilder()("alerts-table", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"c", "a", "d", "b"} {
		if err := st.Set(k, []byte("v"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Set("x", nil); err == nil {
		t.Error("stored a nil value")
	}
	if off, _ := st.GetOffset(-2); off != -2 {
		t.Errorf("offset before SetOffset = %d, want the default", off)
	}
	_ = st.SetOffset(41)
	if off, _ := st.GetOffset(-2); off != 41 {
		t.Errorf("offset = %d", off)
	}
	_ = st.Delete("d")
	if ok, _ := st.Has("d"); ok {
		t.Error("deleted key still there")
	}
	keys := func(start, limit []byte) string {
		it, err := st.IteratorWithRange(start, limit)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Release()
		var out []string
		for it.Next() {
			v, _ := it.Value()
			out = append(out, fmt.Sprintf("%s=%s", it.Key(), v))
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name         string
		start, limit []byte
		want         string
	}{
		{"all, in key order", nil, nil, "a=va,b=vb,c=vc"},
		{"from b", []byte("b"), nil, "b=vb,c=vc"},
		{"before c", nil, []byte("c"), "a=va,b=vb"},
	}
	for _, tc := range tests {
		if got := keys(tc.start, tc.limit); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	it, _ := st.Iterator()
	_ = st.Set("e", []byte("ve")) // the iterator is a snapshot
	if !it.Seek([]byte("bb")) || string(it.Key()) != "c" || it.Next() {
		t.Errorf("seek: at %q", it.Key())
	}
}

// BenchmarkMemStorageInsert: inserting the devices of one table partition
// (25000 keys = 100k devices over 4 partitions; fixed, as goka's store is
// quadratic) into memStorage, against goka's storage.NewMemory in the same
// run.
func BenchmarkMemStorageInsert(b *testing.B) {
	const n = 25_000
	fill := func(st storage.Storage) time.Duration {
		start := time.Now()
		for k := range n {
			_ = st.Set(fmt.Sprintf("device-%06d", (k*7919)%n), []byte("x"))
		}
		return time.Since(start)
	}
	for i := 0; i < b.N; i++ {
		ours, _ := MemoryBuilder()("t", 0)
		mine := fill(ours)
		base := fill(storage.NewMemory())
		b.ReportMetric(mine.Seconds(), "memstore-s")
		b.ReportMetric(base.Seconds(), "goka-memory-s")
		b.ReportMetric(base.Seconds()/mine.Seconds(), "speedup")
		b.Logf("insert %d keys: memStorage %s, goka storage.NewMemory %s (%.0fx)", n, mine.Round(time.Microsecond), base.Round(time.Microsecond), base.Seconds()/mine.Seconds())
	}
}
