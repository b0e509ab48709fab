package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
)

// PartitionLag is one row of `drover lag`: a group's position in one
// partition.
type PartitionLag struct {
	Group     string `json:"group"`
	State     string `json:"state"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Member is the client id and host of the member assigned the
	// partition; empty when the group has no members (state Empty).
	Member string `json:"member,omitempty"`
	// Committed is the committed offset, -1 when the group committed none.
	Committed int64 `json:"committed"`
	// End is the partition's end offset (high watermark).
	End int64 `json:"end"`
	// Lag is End minus Committed (or minus the log start without a
	// commit); -1 when it could not be computed (see Error).
	Lag int64 `json:"lag"`
	// Oldest is the timestamp of the oldest unconsumed record, when there
	// is lag and the record could be read.
	Oldest *time.Time `json:"oldest_unconsumed,omitempty"`
	// AgeSeconds is now minus Oldest.
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
	Error      string   `json:"error,omitempty"`

	members int // of the group, for the summary
}

// GroupLag is one row of `drover lag`'s summary: a group's lag over all
// the partitions it has offsets for.
type GroupLag struct {
	Group   string `json:"group"`
	State   string `json:"state"`
	Members int    `json:"members"`
	// Topics are the topics the group has offsets for (or is assigned).
	Topics []string `json:"topics"`
	// Partitions is the number of partitions; Lagging those with lag > 0.
	Partitions int `json:"partitions"`
	Lagging    int `json:"lagging_partitions"`
	// Lag is the sum of the partitions' lag (unknown ones left out).
	Lag int64 `json:"lag"`
	// Oldest is the oldest unconsumed record over all partitions, and
	// AgeSeconds now minus it.
	Oldest     *time.Time `json:"oldest_unconsumed,omitempty"`
	AgeSeconds *float64   `json:"age_seconds,omitempty"`
	// Errors counts partitions whose lag could not be computed.
	Errors int    `json:"errors,omitempty"`
	Error  string `json:"error,omitempty"`
}

type lagOptions struct {
	conn       *cli.Conn
	groups     []string
	topics     []string
	format     string
	partitions bool
	failOver   int64
	timeout    time.Duration
	now        func() time.Time
}

// LagCommand returns `drover lag`.
func LagCommand(conn *cli.Conn) *cobra.Command { return lagCommand(conn, time.Now) }

func lagCommand(conn *cli.Conn, now func() time.Time) *cobra.Command {
	o := &lagOptions{conn: conn, now: now}
	cmd := &cobra.Command{
		Use:   "lag",
		Short: "Show consumer group lag: one line per group, or per partition with --group or --partitions",
		Long: `Without --group, one line per consumer group on the cluster: its state,
members, topics, partitions, total lag (end minus committed offsets) and the
age of the oldest unconsumed record over all its partitions. With --group
(or --partitions), one line per partition of the named groups: the
committed offset, the end offset, the lag and, where there is lag, the age
of the oldest unconsumed record: drover reads the record at the committed
offset and reports how long ago it was written. Lag in records says how
much work is queued; the age says how stale the group's view of the world
is, which is what an on-call engineer usually needs.

Groups without members (state Empty) are shown with the lag of every
partition of the topics they committed offsets for. drover's own groups are
the processors (features, alerts, state, state-alerts), the sink
(drover-sink), the media stage (drover-media) and the bridge's downlink
(drover-bridge-downlink). A --group or --topic the cluster does not have is
an error naming it.

--fail-over N makes the command exit with status 3 when any partition lags
by more than N records, for use in scripts and health checks.`,
		Example: `  # one line per group
  drover lag

  # every partition of one group, as JSON lines
  drover lag --group drover-sink --format json

  # only the raw.sensor partitions of two groups; exit 3 beyond 10000 records
  drover lag --group features,alerts --topic raw.sensor --fail-over 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	fs.StringSliceVarP(&o.groups, "group", "g", nil, "consumer groups to show per partition (repeat or comma-separate; default all, one line each)")
	fs.BoolVar(&o.partitions, "partitions", false, "one line per partition for every group (the default with --group)")
	fs.StringSliceVarP(&o.topics, "topic", "t", nil, "only these topics (default all the groups consume)")
	fs.StringVarP(&o.format, "format", "o", "", "output: table or json (default table on a terminal, json otherwise)")
	fs.Int64Var(&o.failOver, "fail-over", -1, "exit with status 3 when a partition's lag exceeds N records (N ≥ 0; -1 = never)")
	fs.DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long to wait for Kafka to answer")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{FormatTable, FormatJSON}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("topic", completeTopics)
	return cmd
}

