package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/cli"
)

// ErrGroupActive is returned when the group still has members.
var ErrGroupActive = errors.New("consumer group has live members")

// Move is one partition's offset change.
type Move struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Before is the committed offset (-1 = none).
	Before int64 `json:"before"`
	After  int64 `json:"after"`
}

// Plan computes, and unless dryRun commits, the offsets of group at time
// to for topics (empty = every topic the group has offsets for).
// A group or topic the cluster does not have is a *cli.UsageError naming
// the flag.
func Plan(ctx context.Context, adm *kadm.Client, group string, to time.Time, topicList []string, dryRun bool) ([]Move, error) {
	if len(topicList) > 0 {
		md, err := adm.Metadata(ctx, topicList...)
		if err != nil {
			return nil, fmt.Errorf("reading topic metadata: %w", err)
		}
		for _, t := range topicList {
			if d, ok := md.Topics[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
				return nil, cli.Usagef("--topics: unknown topic %q: the cluster has no such topic (see drover topics list)", t)
			}
		}
	}
	dg, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", group, err)
	}
	if d, ok := dg[group]; ok {
		if errors.Is(d.Err, kerr.GroupIDNotFound) {
			return nil, cli.Usagef("--group: no consumer group %q on the cluster (see drover lag)", group)
		}
		if d.Err != nil {
			return nil, fmt.Errorf("group %s: %w", group, d.Err)
		}
		if len(d.Members) > 0 {
			return nil, fmt.Errorf("%w: group %s is %s with %d members; stop its consumers first", ErrGroupActive, group, d.State, len(d.Members))
		}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetching offsets of group %s: %w", group, err)
	}
	ts := slices.Clone(topicList)
	if len(ts) == 0 {
		for t := range committed {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return nil, cli.Usagef("--topics: group %s has no committed offsets; name the topics to rewind", group)
	}
	sort.Strings(ts)
	listed, err := cli.OffsetsAfter(ctx, adm, to, ts...)
	if err != nil {
		return nil, fmt.Errorf("listing offsets at %s: %w", to.Format(time.RFC3339), err)
	}
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("listing offsets at %s: %w", to.Format(time.RFC3339), err)
	}
	var moves []Move
	commit := kadm.Offsets{}
	listed.Each(func(o kadm.ListedOffset) {
		m := Move{Topic: o.Topic, Partition: o.Partition, Before: -1, After: o.Offset}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil {
			m.Before = c.At
		}
		moves = append(moves, m)
		commit.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	sort.Slice(moves, func(i, j int) bool {
		if moves[i].Topic != moves[j].Topic {
			return moves[i].Topic < moves[j].Topic
		}
		return moves[i].Partition < moves[j].Partition
	})
	if dryRun {
		return moves, nil
	}
	resp, err := adm.CommitOffsets(ctx, group, commit)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return moves, fmt.Errorf("committing offsets of group %s: %w", group, err)
	}
	return moves, nil
}

// Print writes the moves as a table.
func Print(w io.Writer, moves []Move) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tBEFORE\tAFTER\tDELTA")
	for _, m := range moves {
		before, delta := "-", "-"
		if m.Before >= 0 {
			before = fmt.Sprint(m.Before)
			delta = fmt.Sprintf("%+d", m.After-m.Before)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", m.Topic, m.Partition, before, m.After, delta)
	}
	tw.Flush()
}

// ReplayCommand returns `drover replay`.
func ReplayCommand(conn *cli.Conn) *cobra.Command {
	var group, to string
	var topicList []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Rewind a stopped consumer group to the first offset at or after a time",
		Long: `replay sets the committed offsets of --group, for each partition of --topics
(default: every topic the group has offsets for), to the first offset whose
record timestamp is at or after --to-time (the end offset when there is none;
the log start for a time before 1970),
and prints before/after per partition. It refuses while the group has live
members: stop the consumers, replay, start them again.`,
		Example: `  drover replay --group drover-sink --to-time 2026-11-23T04:00:00Z --dry-run
  drover replay --group drover-sink --to-time 2026-11-23T04:00:00Z --topics raw.sensor,raw.gps`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if group == "" {
				return cli.Usagef("--group: required")
			}
			if to == "" {
				return cli.Usagef("--to-time: required")
			}
			for _, t := range topicList {
				if strings.TrimSpace(t) == "" {
					return cli.Usagef("--topics: empty topic name in %q", strings.Join(topicList, ","))
				}
			}
			at, err := backfill.ParseTime(to)
			if err != nil {
				return cli.Usagef("--to-time: %w", err)
			}
			adm, closeAdm, err := conn.Admin()
			if err != nil {
				return err
			}
			defer closeAdm()
			ctx, cancel := context.WithTimeout(cmd.Context(), 60*time.Second)
			defer cancel()
			moves, err := Plan(ctx, adm, group, at, topicList, dryRun)
			if len(moves) > 0 {
				Print(cmd.OutOrStdout(), moves)
			}
			if err != nil {
				return err
			}
			if dryRun {
				fmt.Fprintln(cmd.OutOrStdout(), "dry run: nothing committed")
			}
			return nil
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	fs.StringVar(&group, "group", "", "consumer group to rewind; required")
	fs.StringVar(&to, "to-time", "", "rewind to the first offset at or after this time; required")
	fs.StringSliceVar(&topicList, "topics", nil, "topics to rewind (default: all the group has offsets for)")
	fs.BoolVar(&dryRun, "dry-run", false, "show the moves, commit nothing")
	return cmd
}
