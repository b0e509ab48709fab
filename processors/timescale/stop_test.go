package timescale

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationSinkStopsUnderLoad: cancelling the sink while records keep
// arriving must return promptly. With BlockRebalanceOnPoll, leaving the
// group on Close waits for the last poll's rebalance to be allowed; a sink
// that forgot to allow it hung forever on SIGTERM (found under drover dev).
func TestIntegrationSinkStopsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration")
	}
	env := newKafkaEnv(t, 4)
	dbURL, _ := migratedDB(t)
	for round := 0; round < 3; round++ {
		rs := startSink(t, env, dbURL, nil)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				ts := time.UnixMilli(1_700_000_000_000 + int64(round*1_000_000+i))
				r := env.record(t, topics.RawSensor, "cow-1", schemas.SensorReading{EventID: fmt.Sprint(round, "-", i), Tenant: "farm", DeviceID: "cow-1",
					TS: ts, IngestedAt: ts, Metric: "temperature", Value: 38, Source: "test", Attrs: map[string]string{}})
				env.producer.Produce(ctx, r, nil)
				time.Sleep(2 * time.Millisecond)
			}
		}()
		time.Sleep(1500 * time.Millisecond) // the sink polls, writes and commits while records flow
		done := make(chan error, 1)
		go func() { done <- rs.stop() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("round %d: sink did not stop", round)
		}
		cancel()
		wg.Wait()
	}
}