func (o *lagOptions) run(ctx context.Context, out, errOut io.Writer) error {
	format, err := tableOrJSON(o.format, out)
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return cli.Usagef("--timeout: must be > 0, got %s", o.timeout)
	}
	if o.failOver < -1 {
		return cli.Usagef("--fail-over: %d is not a record count (want N ≥ 0, or -1 for never)", o.failOver)
	}
	for _, list := range []struct {
		flag  string
		names []string
	}{{"--group", o.groups}, {"--topic", o.topics}} {
		for _, n := range list.names {
			if strings.TrimSpace(n) == "" {
				return cli.Usagef("%s: empty name", list.flag)
			}
		}
	}
	adm, err := connect(ctx, o.conn, o.timeout)
	if err != nil {
		return err
	}
	defer adm.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*o.timeout)
	defer cancel()
	if err := checkTopics(ctx, adm, o.topics); err != nil {
		return err
	}
	rows, err := Lag(ctx, o.conn, adm, o.groups, o.topics, o.now())
	if err != nil {
		return err
	}
	if len(o.topics) > 0 && len(rows) == 0 {
		return cli.Usagef("--topic %s: no consumer group%s has offsets on it", strings.Join(o.topics, ","), groupsClause(o.groups))
	}
	if o.partitions || len(o.groups) > 0 {
		err = writeLag(out, format, rows)
	} else {
		err = writeGroupLag(out, format, summarise(rows))
	}
	if err != nil {
		return err
	}
	var errs []error
	over := 0
	for _, r := range rows {
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("group %s %s[%d]: %s", r.Group, r.Topic, r.Partition, r.Error))
		}
		if o.failOver >= 0 && r.Lag > o.failOver {
			over++
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if over > 0 {
		return fmt.Errorf("%d partition(s) lag by more than %d records: %w", over, o.failOver, cli.ErrCheckFailed)
	}
	if len(rows) == 0 {
		fmt.Fprintln(errOut, "drover lag: no consumer group offsets found")
	}
	return nil
}

func groupsClause(groups []string) string {
	if len(groups) == 0 {
		return ""
	}
	return " among " + strings.Join(groups, ",")
}

// checkTopics fails with a usage error naming a --topic the cluster does
// not have.
func checkTopics(ctx context.Context, adm *kadm.Client, names []string) error {
	if len(names) == 0 {
		return nil
	}
	md, err := adm.Metadata(ctx, names...)
	if err != nil {
		return fmt.Errorf("reading topic metadata: %w", err)
	}
	for _, t := range names {
		if d, ok := md.Topics[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return cli.Usagef("--topic: unknown topic %q: the cluster has no such topic (see drover topics list)", t)
		}
	}
	return nil
}

