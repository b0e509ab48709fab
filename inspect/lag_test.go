package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/topics"
)

func TestIntegrationLag(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	base := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for i := range 10 {
		ts := base.Add(time.Duration(i) * time.Minute)
		recs = append(recs, s.record(topics.RawSensor, 0, "dev-a", ts, sensor("dev-a", "temperature", float64(i), ts)))
	}
	for i := range 4 {
		ts := base.Add(time.Duration(i) * time.Minute)
		recs = append(recs, s.record(topics.RawSensor, 1, "dev-b", ts, sensor("dev-b", "temperature", float64(i), ts)))
	}
	s.produce(recs...)

	// A group member consumes everything and commits: partition 0 up to
	// offset 6 (records 6..9 unconsumed), partition 1 fully.
	grp, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.brokers, ",")...), kgo.ConsumerGroup("drover-test"),
		kgo.ConsumeTopics(topics.RawSensor), kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := 0
	for seen < 14 {
		f := grp.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 14 records before the deadline", seen)
		}
		seen += f.NumRecords()
	}
	var commitErr error
	grp.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{
		topics.RawSensor: {0: {Epoch: -1, Offset: 6}, 1: {Epoch: -1, Offset: 4}},
	}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if e := kerr.ErrorForCode(rp.ErrorCode); e != nil && commitErr == nil {
						commitErr = e
					}
				}
			}
		}
		if commitErr == nil {
			commitErr = err
		}
	})
	if commitErr != nil {
		t.Fatalf("commit: %v", commitErr)
	}
	grp.Close() // leaves the group: state Empty

	now := base.Add(time.Hour)
	run := func(args ...string) result {
		return execute(t, lagCommand(&cli.Conn{}, func() time.Time { return now }), append(args, "--kafka-brokers", s.brokers)...)
	}
	r := run("--group", "drover-test", "--format", "json")
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.errOut)
	}
	rows := map[int32]PartitionLag{}
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var pl PartitionLag
		if err := json.Unmarshal([]byte(line), &pl); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		rows[pl.Partition] = pl
	}
	p0, p1 := rows[0], rows[1]
	if p0.Committed != 6 || p0.End != 10 || p0.Lag != 4 || p0.Group != "drover-test" || p0.Topic != topics.RawSensor {
		t.Errorf("partition 0: %+v", p0)
	}
	wantOldest := base.Add(6 * time.Minute)
	if p0.Oldest == nil || !p0.Oldest.Equal(wantOldest) || p0.AgeSeconds == nil || *p0.AgeSeconds != 54*60 {
		t.Errorf("partition 0 oldest %v age %v, want %s and 3240 s", p0.Oldest, p0.AgeSeconds, wantOldest)
	}
	if p1.Committed != 4 || p1.End != 4 || p1.Lag != 0 || p1.Oldest != nil {
		t.Errorf("partition 1: %+v", p1)
	}

	t.Run("table", func(t *testing.T) {
		r := run("--group", "drover-test", "--format", "table")
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("output:\n%s", r.out)
		lines := strings.Split(r.out, "\n")
		if !strings.HasPrefix(lines[0], "GROUP") {
			t.Fatalf("table:\n%s", r.out)
		}
		var row0 string
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 3 && f[2] == topics.RawSensor && f[3] == "0" {
				row0 = l
			}
		}
		for _, want := range []string{"drover-test", "Empty", " 6 ", " 10 ", " 4 ", "54m00s ago"} {
			if !strings.Contains(row0, want) {
				t.Errorf("row %q lacks %q", row0, want)
			}
		}
	})
	t.Run("all groups: one line per group", func(t *testing.T) {
		r := run("--format", "json")
		if r.err != nil {
			t.Fatalf("%v\n%s", r.err, r.errOut)
		}
		lines := strings.Split(strings.TrimSpace(r.out), "\n")
		if len(lines) != 1 {
			t.Fatalf("want one summary line for the one group, got %d:\n%s", len(lines), r.out)
		}
		var g GroupLag
		if err := json.Unmarshal([]byte(lines[0]), &g); err != nil {
			t.Fatal(err)
		}
		if g.Group != "drover-test" || g.State != "Empty" || g.Members != 0 || g.Partitions != 3 || g.Lagging != 1 || g.Lag != 4 ||
			len(g.Topics) != 1 || g.Topics[0] != topics.RawSensor || g.Oldest == nil || !g.Oldest.Equal(wantOldest) || g.AgeSeconds == nil || *g.AgeSeconds != 54*60 {
			t.Errorf("summary %+v", g)
		}
		r = run("--format", "table")
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("output:\n%s", r.out)
		if f := strings.Fields(strings.Split(r.out, "\n")[1]); strings.Join(f, " ") != "drover-test Empty 0 1 3 1 4 54m00s ago" {
			t.Errorf("summary row %q", f)
		}
		if !strings.Contains(r.out, "drover lag --group GROUP") {
			t.Errorf("the summary does not say how to see partitions:\n%s", r.out)
		}
	})
	t.Run("all groups per partition", func(t *testing.T) {
		r := run("--partitions", "--format", "json")
		if r.err != nil || strings.Count(r.out, `"partition":`) != 3 {
			t.Errorf("%v: %s", r.err, r.out)
		}
	})
	t.Run("fail over", func(t *testing.T) {
		r := run("--group", "drover-test", "--fail-over", "3", "--format", "json")
		if cli.ExitCode(r.err) != 3 || !strings.Contains(r.err.Error(), "1 partition(s) lag by more than 3") {
			t.Errorf("error %v", r.err)
		}
		if r := run("--group", "drover-test", "--fail-over", "4", "--format", "json"); r.err != nil {
			t.Errorf("lag 4 with --fail-over 4: %v", r.err)
		}
	})
	t.Run("usage errors", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			args    []string
			wantErr string
		}{
			{"unknown group", []string{"--group", "nope"}, `no consumer group "nope"`},
			{"bad format", []string{"--format", "xml"}, `--format: unknown format "xml"`},
			{"negative fail-over", []string{"--fail-over", "-5"}, "--fail-over: -5 is not a record count"},
			{"unknown topic", []string{"--topic", "raw.snesor"}, `--topic: unknown topic "raw.snesor"`},
			{"topic no group consumes", []string{"--group", "drover-test", "--topic", topics.RawGPS}, "--topic raw.gps: no consumer group among drover-test has offsets on it"},
			{"empty group name", []string{"--group", "drover-test,"}, "--group: empty name"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := run(c.args...)
				var ue *cli.UsageError
				if !errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), c.wantErr) || strings.Contains(r.err.Error(), "\n") {
					t.Errorf("error %v, want one-line usage error with %q", r.err, c.wantErr)
				}
			})
		}
	})
}

