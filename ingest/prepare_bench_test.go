package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/ingest/sparkplug"
	"github.com/drover-iot/drover/ingest/sparkplug/spb"
	"github.com/drover-iot/drover/registry"
)

// BenchmarkCorePrepare measures the ingest path every door shares, short
// of producing (Core.Prepare: registry check, decoding, validation, Avro
// encoding), per payload family, so each door's CPU per message can be
// split into transport and core: a JSON reading (MQTT device topics, HTTP,
// CoAP) and a Sparkplug B NDATA with 10 metrics resolved through its
// NBIRTH's aliases (the Sparkplug door, over the MQTT bridge). ns/op is
// one message on one core.
//
//	go test -run '^$' -bench CorePrepare -benchtime 1s ./ingest/
func BenchmarkCorePrepare(b *testing.B) {
	e := ingesttest.New(b)
	e.Devices(b)
	const edge = "edge-1"
	e.AddDevice(b, registry.NewDevice{Tenant: ingesttest.Tenant, ID: edge})
	table := routes.Default()
	ctx := context.Background()
	prepare := func(b *testing.B, topic string, payload []byte) {
		b.Helper()
		m, err := table.Route(topic, "")
		if err != nil {
			b.Fatal(err)
		}
		r := ingest.Routed{Door: "bench", Topic: topic, Match: m, Payload: payload, ReceivedAt: time.Now()}
		if _, err := e.Core.Prepare(ctx, &r); err != nil {
			b.Fatalf("%s: %v", topic, err)
		}
	}
	b.Run("json", func(b *testing.B) {
		topic := "devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor"
		now := time.Now().Add(-time.Minute).UnixMilli()
		payloads := make([][]byte, 1024)
		for i := range payloads {
			payloads[i] = fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%d.5,"unit":"Cel"}`, now+int64(i), 36+i%5)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			prepare(b, topic, payloads[i%len(payloads)])
		}
	})
	b.Run("sparkplug", func(b *testing.B) {
		topic := func(t sparkplug.MessageType) string {
			return sparkplug.Topic{Group: ingesttest.Tenant, Type: t, Edge: edge}.String()
		}
		metrics := func(birth bool, v float64) []*spb.Payload_Metric {
			var ms []*spb.Payload_Metric
			if birth {
				ms = append(ms, &spb.Payload_Metric{Name: proto.String(sparkplug.BdSeqMetric), Datatype: proto.Uint32(sparkplug.TypeUInt64),
					Value: &spb.Payload_Metric_LongValue{LongValue: 0}})
			}
			for k := range 10 {
				m := &spb.Payload_Metric{Alias: proto.Uint64(uint64(k + 1)), Value: &spb.Payload_Metric_DoubleValue{DoubleValue: v + float64(k)}}
				if birth {
					m.Name, m.Datatype = proto.String(fmt.Sprintf("sensor.%d", k)), proto.Uint32(sparkplug.TypeDouble)
				}
				ms = append(ms, m)
			}
			return ms
		}
		now := time.Now().Add(-time.Minute)
		payload := func(seq int, birth bool) []byte {
			p, err := proto.Marshal(&spb.Payload{Timestamp: proto.Uint64(uint64(now.Add(time.Duration(seq) * time.Millisecond).UnixMilli())),
				Seq: proto.Uint64(uint64(seq % 256)), Metrics: metrics(birth, float64(seq%100))})
			if err != nil {
				b.Fatal(err)
			}
			return p
		}
		prepare(b, topic(sparkplug.NBIRTH), payload(0, true))
		datas := make([][]byte, 1024) // 1024 = 4 × 256: the seq runs on without gaps
		for i := range datas {
			datas[i] = payload(i+1, false)
		}
		ndata := topic(sparkplug.NDATA)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			prepare(b, ndata, datas[i%len(datas)])
		}
	})
}

// BenchmarkCoreIngestBatch measures Core.IngestBatch with 50 JSON readings
// of one device (the HTTP door's NDJSON batch) on the embedded Kafka,
// acknowledgements awaited: one op is one batch; allocs/op and
// cpu-ns/reading count the whole process (the producer's and Kafka's
// work included), ns/reading is wall time (one batch at a time).
//
//	go test -run '^$' -bench CoreIngestBatch -benchmem ./ingest/
func BenchmarkCoreIngestBatch(b *testing.B) {
	e := ingesttest.New(b)
	e.Devices(b)
	ctx := context.Background()
	now := time.Now().Add(-time.Minute).UnixMilli()
	ms := make([]ingest.Message, 50)
	at := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := ingesttest.CPUTime(b)
	for i := 0; i < b.N; i++ {
		for j := range ms {
			ms[j] = ingest.Message{Door: "bench", Tenant: ingesttest.Tenant, Device: ingesttest.Registered, Channel: "sensor",
				Payload: fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%d.5}`, now+int64(i*len(ms)+j)%50000, j), ReceivedAt: at}
		}
		for j, err := range e.Core.IngestBatch(ctx, ms) {
			if err != nil {
				b.Fatalf("item %d: %v", j, err)
			}
		}
	}
	cpu := ingesttest.CPUTime(b) - cpu0
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/reading")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(ms)), "cpu-ns/reading")
}
