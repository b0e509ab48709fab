package replay

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
)

func TestIntegrationReplayOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	c := devtest.Kafka(t, kfake.SeedTopics(1, "in"))
	kc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		r := &kgo.Record{Topic: "in", Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Hour)}
		if err := kc.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A consumer group reads everything and commits, then is live.
	g, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < 10 {
		fs := g.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("consume timed out")
		}
		n += len(fs.Records())
	}
	if err := g.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(kc)
	if _, err := Plan(ctx, adm, "g", base.Add(3*time.Hour), nil, false); !errors.Is(err, ErrGroupActive) {
		t.Fatalf("live group: err %v, want ErrGroupActive", err)
	}
	g.Close()
	// Between records 3 and 4: the first offset at or after is 4.
	moves, err := Plan(ctx, adm, "g", base.Add(3*time.Hour+time.Minute), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(moves) != 1 || moves[0].Before != 10 || moves[0].After != 4 {
		t.Fatalf("dry run moves %+v", moves)
	}
	off, _ := adm.FetchOffsets(ctx, "g")
	if o, _ := off.Lookup("in", 0); o.At != 10 {
		t.Fatalf("dry run committed %d", o.At)
	}
	if _, err := Plan(ctx, adm, "g", base.Add(3*time.Hour+time.Minute), []string{"in"}, false); err != nil {
		t.Fatal(err)
	}
	off, _ = adm.FetchOffsets(ctx, "g")
	if o, _ := off.Lookup("in", 0); o.At != 4 {
		t.Fatalf("committed %d, want 4", o.At)
	}
	// After the last record: the end offset.
	moves, err = Plan(ctx, adm, "g", base.Add(48*time.Hour), nil, true)
	if err != nil || moves[0].After != 10 {
		t.Fatalf("future time: %+v %v", moves, err)
	}
	// The extremes: every time before the first record rewinds to the log
	// start. One millisecond before the epoch is -1, Kafka's "latest", if
	// passed on as a timestamp.
	for _, at := range []time.Time{time.UnixMilli(-1).UTC(), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(0), base.Add(-time.Hour)} {
		moves, err = Plan(ctx, adm, "g", at, nil, true)
		if err != nil || len(moves) != 1 || moves[0].After != 0 {
			t.Errorf("to %s: moves %+v, err %v; want offset 0", at, moves, err)
		}
	}
	moves, err = Plan(ctx, adm, "g", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), nil, true)
	if err != nil || len(moves) != 1 || moves[0].After != 10 {
		t.Errorf("to year 9999: moves %+v, err %v; want the end offset", moves, err)
	}
	// A group or topic the cluster does not have is a usage error.
	for _, c := range []struct {
		group   string
		topics  []string
		wantErr string
	}{
		{"nope", nil, `--group: no consumer group "nope"`},
		{"g", []string{"in", "nope"}, `--topics: unknown topic "nope"`},
	} {
		_, err := Plan(ctx, adm, c.group, base, c.topics, true)
		if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("group %s topics %v: err %v, want exit 2 with %q", c.group, c.topics, err, c.wantErr)
		}
	}
}
