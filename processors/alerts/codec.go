package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// codecTimeout bounds a registry round trip inside a codec (goka codecs
// take no context; after the first record of a schema the serde answers
// from its cache).
const codecTimeout = 30 * time.Second

// inRecord is what the input codecs decode to: the record, or why it could
// not be decoded (with the original bytes, for the dead letter). Decoding
// never fails in goka's eyes, so one bad record does not stop the group.
type inRecord struct {
	Sensor *schemas.SensorReading
	GPS    *schemas.GPSFix
	Raw    []byte
	Err    error
}

// permanent reports whether a decode error will fail again on retry (bad
// bytes, unknown schema) as opposed to a registry outage.
func permanent(err error) bool {
	var unknown *schemas.UnknownSchemaError
	var dec *schemas.DecodeError
	return errors.Is(err, schemas.ErrNotWireFormat) || errors.As(err, &unknown) || errors.As(err, &dec)
}

// inputCodec decodes raw.sensor or raw.gps values with the shared serde.
type inputCodec struct {
	serde *schemas.Serde
	topic string
}

func (c inputCodec) Encode(v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), codecTimeout)
	defer cancel()
	switch r := v.(type) {
	case *inRecord:
		if r.Raw != nil {
			return r.Raw, nil
		}
		if r.Sensor != nil {
			return c.serde.Encode(ctx, c.topic, r.Sensor)
		}
		return c.serde.Encode(ctx, c.topic, r.GPS)
	case *schemas.SensorReading, schemas.SensorReading, *schemas.GPSFix, schemas.GPSFix:
		return c.serde.Encode(ctx, c.topic, v)
	}
	return nil, fmt.Errorf("%s codec: cannot encode %T", c.topic, v)
}

func (c inputCodec) Decode(b []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), codecTimeout)
	defer cancel()
	in := &inRecord{Raw: b}
	if c.topic == topics.RawGPS {
		var fix schemas.GPSFix
		if _, in.Err = c.serde.Decode(ctx, b, &fix); in.Err == nil {
			in.GPS = &fix
		}
	} else {
		var r schemas.SensorReading
		if _, in.Err = c.serde.Decode(ctx, b, &r); in.Err == nil {
			in.Sensor = &r
		}
	}
	return in, nil
}

// serdeCodec encodes and decodes one output record type with the serde.
type serdeCodec[T any] struct {
	serde *schemas.Serde
	topic string
}

func (c serdeCodec[T]) Encode(v any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), codecTimeout)
	defer cancel()
	switch v.(type) {
	case *T, T:
		return c.serde.Encode(ctx, c.topic, v)
	}
	return nil, fmt.Errorf("%s codec: cannot encode %T", c.topic, v)
}

func (c serdeCodec[T]) Decode(b []byte) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), codecTimeout)
	defer cancel()
	v := new(T)
	if _, err := c.serde.Decode(ctx, b, v); err != nil {
		return nil, err
	}
	return v, nil
}

// tableSchema is the private Avro schema of the group table's values
// (deviceState). The table belongs to the group, so the schema is not in
// the registry; values carry a one-byte format version instead.
const tableSchema = `{
  "type": "record", "name": "AlertsDeviceState", "namespace": "io.drover.internal",
  "fields": [
    {"name": "tenant", "type": "string"},
    {"name": "device_id", "type": "string"},
    {"name": "last_heard", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "last_ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "samples", "type": {"type": "map", "values": {"type": "record", "name": "Sample", "fields": [
      {"name": "v", "type": "double"},
      {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}}},
    {"name": "pos", "type": ["null", {"type": "record", "name": "Position", "fields": [
      {"name": "lat", "type": "double"},
      {"name": "lon", "type": "double"},
      {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}]},
    {"name": "rules", "type": {"type": "map", "values": {"type": "record", "name": "RuleState", "fields": [
      {"name": "pending_since", "type": {"type": "long", "logicalType": "timestamp-millis"}},
      {"name": "active", "type": ["null", {"type": "record", "name": "ActiveAlert", "fields": [
        {"name": "id", "type": "string"},
        {"name": "kind", "type": "string"},
        {"name": "severity", "type": "string"},
        {"name": "fired_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "value", "type": ["null", "double"]},
        {"name": "threshold", "type": ["null", "double"]}]}]}]}}},
    {"name": "offsets", "type": {"type": "map", "values": "long"}},
    {"name": "outbox", "type": "bytes"}
  ]
}`

// tableFormat is the first byte of every table value: the version of
// tableSchema it was written with.
const tableFormat = 1

var (
	tableAvro    = avro.MustParse(tableSchema)
	tableAvroAPI = avro.Config{TagKey: "avro"}.Freeze()
)

// tableCodec stores a device's state in the group table: a format byte and
// the Avro body (compact and about three times faster than JSON, which
// matters: every record reads and writes its device's state). The group
// wraps it in a groupkit.CachedCodec, which skips the decode of the state
// the group wrote itself one record earlier.
type tableCodec struct{}

func (tableCodec) Encode(v any) ([]byte, error) {
	st, ok := v.(*deviceState)
	if !ok {
		return nil, fmt.Errorf("alerts table codec: cannot encode %T", v)
	}
	st.OutboxJSON = nil
	if st.Outbox != nil {
		b, err := json.Marshal(st.Outbox)
		if err != nil {
			return nil, fmt.Errorf("alerts table codec: outbox: %w", err)
		}
		st.OutboxJSON = b
	}
	body, err := tableAvroAPI.Marshal(tableAvro, st)
	if err != nil {
		return nil, fmt.Errorf("alerts table codec: %w", err)
	}
	// st now equals what the table holds: nothing is left to write. (The
	// group's groupkit.CachedCodec hands this very object back for the
	// next record of the device instead of decoding the bytes, and a fresh
	// decode is not dirty either.)
	st.dirty = false
	return append([]byte{tableFormat}, body...), nil
}

func (tableCodec) Decode(b []byte) (any, error) {
	if len(b) == 0 || b[0] != tableFormat {
		return nil, fmt.Errorf("alerts table codec: unknown value format (first byte %v)", b[:min(len(b), 1)])
	}
	st := new(deviceState)
	if err := tableAvroAPI.Unmarshal(tableAvro, b[1:], st); err != nil {
		return nil, fmt.Errorf("alerts table codec: %w", err)
	}
	if len(st.OutboxJSON) > 0 {
		st.Outbox = new(outbox)
		if err := json.Unmarshal(st.OutboxJSON, st.Outbox); err != nil {
			return nil, fmt.Errorf("alerts table codec: outbox: %w", err)
		}
	}
	st.OutboxJSON = nil
	return st, nil
}

// tick is the loop-topic message asking the device's partition processor
// to check the device's offline rules against the wall clock. At is when
// the sweep sent it (informational: the check uses the clock when it runs).
type tick struct {
	At time.Time `json:"at"`
}

type loopCodec struct{}

func (loopCodec) Encode(v any) ([]byte, error) {
	t, ok := v.(*tick)
	if !ok {
		return nil, fmt.Errorf("alerts loop codec: cannot encode %T", v)
	}
	return json.Marshal(t)
}

func (loopCodec) Decode(b []byte) (any, error) {
	// A malformed loop message still asks for a check: the check is
	// idempotent, and failing here would stop the whole group.
	t := new(tick)
	_ = json.Unmarshal(b, t)
	return t, nil
}