// connect returns an admin client for conn's cluster once a broker has
// answered within timeout. Dialing and each request's read are bounded by
// timeout too: kgo's handshake does not stop at a context deadline, so a
// broker that accepts connections but never answers would otherwise hold
// the command for kgo's default overhead.
func connect(ctx context.Context, conn *cli.Conn, timeout time.Duration) (*kadm.Client, error) {
	cl, err := conn.Kafka(kgo.DialTimeout(timeout), kgo.RequestTimeoutOverhead(timeout))
	if err != nil {
		return nil, err
	}
	if err := conn.PingKafka(ctx, cl, timeout); err != nil {
		cl.Close()
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// tableOrJSON resolves --format for commands that print tables or JSON.
func tableOrJSON(format string, out io.Writer) (string, error) {
	switch f := strings.ToLower(format); f {
	case "":
		if isTerminal(out) {
			return FormatTable, nil
		}
		return FormatJSON, nil
	case FormatTable, FormatJSON:
		return f, nil
	}
	return "", cli.Usagef("--format: unknown format %q (want table or json)", format)
}

// Lag computes the lag of groups (all groups when empty) on topics (all
// when empty), and reads the oldest unconsumed record of each lagging
// partition for its age relative to now. A group that does not exist is a
// usage error naming it.
func Lag(ctx context.Context, conn *cli.Conn, adm *kadm.Client, groups, topicNames []string, now time.Time) ([]PartitionLag, error) {
	if len(groups) == 0 {
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing consumer groups: %w", err)
		}
		groups = listed.Groups()
		if len(groups) == 0 {
			return nil, nil
		}
	}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, fmt.Errorf("computing lag: %w", err)
	}
	var rows []PartitionLag
	for _, g := range lags.Sorted() {
		if err := g.Error(); err != nil {
			if errors.Is(err, kerr.GroupIDNotFound) {
				return nil, cli.Usagef("--group: no consumer group %q on the cluster", g.Group)
			}
			rows = append(rows, PartitionLag{Group: g.Group, State: g.State, Partition: -1, Committed: -1, End: -1, Lag: -1, Error: err.Error()})
			continue
		}
		if (g.State == "Dead" || g.State == "") && len(g.Lag) == 0 {
			return nil, cli.Usagef("--group: no consumer group %q on the cluster", g.Group)
		}
		for _, l := range g.Lag.Sorted() {
			if len(topicNames) > 0 && !slices.Contains(topicNames, l.Topic) {
				continue
			}
			r := PartitionLag{Group: g.Group, State: g.State, Topic: l.Topic, Partition: l.Partition, Committed: l.Commit.At, End: l.End.Offset, Lag: l.Lag, members: len(g.Members)}
			if l.Member != nil {
				r.Member = l.Member.ClientID + "@" + strings.TrimPrefix(l.Member.ClientHost, "/")
			}
			if l.Err != nil {
				r.Error = l.Err.Error()
			}
			rows = append(rows, r)
		}
	}
	// The oldest unconsumed record of each lagging partition.
	want := map[partitionKey][]int64{}
	ends := map[partitionKey]int64{}
	for _, r := range rows {
		if r.Lag > 0 && r.Error == "" {
			k := partitionKey{r.Topic, r.Partition}
			want[k] = append(want[k], r.End-r.Lag)
			ends[k] = max(ends[k], r.End)
		}
	}
	stamps, err := recordTimes(ctx, conn, want, ends)
	if err != nil {
		return rows, err
	}
	for i := range rows {
		r := &rows[i]
		if r.Lag <= 0 {
			continue
		}
		if ts, ok := stamps[offsetKey{partitionKey{r.Topic, r.Partition}, r.End - r.Lag}]; ok {
			age := now.Sub(ts).Seconds()
			r.Oldest, r.AgeSeconds = &ts, &age
		}
	}
	return rows, nil
}

type offsetKey struct {
	partitionKey
	offset int64
}

// recordTimes reads, for each partition and offset in want, the first
// data record at or after that offset (and before the partition's end in
// ends) and returns its timestamp. Partitions with only transaction markers
// left, or whose record cannot be read before ctx ends, are left out.
func recordTimes(ctx context.Context, conn *cli.Conn, want map[partitionKey][]int64, ends map[partitionKey]int64) (map[offsetKey]time.Time, error) {
	out := map[offsetKey]time.Time{}
	pending := map[partitionKey][]int64{}
	for k, offs := range want {
		slices.Sort(offs)
		pending[k] = slices.Compact(offs)
	}
	// One round per distinct offset of the same partition (usually one).
	for len(pending) > 0 {
		round := map[string]map[int32]kgo.Offset{}
		need := map[partitionKey]int64{}
		for k, offs := range pending {
			if round[k.Topic] == nil {
				round[k.Topic] = map[int32]kgo.Offset{}
			}
			round[k.Topic][k.Partition] = kgo.NewOffset().At(offs[0])
			need[k] = offs[0]
			if len(offs) == 1 {
				delete(pending, k)
			} else {
				pending[k] = offs[1:]
			}
		}
		cl, err := conn.Kafka(kgo.ConsumePartitions(round), kgo.KeepControlRecords(), kgo.FetchMaxWait(500*time.Millisecond), kgo.FetchMaxPartitionBytes(1<<20))
		if err != nil {
			return out, err
		}
		for len(need) > 0 && ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				k := partitionKey{r.Topic, r.Partition}
				off, ok := need[k]
				if !ok || r.Offset < off {
					return
				}
				if r.Attrs.IsControl() {
					if end, ok := ends[k]; !ok || r.Offset+1 < end {
						return // data may follow the marker
					}
				} else {
					out[offsetKey{k, off}] = r.Timestamp
				}
				delete(need, k)
				cl.PauseFetchPartitions(map[string][]int32{k.Topic: {k.Partition}})
			})
		}
		cl.Close()
	}
	return out, nil
}