// TestUnreachableKafka checks each command gives up on a dead or silent
// broker with one line naming it (exit 1) instead of hanging.
func TestUnreachableKafka(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for _, addr := range []string{refused, silent.Addr().String()} {
		for name, mk := range map[string]func() *cobra.Command{
			"tail":    func() *cobra.Command { return TailCommand(&cli.Conn{}) },
			"lag":     func() *cobra.Command { return LagCommand(&cli.Conn{}) },
			"devices": func() *cobra.Command { return DevicesCommand(&cli.Conn{}) },
		} {
			t.Run(name+" "+addr, func(t *testing.T) {
				args := []string{"--kafka-brokers", addr, "--timeout", "1s"}
				if name == "tail" {
					args = append([]string{topics.RawSensor}, args...)
				}
				done := make(chan result, 1)
				go func() { done <- execute(t, mk(), args...) }()
				select {
				case r := <-done:
					if r.err == nil || cli.ExitCode(r.err) != 1 || !strings.Contains(r.err.Error(), addr) || strings.Contains(r.err.Error(), "\n") {
						t.Errorf("error %v: want one line naming %s, exit 1", r.err, addr)
					}
				case <-time.After(60 * time.Second):
					t.Fatal("command did not give up on the broker")
				}
			})
		}
	}
}
