package features

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// unknownSchemaValue is a wire-format value naming schema id 999999, which
// the registry does not know.
var unknownSchemaValue = []byte{0, 0, 0x0f, 0x42, 0x3f, 2, 'x'}

// TestIntegrationDeadLetters: undecodable input is counted and skipped;
// with Config.DeadLetters it is also written to dlq.events (stage
// process, reason undecodable or unknown_schema, the original bytes, the
// id groupkit.DeadLetterID); without (the default: the alerts group
// writes them) dlq.events stays empty.
func TestIntegrationDeadLetters(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	tests := []struct {
		name        string
		deadLetters bool
		want        map[string]string // payload → reason
	}{
		{"off by default", false, map[string]string{}},
		{"on", true, map[string]string{"not avro": groupkit.ReasonUndecodable, string(unknownSchemaValue): groupkit.ReasonUnknownSchema}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			p, stop := runFeatures(t, c, Config{Clock: &fakeClock{now: t0}, TickInterval: -1, DeadLetters: tc.deadLetters})
			c.produceRaw(t, topics.RawSensor, "cow-1", []byte("not avro"))
			c.produceRaw(t, topics.RawGPS, "cow-1", unknownSchemaValue)
			c.produce(t, topics.RawSensor, "cow-1", reading("cow-1", "temperature", t0, 38))
			waitCounter(t, func() float64 {
				return counterValue(t, p.m.records.WithLabelValues(topics.RawSensor)) + counterValue(t, p.m.records.WithLabelValues(topics.RawGPS))
			}, 3)
			stop() // flushes the producer: every dead letter is in Kafka
			if n := counterValue(t, p.m.bad.WithLabelValues(topics.RawSensor)) + counterValue(t, p.m.bad.WithLabelValues(topics.RawGPS)); n != 2 {
				t.Errorf("bad records = %v, want 2", n)
			}
			got := readDeadLetters(t, c, len(tc.want))
			for _, dl := range got {
				reason, ok := tc.want[string(dl.Payload)]
				switch {
				case !ok:
					t.Errorf("unexpected dead letter %+v", dl)
				case dl.Reason != reason || dl.Stage != groupkit.DeadLetterStage || dl.DeviceID == nil || *dl.DeviceID != "cow-1" ||
					dl.Headers["group"] != string(Group) || !strings.HasPrefix(dl.Source, "kafka:raw."):
					t.Errorf("dead letter %+v, want reason %s, stage process, device cow-1, group features", dl, reason)
				}
				delete(tc.want, string(dl.Payload))
			}
			if len(tc.want) > 0 {
				t.Errorf("missing dead letters for %q", tc.want)
			}
			if n := counterValue(t, p.m.deadLetters); int(n) != len(got) {
				t.Errorf("drover_features_dead_letters_total = %v, want %d", n, len(got))
			}
		})
	}
}

// waitCounter waits (60 s at most) until f() reaches want.
func waitCounter(t *testing.T, f func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for f() < want {
		if time.Now().After(deadline) {
			t.Fatalf("counter at %v, want %v within 60s", f(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readDeadLetters reads dlq.events from the start up to its end offsets
// once want letters are there (waiting up to 60 s), and checks each id.
func readDeadLetters(t *testing.T, c *cluster, want int) []*schemas.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(c.cl)
	for {
		ends, err := adm.ListEndOffsets(ctx, topics.DLQ)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		if want == 0 {
			if n != 0 {
				t.Errorf("%d dead letters, want none", n)
			}
			return nil
		}
		if n >= int64(want) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d dead letters, want %d", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*schemas.DeadLetter
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d dead letters, want %d", len(out), want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			dl := new(schemas.DeadLetter)
			if _, err := c.serde.DecodeTopic(ctx, topics.DLQ, r.Value, dl); err != nil {
				t.Errorf("decoding dead letter: %v", err)
				return
			}
			part, err1 := strconv.ParseInt(dl.Headers["partition"], 10, 32)
			off, err2 := strconv.ParseInt(dl.Headers["offset"], 10, 64)
			if err1 != nil || err2 != nil || dl.ID != groupkit.DeadLetterID(dl.Headers["topic"], int32(part), off) {
				t.Errorf("dead letter id %s does not match its headers %v", dl.ID, dl.Headers)
			}
			out = append(out, dl)
		})
	}
	return out
}