// summarise folds partition rows into one row per group, in order.
func summarise(rows []PartitionLag) []GroupLag {
	var out []GroupLag
	idx := map[string]int{}
	for _, r := range rows {
		i, ok := idx[r.Group]
		if !ok {
			i = len(out)
			idx[r.Group] = i
			out = append(out, GroupLag{Group: r.Group, State: r.State})
		}
		g := &out[i]
		g.Members = max(g.Members, r.members)
		if r.Partition < 0 { // the group itself could not be described
			g.Error = r.Error
			continue
		}
		if !slices.Contains(g.Topics, r.Topic) {
			g.Topics = append(g.Topics, r.Topic)
		}
		g.Partitions++
		switch {
		case r.Error != "" || r.Lag < 0:
			g.Errors++
		case r.Lag > 0:
			g.Lagging++
			g.Lag += r.Lag
		}
		if r.Oldest != nil && (g.Oldest == nil || r.Oldest.Before(*g.Oldest)) {
			g.Oldest, g.AgeSeconds = r.Oldest, r.AgeSeconds
		}
	}
	return out
}

func writeGroupLag(w io.Writer, format string, groups []GroupLag) error {
	if format == FormatJSON {
		return writeJSONLines(w, groups)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tTOPICS\tPARTITIONS\tLAGGING\tLAG\tOLDEST UNCONSUMED")
	for _, g := range groups {
		oldest := "-"
		switch {
		case g.Error != "":
			oldest = "error: " + g.Error
		case g.AgeSeconds != nil:
			oldest = humanAge(time.Duration(*g.AgeSeconds*float64(time.Second))) + " ago"
		case g.Lag > 0:
			oldest = "unknown"
		}
		if g.Errors > 0 {
			oldest += fmt.Sprintf(" (%d partition(s) unknown)", g.Errors)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", g.Group, g.State, g.Members, len(g.Topics), g.Partitions, g.Lagging, g.Lag, oldest)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(groups) > 0 {
		_, err := fmt.Fprintln(w, "\nper partition: drover lag --group GROUP (or --partitions for every group)")
		return err
	}
	return nil
}

func writeLag(w io.Writer, format string, rows []PartitionLag) error {
	if format == FormatJSON {
		return writeJSONLines(w, rows)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tTOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tOLDEST UNCONSUMED\tMEMBER")
	for _, r := range rows {
		if r.Partition < 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\terror: %s\t\n", r.Group, r.State, r.Error)
			continue
		}
		committed, lag := "-", "?"
		if r.Committed >= 0 {
			committed = strconv.FormatInt(r.Committed, 10)
		}
		if r.Lag >= 0 {
			lag = strconv.FormatInt(r.Lag, 10)
		}
		oldest := "-"
		switch {
		case r.AgeSeconds != nil:
			oldest = humanAge(time.Duration(*r.AgeSeconds*float64(time.Second))) + " ago"
		case r.Lag > 0:
			oldest = "unknown"
		}
		if r.Error != "" {
			oldest = "error: " + r.Error
		}
		member := r.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", r.Group, r.State, r.Topic, r.Partition, committed, r.End, lag, oldest, member)
	}
	return tw.Flush()
}

// humanAge renders a duration for a table: 45s, 12m30s, 3h05m, 2d04h.
func humanAge(d time.Duration) string {
	if d < 0 {
		return "-" + humanAge(-d)
	}
	switch {
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 0, 64) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
