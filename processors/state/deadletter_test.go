package state

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationDeadLetters: undecodable raw.* input is counted and
// skipped; with Config.DeadLetters it is also written to dlq.events
// (stage process, reason undecodable or unknown_schema, the original
// bytes); without (the default: the alerts group writes them) dlq.events
// stays empty.
func TestIntegrationDeadLetters(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	unknownSchema := []byte{0, 0, 0x0f, 0x42, 0x3f, 2, 'x'} // schema id 999999
	tests := []struct {
		name        string
		deadLetters bool
		want        map[string]string // payload → reason
	}{
		{"off by default", false, map[string]string{}},
		{"on", true, map[string]string{"not avro": groupkit.ReasonUndecodable, string(unknownSchema): groupkit.ReasonUnknownSchema}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := kadm.NewClient(c.cl).CreateTopic(ctx, 2, 1, nil, topics.DLQ); err != nil {
				t.Fatal(err)
			}
			p, stop := runState(t, c, Config{TickInterval: -1, DeadLetters: tc.deadLetters})
			for _, r := range []*kgo.Record{
				{Topic: topics.RawSensor, Key: []byte("cow-1"), Value: []byte("not avro")},
				{Topic: topics.RawGPS, Key: []byte("cow-1"), Value: unknownSchema},
			} {
				if err := c.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", time.Now(), 38))
			eventually(t, "three records processed", func() error {
				if n := counterValue(t, p.m.records.WithLabelValues(topics.RawSensor)) + counterValue(t, p.m.records.WithLabelValues(topics.RawGPS)); n < 3 {
					return fmt.Errorf("%v records", n)
				}
				return nil
			})
			stop() // flushes the producer: every dead letter is in Kafka
			if n := counterValue(t, p.m.bad.WithLabelValues(topics.RawSensor)) + counterValue(t, p.m.bad.WithLabelValues(topics.RawGPS)); n != 2 {
				t.Errorf("bad records = %v, want 2", n)
			}
			got := readDeadLetters(ctx, t, c)
			for _, dl := range got {
				reason, ok := tc.want[string(dl.Payload)]
				part, _ := strconv.ParseInt(dl.Headers["partition"], 10, 32)
				off, _ := strconv.ParseInt(dl.Headers["offset"], 10, 64)
				switch {
				case !ok:
					t.Errorf("unexpected dead letter %+v", dl)
				case dl.Reason != reason || dl.Stage != groupkit.DeadLetterStage || dl.DeviceID == nil || *dl.DeviceID != "cow-1" ||
					dl.Headers["group"] != string(Group) || dl.ID != groupkit.DeadLetterID(dl.Headers["topic"], int32(part), off):
					t.Errorf("dead letter %+v, want reason %s, stage process, device cow-1, group state, id from its coordinates", dl, reason)
				}
				delete(tc.want, string(dl.Payload))
			}
			if len(tc.want) > 0 {
				t.Errorf("missing dead letters for %q", tc.want)
			}
			if n := counterValue(t, p.m.dead); int(n) != len(got) {
				t.Errorf("drover_state_dead_letters_total = %v, want %d", n, len(got))
			}
		})
	}
}

// readDeadLetters reads every record of dlq.events up to its end offsets.
func readDeadLetters(ctx context.Context, t *testing.T, c *cluster) []*schemas.DeadLetter {
	t.Helper()
	ends, err := kadm.NewClient(c.cl).ListEndOffsets(ctx, topics.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if n == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*schemas.DeadLetter
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d dead letters", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			dl := new(schemas.DeadLetter)
			if _, err := c.serde.DecodeTopic(ctx, topics.DLQ, r.Value, dl); err != nil {
				t.Errorf("decoding dead letter: %v", err)
				return
			}
			out = append(out, dl)
		})
	}
	return out
}
