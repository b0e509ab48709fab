package features

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/processors/groupkit"
)

func sampleState() *deviceState {
	return &deviceState{
		Tenant: "farm", Watermark: 1_700_000_000_123, LastWall: -5,
		Windows: []*window{
			{Metric: "temperature", Size: 60000, Start: 1_700_000_000_000, Count: 3, Min: -1.5, Max: 40, Mean: 12.25, M2: 3.5, First: 1, FirstTS: 7, Last: 2, LastTS: 9, Late: 2, Emitted: true},
			{Metric: MotionMetric, Size: 3_600_000, Start: 0, Count: 1, Motion: true, Dist: 111.2, MaxSpeed: 1.1, Moving: 100, Stationary: 20.5},
		},
		Fix:        &fix{TS: 42, Lat: 47.1, Lon: -8.2},
		SensorNext: 123456789, GPSNext: 3,
	}
}

// TestStateCodecIsAvro checks the hand-written codec against hamba/avro
// with the documented schema: each decodes what the other encodes (hamba
// writes arrays as sized blocks, the codec as one counted block; both are
// Avro).
func TestStateCodecIsAvro(t *testing.T) {
	ref := groupkit.MustStateCodec[deviceState](stateSchemaV1)
	for _, d := range []*deviceState{sampleState(), {}, {Tenant: "x", Fix: &fix{}}} {
		mine, err := stateCodec.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := ref.Encode(d)
		if err != nil {
			t.Fatal(err)
		}
		back, err := stateCodec.Decode(mine)
		if err != nil {
			t.Fatal(err)
		}
		viaRef, err := ref.Decode(mine)
		if err != nil {
			t.Fatalf("hamba/avro cannot read the codec's bytes: %v", err)
		}
		fromRef, err := stateCodec.Decode(theirs)
		if err != nil {
			t.Fatalf("the codec cannot read hamba/avro's bytes: %v", err)
		}
		if n := normalize(back.(*deviceState)); !reflect.DeepEqual(n, normalize(viaRef.(*deviceState))) || !reflect.DeepEqual(n, normalize(fromRef.(*deviceState))) {
			t.Fatalf("decoded %+v, hamba/avro %+v, from hamba's bytes %+v", back, viaRef, fromRef)
		}
		if !reflect.DeepEqual(normalize(back.(*deviceState)), normalize(d)) {
			t.Fatalf("round trip %+v, want %+v", back, d)
		}
	}
}

func TestStateCodecBadValues(t *testing.T) {
	good, _ := stateCodec.Encode(sampleState())
	tests := []struct {
		name string
		in   []byte
		err  string
	}{
		{name: "empty", in: nil, err: "empty value"},
		{name: "unknown version", in: []byte{9, 0}, err: "unknown version 9"},
		{name: "truncated", in: good[:len(good)-3], err: "truncated"},
		{name: "trailing bytes", in: append(append([]byte{}, good...), 0), err: "trailing bytes"},
		{name: "huge string", in: []byte{1, 0xfe, 0xff, 0x03}, err: "bad string length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stateCodec.Decode(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
	if _, err := stateCodec.Encode("nope"); err == nil {
		t.Fatal("encoding a string: want an error")
	}
}

// BenchmarkStateCodec encodes and decodes a two-window device state 100k
// times (DROVER_BENCH_N scales it) with the hand-written codec and, in the
// same run, with hamba/avro, and reports both and the speed-up.
func BenchmarkStateCodec(b *testing.B) {
	n := benchN(b) / 10
	d := sampleState()
	ref := groupkit.MustStateCodec[deviceState](stateSchemaV1)
	run := func(enc func(interface{}) ([]byte, error), dec func([]byte) (interface{}, error)) time.Duration {
		start := time.Now()
		for i := 0; i < n; i++ {
			v, err := enc(d)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := dec(v); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start) / time.Duration(n)
	}
	for i := 0; i < b.N; i++ {
		mine := run(stateCodec.Encode, stateCodec.Decode)
		theirs := run(ref.Encode, ref.Decode)
		b.ReportMetric(float64(mine.Nanoseconds()), "hand-ns/roundtrip")
		b.ReportMetric(float64(theirs.Nanoseconds()), "hamba-ns/roundtrip")
		b.ReportMetric(float64(theirs)/float64(mine), "speedup")
		fmt.Printf("state codec, %d round trips: hand-written %s, hamba/avro %s, speed-up %.1fx\n", n, mine, theirs, float64(theirs)/float64(mine))
	}
}

func normalize(d *deviceState) *deviceState {
	c := *d
	if len(c.Windows) == 0 {
		c.Windows = nil
	}
	return &c
}
