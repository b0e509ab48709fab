package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/ingest/routes"
)

// benchClients is the number of concurrent HTTP clients.
const benchClients = 16

// benchBatch is the number of readings per request of the batched form.
const benchBatch = 50

// BenchmarkHTTPIngest measures the HTTP door (`drover http`: auth, the
// ingest core's decode, validate, route, Avro, produce, 202 after Kafka's
// ack) against a bare net/http handler that produces the same bytes
// (the core's records of the same readings, made before the timer: key,
// headers and a distinct Avro value per reading) with the same Kafka
// client and answers 202 after the ack, in the same run, from 16
// concurrent Go HTTP clients over TCP on the embedded Kafka (kfake, in the
// process). single: one reading per request; batched: 50 readings per
// NDJSON request. It reports both rates, their ratio (target ≥ 0.8), the
// process CPU per accepted message of each (the in-process Kafka's and
// the clients' shares included in both) and the core's CPU per reading
// alone.
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
	// The bare handler's records: what the door makes of the benchmark's
	// readings (the core's own Prepare, before the timer), so the bare
	// handler produces the same bytes — key, headers, a distinct Avro
	// value per reading (a constant value would compress to nothing) —
	// without doing the door's work. The same table measures, in this
	// run, the core's CPU per reading (core-cpu-us/msg).
	table, coreCPU := prepared(b, e, reading)
	var next atomic.Int64
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
			t := table[next.Add(1)%int64(len(table))]
			recs[i] = &kgo.Record{Topic: t.Topic, Key: t.Key, Value: t.Value, Headers: t.Headers}
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
		// The door answers a batch item by item, the bare handler with
		// one 202: every "status":202 is counted.
		want := 1
		if url == doorURL && batch > 1 {
			want = batch + 1
		}
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
			// The answer is checked by a scan of its bytes, not decoded:
			// the clients share the server's two cores, and decoding the
			// door's per-item answer with encoding/json cost them 0.45 µs
			// per reading, charged to the door.
			a, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != http.StatusAccepted || bytes.Count(a, []byte(`"status":202`)) != want) {
				err = fmt.Errorf("%s: %d %s", url, resp.StatusCode, a)
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
	// The core's work per reading alone (registry check, decode, validate,
	// event id, Avro; one goroutine, garbage collection included), to
	// set beside the door's CPU over the bare handler's: a ratio of 0.8
	// on CPU-bound cores leaves the door a quarter of bare-cpu-us/msg
	// for everything it does on top of the bare handler.
	b.ReportMetric(coreCPU, "core-cpu-us/msg")
	b.ReportMetric(0, "ns/op")
}

// prepared is the core's records of the first len readings (Prepare,
// as the door calls it), one per reading, and the core's CPU per reading
// making them.
func prepared(b *testing.B, e *ingesttest.Env, reading func(int) []byte) ([]*kgo.Record, float64) {
	b.Helper()
	const n = 20000
	m, err := routes.Default().Route("devices/"+ingesttest.Tenant+"/"+ingesttest.Registered+"/sensor", "")
	if err != nil {
		b.Fatal(err)
	}
	table := make([]*kgo.Record, n)
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = reading(i)
	}
	now := time.Now()
	prepare := func(i int) {
		r := ingest.Routed{Door: httpapi.Door, Topic: "devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor",
			Match: m, Payload: payloads[i], ReceivedAt: now}
		p, err := e.Core.Prepare(context.Background(), &r)
		if err != nil || len(p.Records) != 1 {
			b.Fatalf("prepare reading %d: %d records, %v", i, len(p.Records), err)
		}
		table[i] = p.Records[0]
	}
	for i := range table { // the table, and a warm core
		prepare(i)
	}
	const passes = 5
	cpu0 := ingesttest.CPUTime(b)
	for range passes {
		for i := range table {
			prepare(i)
		}
	}
	return table, float64((ingesttest.CPUTime(b) - cpu0).Nanoseconds()) / 1e3 / (passes * n)
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
