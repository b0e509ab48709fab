package inspect

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultTimeout bounds how long a command waits for Kafka (and the
// registry) to answer its setup requests (--timeout).
const DefaultTimeout = 15 * time.Second

// TailStats counts what a tail did.
type TailStats struct {
	// Shown is the number of records printed.
	Shown int64
	// Skipped is the number of records the filters left out.
	Skipped int64
	// Undecodable is the number of printed records whose value did not
	// decode (shown raw, with the reason).
	Undecodable int64
}

// String renders the counts as one line.
func (s TailStats) String() string {
	return fmt.Sprintf("%d shown, %d skipped by filters, %d undecodable", s.Shown, s.Skipped, s.Undecodable)
}

// tailOptions are the flags of `drover tail`.
type tailOptions struct {
	conn       *cli.Conn
	partitions []int32
	from, to   string
	follow     bool
	limit      int64
	keys       []string
	headers    []string
	wheres     []string
	format     string
	timeout    time.Duration
	now        func() time.Time
}

// TailCommand returns `drover tail TOPIC...`.
func TailCommand(conn *cli.Conn) *cobra.Command {
	o := &tailOptions{conn: conn, now: time.Now}
	cmd := &cobra.Command{
		Use:   "tail TOPIC [TOPIC...]",
		Short: "Print records of topics, decoded from Avro, from a position, with filters",
		Long: `Read one or more topics partition by partition (no consumer group is used,
so tail leaves nothing behind on the cluster), decode each value through the
schema registry (Confluent wire format) and print it.

Positions (--from, --to):
  earliest              the oldest record still in each partition
  latest                the end of each partition (the next record written)
  <offset>              an absolute offset, e.g. 1500
  -<N>                  N records before the end of each partition, e.g. -20
  <RFC 3339 time>       the first record at or after it, e.g. 2026-11-23T06:00:00Z
  -<duration>           that long before now, e.g. -10m, -2h, -1h30m
--from is inclusive and --to exclusive: --from 100 --to 200 prints offsets
100 to 199 of each partition. Without --to, tail follows the topics (like
tail -f) from --from, which defaults to latest; with --to, or --follow=false,
it stops at the end position (the end offsets at start, by default) and
--from defaults to earliest.

Filters combine with AND: --key (any of the given keys), --header k=v (repeat
for several), and --where, a condition in drover's query language (the WHERE of stream
apps, see drover apps). Nested fields by path (attrs.site), numbers and
strings compare as expected (value > 39.5, metric = 'temp', metric IN
('temp', 'hum'), value BETWEEN 1 AND 3, unit IS NULL, ts > ago('5m'));
==, !=, &&, || and [a, b] lists work too; the record itself is available
as _key, _topic, _partition, _offset, _timestamp and _headers.
'path=value' with one '=' is shorthand for path = 'value' (or = number).
A field that no topic's
schema has (a typo) is an error naming the schema's fields; a record whose
fields do not fit an expression (a null compared with a number) is skipped.

Output: an aligned table (time, partition/offset, key, the main fields) when
stdout is a terminal, JSON lines otherwise, so it pipes into jq; --format
forces json, table or raw (the value bytes as stored, one per line). A value
that does not decode is shown as base64 with a hex excerpt and the reason;
tail never stops on a bad record. On dlq.events rows show the stage, reason,
source and a payload excerpt.

Ctrl-C stops cleanly; the counts of records shown and skipped go to stderr.`,
		Example: `  # follow raw.sensor as it arrives
  drover tail raw.sensor

  # the last 10 minutes of two topics, then stop
  drover tail raw.sensor raw.gps --from -10m --to latest

  # hot readings of one device, as JSON for jq
  drover tail raw.sensor --from earliest --key demo/collar-0042 \
      --where 'metric=temperature' --where 'value > 39.5' --format json | jq .value.value

  # a time window on partitions 0 and 3, at most 100 records
  drover tail features.events --from 2026-11-23T06:00:00Z --to 2026-11-23T07:00:00Z --partitions 0,3 -n 100

  # why records were dead-lettered in the last hour
  drover tail dlq.events --from -1h --where 'stage == "validate"'`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeTopics,
		RunE: func(cmd *cobra.Command, args []string) error {
			followSet := cmd.Flags().Changed("follow")
			stats, err := o.run(cmd.Context(), args, followSet, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if stats != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "drover tail: %s\n", stats)
			}
			return err
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&o.from, "from", "", "start position: earliest, latest, <offset>, -<N>, <RFC 3339 time> or -<duration> (default latest when following, else earliest)")
	fs.StringVar(&o.to, "to", "", "end position (exclusive), same forms as --from; tail stops there (default: follow)")
	fs.BoolVarP(&o.follow, "follow", "f", true, "keep waiting for new records (the default without --to); --follow=false stops at the current end")
	fs.Int64VarP(&o.limit, "max-records", "n", 0, "stop after printing N records (0 = no limit)")
	fs.Int32SliceVarP(&o.partitions, "partitions", "p", nil, "only these partitions, comma separated (empty = all)")
	fs.StringSliceVarP(&o.keys, "key", "k", nil, "only records with this key (repeat or comma-separate for any of several)")
	fs.StringArrayVar(&o.headers, "header", nil, "only records with header k=v (repeat: all must match)")
	fs.StringArrayVarP(&o.wheres, "where", "w", nil, "only records whose decoded value satisfies this expression (repeat: all must hold)")
	fs.StringVarP(&o.format, "format", "o", "", "output: json, table or raw (default table on a terminal, json otherwise)")
	fs.DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long to wait for Kafka to answer setup requests")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{FormatJSON, FormatTable, FormatRaw}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("from", completePositions)
	_ = cmd.RegisterFlagCompletionFunc("to", completePositions)
	return cmd
}

// plan is a validated tail: what to read and how to print it.
type plan struct {
	topics []string
	start  map[partitionKey]int64
	end    map[partitionKey]int64 // nil when following
	filter *Filter
	format string
	limit  int64
	decode bool
	termW  int
	now    func() time.Time
}

func (o *tailOptions) run(ctx context.Context, topicNames []string, followSet bool, out, errOut io.Writer) (*TailStats, error) {
	// Flags first: every usage error before any connection.
	if o.timeout <= 0 {
		return nil, cli.Usagef("--timeout: must be > 0, got %s", o.timeout)
	}
	if o.limit < 0 {
		return nil, cli.Usagef("--max-records (-n): must be ≥ 0, got %d", o.limit)
	}
	format := strings.ToLower(o.format)
	switch format {
	case "":
		format = FormatJSON
		if isTerminal(out) {
			format = FormatTable
		}
	case FormatJSON, FormatTable, FormatRaw:
	default:
		return nil, cli.Usagef("--format: unknown format %q (want json, table or raw)", o.format)
	}
	for _, p := range o.partitions {
		if p < 0 {
			return nil, cli.Usagef("--partitions: %d is not a partition number", p)
		}
	}
	seen := map[string]bool{}
	for _, t := range topicNames {
		if strings.TrimSpace(t) == "" {
			return nil, cli.Usagef("topic name is empty")
		}
		if seen[t] {
			return nil, cli.Usagef("topic %q given twice", t)
		}
		seen[t] = true
	}
	now := o.now()
	bounded := o.to != "" || (followSet && !o.follow)
	if o.to != "" && followSet && o.follow {
		return nil, cli.Usagef("--follow and --to exclude each other: --to sets where tail stops")
	}
	fromSpec := o.from
	if fromSpec == "" {
		fromSpec = "latest"
		if bounded {
			fromSpec = "earliest"
		}
	}
	from, err := ParsePosition(fromSpec, now)
	if err != nil {
		return nil, cli.Usagef("--from: %w", err)
	}
	var to Position
	if bounded {
		toSpec := o.to
		if toSpec == "" {
			toSpec = "latest"
		}
		if to, err = ParsePosition(toSpec, now); err != nil {
			return nil, cli.Usagef("--to: %w", err)
		}
	}
	filter, err := NewFilter(o.keys, o.headers, o.wheres)
	if err == nil {
		err = filter.CheckFields(topicNames)
	}
	if err != nil {
		return nil, cli.Usagef("%w", err)
	}

	// Connect and check what the flags name exists.
	adm, err := connect(ctx, o.conn, o.timeout)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	sctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	parts, err := selectPartitions(sctx, adm, topicNames, o.partitions)
	if err != nil {
		return nil, err
	}
	b, err := listBounds(sctx, adm, topicNames)
	if err != nil {
		return nil, err
	}
	for k := range b {
		if !parts[k] {
			delete(b, k)
		}
	}
	p := &plan{topics: topicNames, filter: filter, format: format, limit: o.limit, termW: terminalWidth(out), now: o.now}
	if p.start, err = from.resolve(sctx, adm, b); err != nil {
		return nil, err
	}
	if bounded {
		if p.end, err = to.resolve(sctx, adm, b); err != nil {
			return nil, err
		}
	}
	p.decode = format != FormatRaw || filter.NeedsValue()
	var serde *schemas.Serde
	if p.decode {
		reg, err := o.conn.Registry()
		if err != nil {
			return nil, err
		}
		if serde, err = schemas.NewSerde(reg); err != nil {
			return nil, err
		}
	}
	cancel()
	stats := &TailStats{}
	err = consume(ctx, o.conn, p, serde, out, errOut, stats)
	return stats, err
}

// selectPartitions checks that every topic exists and every --partitions
// entry exists in every topic, and returns the partitions to read.
func selectPartitions(ctx context.Context, adm *kadm.Client, topicNames []string, only []int32) (map[partitionKey]bool, error) {
	md, err := adm.Metadata(ctx, topicNames...)
	if err != nil {
		return nil, fmt.Errorf("reading topic metadata: %w", err)
	}
	out := map[partitionKey]bool{}
	for _, t := range topicNames {
		d, ok := md.Topics[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return nil, cli.Usagef("unknown topic %q: the cluster has no such topic (see drover topics list)", t)
		}
		if d.Err != nil {
			return nil, fmt.Errorf("topic %q: %w", t, d.Err)
		}
		if len(only) == 0 {
			for p := range d.Partitions {
				out[partitionKey{t, p}] = true
			}
			continue
		}
		for _, p := range only {
			if _, ok := d.Partitions[p]; !ok {
				return nil, cli.Usagef("--partitions: topic %q has no partition %d (it has %d: 0-%d)", t, p, len(d.Partitions), len(d.Partitions)-1)
			}
			out[partitionKey{t, p}] = true
		}
	}
	return out, nil
}

// consume reads the planned partitions and prints what passes the filter.
func consume(ctx context.Context, conn *cli.Conn, p *plan, serde *schemas.Serde, out, errOut io.Writer, stats *TailStats) error {
	offsets := map[string]map[int32]kgo.Offset{}
	remaining := 0
	for k, off := range p.start {
		if p.end != nil && off >= p.end[k] {
			continue // nothing to read in this partition
		}
		if offsets[k.Topic] == nil {
			offsets[k.Topic] = map[int32]kgo.Offset{}
		}
		offsets[k.Topic][k.Partition] = kgo.NewOffset().At(off)
		remaining++
	}
	if remaining == 0 {
		return nil
	}
	cl, err := conn.Kafka(
		kgo.ConsumePartitions(offsets),
		kgo.KeepControlRecords(), // their offsets tell a bounded tail it reached the end
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(16<<20),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	w := bufio.NewWriterSize(out, 256<<10)
	defer w.Flush()
	var table *tableWriter
	if p.format == FormatTable {
		table = newTableWriter(p.topics, p.termW)
	}
	done := map[partitionKey]bool{}
	var buf []byte
	var d decoded
	env := map[string]any{}
	warned := false
	// JSON without --where takes the fast path: Avro straight to JSON.
	fast := p.format == FormatJSON && !p.filter.NeedsValue()
	tcs := map[int]transcoder{}
	reported := map[string]bool{}
	schemaErrs := &schemaFailures{now: p.now, last: map[int]schemaFailure{}}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil // Ctrl-C: stop cleanly, the caller prints the counts
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				return nil
			}
			msg := fmt.Sprintf("%s[%d]: %v", fe.Topic, fe.Partition, fe.Err)
			if !reported[msg] { // once per distinct error, not once per poll
				reported[msg] = true
				fmt.Fprintf(errOut, "drover tail: %s\n", msg)
			}
		}
		stop := false
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if stop {
				return
			}
			k := partitionKey{fp.Topic, fp.Partition}
			if done[k] {
				return
			}
			end, bounded := p.end[k]
			for _, r := range fp.Records {
				if bounded && r.Offset >= end {
					break
				}
				if r.Attrs.IsControl() {
					if bounded && r.Offset+1 >= end {
						break
					}
					continue
				}
				if !p.filter.MatchMeta(r.Key, headerSeq(r)) {
					stats.Skipped++
				} else {
					d = decoded{rec: r}
					if fast {
						buf, d.fast = fastJSON(ctx, buf[:0], r, serde, tcs, schemaErrs)
					}
					if p.decode && !d.fast {
						decodeRecord(ctx, serde, schemaErrs, &d)
					}
					ok := true
					if p.filter.NeedsValue() {
						var werr error
						ok, werr = matchWhere(p.filter, &d, env)
						if werr != nil && !warned {
							warned = true
							fmt.Fprintf(errOut, "drover tail: note: %v (such records are skipped)\n", werr)
						}
					}
					if !ok {
						stats.Skipped++
					} else {
						switch p.format {
						case FormatRaw:
							buf = append(append(buf[:0], r.Value...), '\n')
						case FormatTable:
							buf = table.appendRow(buf[:0], &d)
						default:
							if d.fast {
								break // the fast path wrote buf already
							}
							buf = appendJSONLine(buf[:0], &d)
						}
						if _, err := w.Write(buf); err != nil {
							stop = true
							return
						}
						stats.Shown++
						if d.err != nil {
							stats.Undecodable++
						}
						if p.limit > 0 && stats.Shown >= p.limit {
							stop = true
							return
						}
					}
				}
			}
			if bounded && len(fp.Records) > 0 && fp.Records[len(fp.Records)-1].Offset+1 >= end {
				done[k] = true
				remaining--
				cl.PauseFetchPartitions(map[string][]int32{k.Topic: {k.Partition}})
			}
		})
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing output: %w", err)
		}
		if stop || (p.end != nil && remaining == 0) {
			return nil
		}
	}
}

