package schemas

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// newRegistry starts an in-memory schema registry (the real REST API) and
// returns it with a client.
func newRegistry(t testing.TB) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	client, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, client
}

func newSerde(t testing.TB, client *sr.Client, opts ...Option) *Serde {
	t.Helper()
	s, err := NewSerde(client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// at returns a UTC time with millisecond precision, as decoded values are.
func at(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func ptr[T any](v T) *T { return &v }

// v1SensorReading is an older version of SensorReading: no unit, replayed
// or attrs, and an extra field the current schema dropped.
const v1SensorReading = `{
  "type": "record", "name": "SensorReading", "namespace": "io.drover",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "tenant", "type": "string"},
    {"name": "device_id", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ingested_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "metric", "type": "string"},
    {"name": "value", "type": "float"},
    {"name": "source", "type": "string"},
    {"name": "quality", "type": "int"}
  ]
}`

type v1Reading struct {
	EventID    string    `avro:"event_id"`
	Tenant     string    `avro:"tenant"`
	DeviceID   string    `avro:"device_id"`
	TS         time.Time `avro:"ts"`
	IngestedAt time.Time `avro:"ingested_at"`
	Metric     string    `avro:"metric"`
	Value      float32   `avro:"value"`
	Source     string    `avro:"source"`
	Quality    int32     `avro:"quality"`
}
