package schemas

import (
	"testing"

	"github.com/drover-iot/drover/topics"
)

func benchReading() *SensorReading {
	return &SensorReading{
		EventID: "01HZX3Y7Q2W8E5R6T9U0I1O2P3", Tenant: "farm1", DeviceID: "cow-0007",
		TS: at(1_700_000_000_123), IngestedAt: at(1_700_000_000_456), Metric: "temperature",
		Value: 38.6, Unit: ptr("Cel"), Source: "sensor", Attrs: map[string]string{"fw": "1.2.3"},
	}
}

func BenchmarkEncode(b *testing.B) {
	_, client := newRegistry(b)
	ctx := testCtx(b)
	s := newSerde(b, client, AutoRegister(true))
	in := benchReading()
	buf, err := s.Encode(ctx, topics.RawSensor, in)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Encode(ctx, topics.RawSensor, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendEncode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if buf, err = s.AppendEncode(ctx, buf[:0], topics.RawSensor, in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var buf []byte
			for pb.Next() {
				var err error
				if buf, err = s.AppendEncode(ctx, buf[:0], topics.RawSensor, in); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkDecode(b *testing.B) {
	_, client := newRegistry(b)
	ctx := testCtx(b)
	s := newSerde(b, client, AutoRegister(true))
	buf, err := s.Encode(ctx, topics.RawSensor, benchReading())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out SensorReading
			if _, err := s.Decode(ctx, buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeAny", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.DecodeAny(ctx, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