// fastJSON appends r's JSON line using a transcoder compiled once per
// writer schema (cached in tcs). It reports false, having appended
// nothing, when the record needs the generic path: a dead letter (its view
// adds a payload excerpt), a tombstone, or a value that does not decode
// (the generic path explains why).
func fastJSON(ctx context.Context, b []byte, r *kgo.Record, serde *schemas.Serde, tcs map[int]transcoder, fails *schemaFailures) ([]byte, bool) {
	if r.Value == nil || r.Topic == topics.DLQ {
		return b, false
	}
	id, body, err := schemas.ParseHeader(r.Value)
	if err != nil {
		return b, false
	}
	tc, ok := tcs[id]
	if !ok && fails.recent(id) != nil {
		return b, false
	}
	if !ok {
		sch, err := serde.WriterSchema(ctx, id)
		if err != nil {
			return b, false // not cached: a registry hiccup is retried
		}
		tc = newTranscoder(sch)
		tcs[id] = tc
	}
	if tc == nil {
		return b, false
	}
	start := len(b)
	b = appendEnvelope(b, r)
	b = append(b, `,"schema_id":`...)
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, `,"value":`...)
	rd := avroReader{buf: body}
	b = tc(b, &rd)
	if rd.err != nil {
		return b[:start], false
	}
	return append(b, '}', '\n'), true
}

