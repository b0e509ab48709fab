package timescale

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationDeadLettersAgreeWithDLQStats: identical bad payloads share
// a dead-letter id; each of them is still one dead_letters row, so the
// table counts what `drover dlq stats` counts on dlq.events, stage by stage
// (a record of dlq.events the sink cannot decode is stats' "undecodable"
// and the sink's own stage-sink row), and a replay of dlq.events adds
// nothing.
func TestIntegrationDeadLettersAgreeWithDLQStats(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 2)
	dbURL := devtest.Postgres(t)
	letter := func(id, stage, reason string) *kgo.Record {
		return env.record(t, topics.DLQ, "cow-1", schemas.DeadLetter{ID: id, Stage: stage, Reason: reason, Message: "bad",
			Source: "devices/farm/cow-1/sensor", Payload: []byte("{"), PayloadSize: 1, ReceivedAt: at(4, 0), TS: at(4, 0), IngestedAt: at(4, 0)})
	}
	env.produce(t,
		letter("same", "decode", "not_json"), letter("same", "decode", "not_json"), letter("same", "decode", "not_json"),
		letter("other", "validate", "schema_mismatch"), letter("media-1", "media", "unmappable_key"),
		&kgo.Record{Topic: topics.DLQ, Key: []byte("cow-1"), Value: []byte("not a dead letter")},
	)
	rs := startSink(t, env, dbURL, nil)
	waitFor(t, 60*time.Second, "dlq.events written", func() (bool, string) { return groupCaughtUp(t, env, DefaultGroup) })
	if err := rs.stop(); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	stats, err := dlq.Stats(ctx, env.producer, env.serde, topics.DLQ, time.Unix(0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, dbURL)
	if n := count(t, c, "SELECT count(*) FROM dead_letters WHERE kafka_topic = 'dlq.events'"); n != int64(stats.Total) || n != 6 {
		t.Errorf("dead_letters from dlq.events: %d rows; dlq stats: %d; want 6 both", n, stats.Total)
	}
	for _, s := range stats.ByStage {
		q, stage := "SELECT count(*) FROM dead_letters WHERE kafka_topic = 'dlq.events' AND stage = $1", s.Key
		if s.Key == "undecodable" {
			stage = StageSink
		}
		if n := count(t, c, q, stage); n != int64(s.Count) {
			t.Errorf("stage %s: %d rows, dlq stats counts %d", s.Key, n, s.Count)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM dead_letters WHERE stage <> 'sink'"); n != 5 {
		t.Errorf("dead letters of the pipeline's stages: %d rows, want 5", n)
	}
	if n := count(t, c, "SELECT count(*) FROM dead_letters WHERE id = 'same'"); n != 3 {
		t.Errorf("identical payloads: %d rows, want 3 (one per dead letter)", n)
	}

	replayChangesNothing(t, env, dbURL)
}
