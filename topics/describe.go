package topics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/cli"
)

// Description is what `drover topics describe` reports about one topic.
type Description struct {
	Name        string `json:"name"`
	ID          string `json:"id,omitempty"`
	Internal    bool   `json:"internal,omitempty"`
	Replication int    `json:"replication"`
	// Partitions are sorted by number.
	Partitions []PartitionDescription `json:"partitions"`
	// Configs are the topic's configs that are not broker defaults, plus
	// every config the catalogue manages, sorted by key.
	Configs []ConfigDescription `json:"configs"`
	// Records is the sum over partitions of end minus start offsets (an
	// upper bound on a compacted topic).
	Records int64 `json:"records"`
	// Bytes is the size on disk summed over replicas' log directories;
	// -1 when the cluster does not report it.
	Bytes int64 `json:"bytes"`
	// Schema is the latest version of the topic's value subject, nil when
	// the subject is missing or the registry could not be asked (see
	// SchemaNote).
	Schema     *SchemaVersion `json:"schema,omitempty"`
	SchemaNote string         `json:"schema_note,omitempty"`
	// InCatalogue says whether the catalogue manages the topic; Drift is
	// what Diff reports for it (empty when the topic matches).
	InCatalogue bool     `json:"in_catalogue"`
	Description string   `json:"description,omitempty"`
	Drift       []string `json:"drift"`
}

// PartitionDescription is one partition of a Description.
type PartitionDescription struct {
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
	Offline   []int32 `json:"offline,omitempty"`
	Start     int64   `json:"start_offset"`
	End       int64   `json:"end_offset"`
	// Bytes is the partition's size summed over its replicas; -1 unknown.
	Bytes int64  `json:"bytes"`
	Error string `json:"error,omitempty"`
}

// ConfigDescription is one topic config and where its value comes from.
type ConfigDescription struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
	// Catalogue is the catalogue's value for a config it manages.
	Catalogue string `json:"catalogue,omitempty"`
}

// SchemaVersion is a registry subject's latest version.
type SchemaVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	Type    string `json:"type"`
}

// ErrUnknownTopic is wrapped when the cluster has no topic of the name.
var ErrUnknownTopic = errors.New("unknown topic")

// Describe gathers a Description of topic: metadata, configs, offsets and
// sizes from the cluster, the latest schema of its value subject from reg
// (nil = skip), and its drift against cat (nil = skip). Parts the cluster
// or registry cannot answer are noted, not fatal; a topic the cluster does
// not have wraps ErrUnknownTopic.
func Describe(ctx context.Context, adm *kadm.Client, reg *sr.Client, cat *Catalogue, topic string) (Description, error) {
	d := Description{Name: topic, Bytes: -1, Drift: []string{}}
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return d, fmt.Errorf("reading metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return d, fmt.Errorf("%w %q: the cluster has no such topic", ErrUnknownTopic, topic)
	}
	if td.Err != nil {
		return d, fmt.Errorf("topic %q: metadata: %w", topic, td.Err)
	}
	d.ID, d.Internal, d.Replication = td.ID.String(), td.IsInternal, td.Partitions.NumReplicas()
	if d.ID == "AAAAAAAAAAAAAAAAAAAAAA" {
		d.ID = ""
	}
	starts, serr := adm.ListStartOffsets(ctx, topic)
	ends, eerr := adm.ListEndOffsets(ctx, topic)
	if err := errors.Join(serr, eerr); err != nil {
		return d, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	sizes := map[int32]int64{}
	haveSizes := false
	if dirs, err := adm.DescribeAllLogDirs(ctx, kadm.TopicsSet{topic: nil}); err == nil {
		dirs.Each(func(ld kadm.DescribedLogDir) {
			if ld.Err != nil {
				return
			}
			for _, p := range ld.Topics[topic] {
				sizes[p.Partition] += p.Size
				haveSizes = true
			}
		})
	}
	if haveSizes {
		d.Bytes = 0
	}
	for _, p := range td.Partitions.Sorted() {
		pd := PartitionDescription{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR, Offline: p.OfflineReplicas, Bytes: -1}
		if p.Err != nil {
			pd.Error = p.Err.Error()
		}
		if o, ok := starts.Lookup(topic, p.Partition); ok && o.Err == nil {
			pd.Start = o.Offset
		}
		if o, ok := ends.Lookup(topic, p.Partition); ok && o.Err == nil {
			pd.End = o.Offset
		}
		if haveSizes {
			pd.Bytes = sizes[p.Partition]
			d.Bytes += pd.Bytes
		}
		d.Records += pd.End - pd.Start
		d.Partitions = append(d.Partitions, pd)
	}

	var want Topic
	if cat != nil {
		want, d.InCatalogue = cat.Lookup(topic)
		d.Description = want.Description
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(topic, nil); err == nil {
			err = rc.Err
		}
		for _, c := range rc.Configs {
			managed, isManaged := want.Configs[c.Key]
			if c.Source == kmsg.ConfigSourceDefaultConfig && !isManaged {
				continue
			}
			d.Configs = append(d.Configs, ConfigDescription{Key: c.Key, Value: c.MaybeValue(), Source: configSource(c.Source), Catalogue: managed})
		}
	}
	if err != nil {
		return d, fmt.Errorf("describing configs of %s: %w", topic, err)
	}
	slices.SortFunc(d.Configs, func(a, b ConfigDescription) int { return strings.Compare(a.Key, b.Key) })

	if d.InCatalogue {
		plan, err := Diff(ctx, adm, &Catalogue{Topics: []Topic{want}})
		if err != nil {
			return d, err
		}
		for _, c := range plan.Changes {
			d.Drift = append(d.Drift, c.String())
		}
	}
	if d.InCatalogue && want.Internal() {
		d.SchemaNote = "format goka: a processor group's table or loop, in the group's own codec (no registered schema)"
		return d, nil
	}
	if reg != nil {
		subject := topic + "-value"
		ss, err := reg.SchemaByVersion(ctx, subject, -1)
		var re *sr.ResponseError
		switch {
		case err == nil:
			typ := ss.Type.String()
			d.Schema = &SchemaVersion{Subject: ss.Subject, Version: ss.Version, ID: ss.ID, Type: typ}
		case errors.As(err, &re) && re.StatusCode == http.StatusNotFound:
			d.SchemaNote = "subject " + subject + " is not registered"
		default:
			d.SchemaNote = "schema registry: " + err.Error()
		}
	}
	return d, nil
}

// configSource names a config source the way kafka-configs.sh does.
func configSource(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "topic"
	case kmsg.ConfigSourceDynamicBrokerConfig:
		return "broker"
	case kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "cluster default"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "broker static"
	case kmsg.ConfigSourceDefaultConfig:
		return "default"
	}
	return strings.ToLower(s.String())
}