// headerSeq iterates a record's headers as strings.
func headerSeq(r *kgo.Record) func(yield func(k, v string) bool) {
	return func(yield func(k, v string) bool) {
		for _, h := range r.Headers {
			if !yield(h.Key, string(h.Value)) {
				return
			}
		}
	}
}

// decodeRecord decodes d.rec's value into d; failures are kept in d.err
// with a reason a human can act on.
func decodeRecord(ctx context.Context, serde *schemas.Serde, fails *schemaFailures, d *decoded) {
	v := d.rec.Value
	if v == nil {
		d.tomb = true
		return
	}
	if id, _, err := schemas.ParseHeader(v); err == nil {
		if ferr := fails.recent(id); ferr != nil {
			d.schemaID, d.err = id, ferr
			return
		}
		if _, err := serde.WriterSchema(ctx, id); err != nil {
			fails.add(id, err)
		}
	}
	id, val, err := serde.DecodeAny(ctx, v)
	d.schemaID = id
	if err != nil {
		var use *schemas.UnknownSchemaError
		switch {
		case errors.Is(err, schemas.ErrNotWireFormat):
			detail := strings.TrimPrefix(err.Error(), schemas.ErrNotWireFormat.Error()+": ")
			d.err = fmt.Errorf("not Avro in the Confluent wire format (%s)", detail)
		case errors.As(err, &use):
			if use.Err != nil {
				d.err = fmt.Errorf("schema id %d is not in the registry (%v)", use.ID, use.Err)
			} else {
				d.err = fmt.Errorf("schema id %d is not in the registry", use.ID)
			}
		default:
			// hamba/avro prefixes the Go type at each level; drop it.
			d.err = errors.New(strings.ReplaceAll(err.Error(), "map[string]interface {}: ", ""))
		}
		return
	}
	sch, err := serde.WriterSchema(ctx, id)
	if err != nil {
		d.err = err
		return
	}
	d.schema, d.value = sch, val
}

