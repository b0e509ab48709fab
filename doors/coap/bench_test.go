package coap_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/drover-iot/drover/doors/coap"
	"github.com/drover-iot/drover/ingest/ingesttest"
)

// benchClients is the number of concurrent CoAP clients (one UDP socket
// each).
const benchClients = 16

// BenchmarkCoAPIngest measures the CoAP door (plain CoAP, confirmable
// POST, the ingest core's decode, validate, route, Avro, produce, 2.04 only
// after Kafka's ack) from 16 concurrent go-coap clients over loopback UDP
// on the embedded Kafka (kfake, in the process). It reports the rate and
// the process CPU per accepted message (the in-process Kafka's and the
// clients' share included), to set next to the MQTT bridge's
// (BenchmarkBridgeDrain) and the HTTP door's (BenchmarkHTTPIngest).
//
//	go test -run '^$' -bench CoAPIngest -benchtime 20000x ./doors/coap/
func BenchmarkCoAPIngest(b *testing.B) {
	e := ingesttest.New(b)
	e.Devices(b)
	s, err := coap.New(coap.Config{UDPAddr: "127.0.0.1:0", Insecure: true}, e.Core)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	addr, _, err := s.Addrs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	path := "/devices/" + ingesttest.Tenant + "/" + ingesttest.Registered + "/sensor"
	now := time.Now()
	worker := func() (func(i int) error, func(), error) {
		c, err := udp.Dial(addr.String())
		if err != nil {
			return nil, nil, err
		}
		return func(i int) error {
			body := fmt.Appendf(nil, `{"ts":%d,"metric":"bench.coap","value":%d}`, now.Add(-time.Minute).UnixMilli()+int64(i), i)
			rctx, rc := context.WithTimeout(ctx, time.Minute)
			defer rc()
			resp, err := c.Post(rctx, path, message.AppJSON, bytes.NewReader(body))
			if err == nil && resp.Code() != codes.Changed {
				answer, _ := resp.ReadBody()
				err = fmt.Errorf("POST %s: %v %s", path, resp.Code(), answer)
			}
			return err
		}, func() { _ = c.Close() }, nil
	}
	run := func(first, n int) (time.Duration, time.Duration) {
		return ingesttest.Load(b, benchClients, first, n, worker)
	}
	warm := max(1, b.N/10)
	run(0, warm)
	b.ResetTimer()
	wall, cpu := run(warm, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/wall.Seconds(), "coap-msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "coap-cpu-us/msg")
	b.ReportMetric(0, "ns/op")
}
