package schemas

import (
	"errors"
	"testing"
	"time"

	"github.com/drover-iot/drover/topics"
)

// TestDecodeTruncatedBody: every truncation of a record body is an error,
// never a record with zero values (hamba/avro's Unmarshal alone treats
// running out of input as success).
func TestDecodeTruncatedBody(t *testing.T) {
	_, client := newRegistry(t)
	s, err := NewSerde(client, AutoRegister(true))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	unit := "Cel"
	b, err := s.Encode(ctx, topics.RawSensor, SensorReading{EventID: "e-1", Tenant: "farm", DeviceID: "cow-1", TS: time.UnixMilli(1_700_000_000_000),
		IngestedAt: time.UnixMilli(1_700_000_000_001), Metric: "temperature", Value: 38.5, Unit: &unit, Source: "sensor", Attrs: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	var full SensorReading
	if _, err := s.Decode(ctx, b, &full); err != nil {
		t.Fatalf("full record: %v", err)
	}
	for n := HeaderSize; n < len(b); n++ {
		var v SensorReading
		if _, err := s.Decode(ctx, b[:n], &v); err == nil {
			t.Errorf("body truncated to %d of %d bytes decoded without error: %+v", n-HeaderSize, len(b)-HeaderSize, v)
		} else {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("truncated to %d: error %v is not a *DecodeError", n, err)
			}
		}
		if _, _, err := s.DecodeAny(ctx, b[:n]); err == nil {
			t.Errorf("DecodeAny: body truncated to %d bytes decoded without error", n-HeaderSize)
		}
	}
}