// schemaRetry is how long a schema id the registry could not resolve is
// not asked for again: records with that id are shown raw with the same
// reason meanwhile, so a registry outage does not cost a request per record.
const schemaRetry = 5 * time.Second

type schemaFailure struct {
	at  time.Time
	err error
}

// schemaFailures remembers recent registry failures per schema id.
type schemaFailures struct {
	now  func() time.Time
	last map[int]schemaFailure
}

func (f *schemaFailures) recent(id int) error {
	if f == nil {
		return nil
	}
	sf, ok := f.last[id]
	if !ok || f.now().Sub(sf.at) >= schemaRetry {
		return nil
	}
	return sf.err
}

func (f *schemaFailures) add(id int, err error) {
	if f == nil {
		return
	}
	var use *schemas.UnknownSchemaError
	if errors.As(err, &use) {
		if use.Err != nil {
			err = fmt.Errorf("schema id %d is not in the registry (%v)", use.ID, use.Err)
		} else {
			err = fmt.Errorf("schema id %d is not in the registry", use.ID)
		}
	}
	f.last[id] = schemaFailure{at: f.now(), err: err}
}

// matchWhere evaluates the --where filters on d, with the record's
// metadata beside the value's fields.
func matchWhere(f *Filter, d *decoded, env map[string]any) (bool, error) {
	if d.err != nil || d.tomb {
		return false, nil
	}
	r := d.rec
	m, isMap := d.value.(map[string]any)
	if !isMap {
		clear(env)
		env["_value"] = d.value
		m = env
	}
	hs := make(map[string]any, len(r.Headers))
	for _, h := range r.Headers {
		hs[h.Key] = string(h.Value)
	}
	meta := map[string]any{
		"_key": string(r.Key), "_topic": r.Topic, "_partition": int(r.Partition),
		"_offset": r.Offset, "_timestamp": r.Timestamp, "_headers": hs,
	}
	var shadowed map[string]any
	for k, v := range meta {
		if old, ok := m[k]; ok && isMap {
			if shadowed == nil {
				shadowed = map[string]any{}
			}
			shadowed[k] = old
		}
		m[k] = v
	}
	ok, err := f.MatchValue(m)
	if isMap {
		for k := range meta {
			delete(m, k)
		}
		for k, v := range shadowed {
			m[k] = v
		}
	}
	return ok, err
}

// completeTopics completes topic names from the catalogue.
func completeTopics(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	cat, err := topics.Default()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := slices.DeleteFunc(cat.Names(), func(n string) bool { return slices.Contains(args, n) })
	return names, cobra.ShellCompDirectiveNoFileComp
}

func completePositions(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"earliest", "latest", "-10m", "-1h", "-100", time.Now().UTC().Add(-time.Hour).Truncate(time.Hour).Format(time.RFC3339)}, cobra.ShellCompDirectiveNoFileComp
}
