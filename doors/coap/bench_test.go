package coap_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
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
	run := func(first, n int) (time.Duration, time.Duration) {
		cpu0 := cpuTime(b)
		start := time.Now()
		var next atomic.Int64
		next.Store(int64(first))
		var wg sync.WaitGroup
		errs := make(chan error, benchClients)
		for range benchClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := udp.Dial(addr.String())
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				for i := int(next.Add(1)); i <= first+n; i = int(next.Add(1)) {
					body := fmt.Appendf(nil, `{"ts":%d,"metric":"bench.coap","value":%d}`, now.Add(-time.Minute).UnixMilli()+int64(i), i)
					rctx, rc := context.WithTimeout(ctx, time.Minute)
					resp, err := c.Post(rctx, path, message.AppJSON, bytes.NewReader(body))
					rc()
					if err == nil && resp.Code() != codes.Changed {
						answer, _ := resp.ReadBody()
						err = fmt.Errorf("POST %s: %v %s", path, resp.Code(), answer)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		return time.Since(start), cpuTime(b) - cpu0
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

// cpuTime is the process's user + system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