// WriteDescription prints d for a human.
func WriteDescription(w io.Writer, d Description) error {
	bw := &errWriter{w: w}
	fmt.Fprintf(bw, "Topic:        %s\n", d.Name)
	if d.ID != "" {
		fmt.Fprintf(bw, "ID:           %s\n", d.ID)
	}
	size := "unknown"
	if d.Bytes >= 0 {
		size = humanBytes(d.Bytes)
	}
	fmt.Fprintf(bw, "Partitions:   %d (replication %d)\n", len(d.Partitions), d.Replication)
	fmt.Fprintf(bw, "Records:      %d (end minus start offsets), size %s\n", d.Records, size)
	switch {
	case d.Schema != nil:
		fmt.Fprintf(bw, "Schema:       %s version %d, id %d (%s)\n", d.Schema.Subject, d.Schema.Version, d.Schema.ID, d.Schema.Type)
	case d.SchemaNote != "":
		fmt.Fprintf(bw, "Schema:       %s\n", d.SchemaNote)
	}
	switch {
	case !d.InCatalogue:
		fmt.Fprintf(bw, "Catalogue:    not in the catalogue (unmanaged)\n")
	case len(d.Drift) == 0:
		fmt.Fprintf(bw, "Catalogue:    matches (%s)\n", d.Description)
	default:
		fmt.Fprintf(bw, "Catalogue:    %d difference(s) (%s)\n", len(d.Drift), d.Description)
		for _, c := range d.Drift {
			fmt.Fprintf(bw, "  %s\n", c)
		}
	}
	fmt.Fprintln(bw)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND\tRECORDS\tSIZE")
	for _, p := range d.Partitions {
		sz := "-"
		if p.Bytes >= 0 {
			sz = humanBytes(p.Bytes)
		}
		isr := ints(p.ISR)
		if len(p.Offline) > 0 {
			isr += " (offline " + ints(p.Offline) + ")"
		}
		if p.Error != "" {
			isr += " error: " + p.Error
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Partition, p.Leader, ints(p.Replicas), isr, p.Start, p.End, p.End-p.Start, sz)
	}
	_ = tw.Flush()
	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tVALUE\tSOURCE\tCATALOGUE")
	for _, c := range d.Configs {
		cv := c.Catalogue
		if cv == "" {
			cv = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Key, c.Value, c.Source, cv)
	}
	_ = tw.Flush()
	return bw.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func ints(v []int32) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(int(n))
	}
	return strings.Join(s, ",")
}

// humanBytes renders a size: 512 B, 1.5 KiB, 20.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (o *cmdOptions) describeCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "describe TOPIC",
		Short: "Show a topic: partitions, leaders, offsets, sizes, configs, schema and catalogue drift",
		Long: `Describe one topic on the cluster: partition count and replication; per
partition the leader, replicas, in-sync replicas, start and end offsets,
record count and size on disk (when the cluster reports log dirs); the
configs that are not broker defaults plus every config the catalogue
manages, with where each value comes from; the latest version and id of the
topic's value subject (TOPIC-value) in the schema registry; and how the
topic differs from the catalogue (the lines 'drover topics diff' would print
for it).

A topic the cluster does not have is a usage error (exit 2). The registry
is optional: when it cannot be reached the schema line says so.`,
		Example: `  drover topics describe raw.sensor
  drover topics describe state.latest --replication-cap 1
  drover topics describe dlq.events --format json | jq .partitions`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeTopicNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return cli.Usagef("--format: unknown format %q (want text or json)", format)
			}
			cat, err := o.load()
			if err != nil {
				return err
			}
			reg, err := o.conn.Registry()
			if err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				dctx, cancel := context.WithTimeout(ctx, o.timeout)
				defer cancel()
				d, err := Describe(dctx, adm, reg, cat, args[0])
				if errors.Is(err, ErrUnknownTopic) {
					return cli.Usagef("%w (see drover topics list)", err)
				}
				if err != nil {
					return o.kafkaErr(err)
				}
				if format == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(d)
				}
				return WriteDescription(cmd.OutOrStdout(), d)
			})
		},
	}
	o.kafkaFlags(cmd)
	o.conn.AddRegistryFlags(cmd.Flags())
	cmd.Flags().StringVarP(&format, "format", "o", "text", "output: text or json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// completeTopicNames completes the catalogue's topic names.
func (o *cmdOptions) completeTopicNames(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cat, err := o.load()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return slices.Sorted(maps.Keys(setOf(cat.Names()))), cobra.ShellCompDirectiveNoFileComp
}

func setOf(names []string) map[string]struct{} {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[n] = struct{}{}
	}
	return m
}
