package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// benchClients is the number of concurrent HTTP clients.
const benchClients = 16

// benchBatch is the number of readings per request of the batched form.
const benchBatch = 50

// BenchmarkHTTPIngest measures the HTTP door (`drover http`: auth, the
// ingest core's decode, validate, route, Avro, produce, 202 after Kafka's
// ack) against a bare net/http handler that produces the same Avro bytes
// with the same Kafka client and answers 202 after the ack, in the same
// run, from 16 concurrent Go HTTP clients over TCP on the embedded Kafka
// (kfake, in the process). single: one reading per request; batched: 50
// readings per NDJSON request. It reports both rates, their ratio (target
// ≥ 0.8) and the process CPU per accepted message of each (the in-process
// Kafka's share included in both).
//
//	go test -run '^$' -bench HTTPIngest -benchtime 20000x ./doors/httpapi/  # as bench/report runs it
func BenchmarkHTTPIngest(b *testing.B) {
	for _, batch := range []int{1, benchBatch} {
		name := "single"
		if batch > 1 {
			name = "batched"
		}
		b.Run(name, func(b *testing.B) { benchHTTP(b, batch) })
	}
}

func benchHTTP(b *testing.B, batch int) {
	e := ingesttest.New(b)
	secret := e.Devices(b)[ingesttest.Registered]
	now := time.Now()
	reading := func(i int) []byte {
		return fmt.Appendf(nil, `{"ts":%d,"metric":"bench.http","value":%d}`, now.Add(-time.Minute).UnixMilli()+int64(i%50000), i)
	}
	// The bare handler's value: the Avro record the door makes of a reading.
	value, err := e.Serde.Encode(context.Background(), topics.RawSensor, &schemas.SensorReading{
		EventID: "bench", Tenant: ingesttest.Tenant, DeviceID: ingesttest.Registered, TS: now, IngestedAt: now,
		Metric: "bench.http", Value: 1, Source: "sensor", Attrs: map[string]string{},
	})
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(identity.Key(ingesttest.Tenant, ingesttest.Registered))
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || len(body) == 0 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		n := bytes.Count(body, []byte("\n")) + 1
		if batch == 1 {
			n = 1
		}
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topics.RawSensor, Key: key, Value: value,
				Headers: []kgo.RecordHeader{{Key: ingest.HeaderTenant, Value: []byte(ingesttest.Tenant)}}}
		}
		if err := e.Producer.ProduceSync(r.Context(), recs...).FirstErr(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":202}`))
	})
	door, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0", MaxInFlight: 4 * benchClients}, e.View, e.Core)
	if err != nil {
		b.Fatal(err)
	}
	doorURL := serveBench(b, door.Handler()) + "/v1/devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor"
	bareURL := serveBench(b, bare) + "/v1/devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor"
	requests := max(1, b.N/batch)
	body := func(i int) []byte {
		if batch == 1 {
			return reading(i)
		}
		var buf bytes.Buffer
		for j := range batch {
			if j > 0 {
				buf.WriteByte('\n')
			}
			buf.Write(reading(i*batch + j))
		}
		return buf.Bytes()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}, Timeout: time.Minute}
	run := func(url string, requests int) (time.Duration, time.Duration) {
		post := func(i int) error {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body(i)))
			req.Header.Set("Authorization", "Bearer "+secret)
			if batch > 1 {
				req.Header.Set("Content-Type", httpapi.NDJSON)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			var a httpapi.Answer
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if err == nil && !accepted(a, batch) {
				err = fmt.Errorf("%s: %d %+v", url, resp.StatusCode, a)
			}
			return err
		}
		return ingesttest.Load(b, benchClients, 0, requests, func() (func(int) error, func(), error) { return post, nil, nil })
	}
	// Both warmed up (connections, the producer's batches), then each
	// measured once, in the same run, on the same Kafka client.
	warm := max(1, requests/10)
	run(bareURL, warm)
	run(doorURL, warm)
	b.ResetTimer()
	doorWall, doorCPU := run(doorURL, requests)
	bareWall, bareCPU := run(bareURL, requests)
	b.StopTimer()
	msgs := float64(requests * batch)
	doorRate, bareRate := msgs/doorWall.Seconds(), msgs/bareWall.Seconds()
	b.ReportMetric(doorRate, "http-msg/s")
	b.ReportMetric(bareRate, "bare-msg/s")
	b.ReportMetric(doorRate/bareRate, "ratio")
	b.ReportMetric(float64(doorCPU.Microseconds())/msgs, "http-cpu-us/msg")
	b.ReportMetric(float64(bareCPU.Microseconds())/msgs, "bare-cpu-us/msg")
	b.ReportMetric(0, "ns/op")
}

// accepted reports whether every reading of a request was accepted: the
// door answers a batch per item, the bare handler with one 202.
func accepted(a httpapi.Answer, batch int) bool {
	if batch == 1 || len(a.Items) == 0 {
		return a.Status == http.StatusAccepted && len(a.Items) == 0
	}
	if len(a.Items) != batch {
		return false
	}
	for _, it := range a.Items {
		if it.Status != http.StatusAccepted {
			return false
		}
	}
	return true
}

// serveBench serves h on a free loopback port until the benchmark ends.
func serveBench(b *testing.B, h http.Handler) string {
	b.Helper()
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: h}
	l, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String()
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
