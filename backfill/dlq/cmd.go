package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultStateFile remembers re-driven dead letters.
const DefaultStateFile = ".drover/backfill/dlq-redriven.txt"

// ParseSince parses --since/--until: a duration back from now (24h, 90m)
// or a time (RFC 3339, 2026-11-23T05:00, 2026-11-23; UTC).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must be positive", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor a time (2026-11-23T05:00:00Z)", s)
}

// DLQCommand returns `drover dlq` with stats and redrive.
func DLQCommand(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Inspect and re-drive dead letters (dlq.events)", Args: cobra.NoArgs}
	cmd.AddCommand(statsCommand(conn), redriveCommand(conn))
	return cmd
}

func clients(ctx context.Context, conn *cli.Conn) (*schemas.Serde, func(), error) {
	serde, err := schemas.ConnSerde(conn)
	if err != nil {
		return nil, nil, err
	}
	return serde, func() {}, nil
}

func statsCommand(conn *cli.Conn) *cobra.Command {
	var since, topic, format string
	var examples int
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count dead letters by stage, reason and source, with examples",
		Example: `  drover dlq stats --since 24h
  drover dlq stats --since 2026-11-22 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := ParseSince(since, time.Now())
			if err != nil {
				return cli.Usagef("--since: %w", err)
			}
			if format != "text" && format != "json" {
				return cli.Usagef("--format: unknown %q (want text or json)", format)
			}
			if examples < 0 {
				return cli.Usagef("--examples: %d is negative (want 0 or more messages per reason)", examples)
			}
			ctx := cmd.Context()
			kc, err := conn.Kafka()
			if err != nil {
				return err
			}
			defer kc.Close()
			if err := conn.PingKafka(ctx, kc, 15*time.Second); err != nil {
				return err
			}
			serde, done, err := clients(ctx, conn)
			if err != nil {
				return err
			}
			defer done()
			s, err := Stats(ctx, kc, serde, topic, from, examples)
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return cli.Usagef("--topic: unknown topic %q: the cluster has no such topic (see drover topics list)", topic)
			}
			if err != nil {
				return err
			}
			return printStats(cmd.OutOrStdout(), s, format, from)
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&since, "since", "24h", "dead letters since: a duration back from now or a time")
	fs.StringVar(&topic, "topic", topics.DLQ, "dead-letter topic")
	fs.IntVar(&examples, "examples", 3, "example messages per reason")
	fs.StringVar(&format, "format", "text", "output: text or json")
	return cmd
}

func printStats(w io.Writer, s Summary, format string, since time.Time) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(s)
	}
	fmt.Fprintf(w, "%d dead letters since %s\n", s.Total, since.Format(time.RFC3339))
	for _, sec := range []struct {
		title string
		rows  []Count
	}{{"by stage", s.ByStage}, {"by stage/reason", s.ByReason}, {"by source", s.BySource}} {
		if len(sec.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", sec.title)
		for _, c := range sec.rows {
			fmt.Fprintf(w, "  %8d  %s\n", c.Count, c.Key)
			for _, e := range c.Examples {
				fmt.Fprintf(w, "            e.g. %s\n", e)
			}
		}
	}
	return nil
}

func redriveCommand(conn *cli.Conn) *cobra.Command {
	var since, until, reason, routesFile, stateFile, regMode, regTopic string
	var dryRun bool
	var maxAge, maxFuture time.Duration
	cmd := &cobra.Command{
		Use:   "redrive",
		Short: "Re-run decode and validation on dead letters; publish what now passes to its raw topic",
		Long: `redrive reads dlq.events in [--since, --until), re-runs the bridge's routing,
decoding and validation with the current code, routes and schemas on each dead
letter of stage decode, validate, route or produce, and produces the records of
those that now pass to their raw topic, with the bridge's deterministic event
ids (a record re-driven twice is the same record). Dead letters that still fail
stay where they are: redrive never writes to the DLQ. The device registry is
checked as the bridge checks it (--registry): a letter of a device that is
still unknown, suspended or revoked still fails. Re-driven ids are
remembered in --state-file, so running it again writes nothing new.`,
		Example: `  # after deploying a decoder fix
  drover dlq redrive --since 2026-11-22 --reason senml_unknown_unit --dry-run
  drover dlq redrive --since 2026-11-22 --reason senml_unknown_unit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := redriveOptions(since, until, reason, routesFile, stateFile, dryRun, maxAge, maxFuture, time.Now())
			if err != nil {
				return err
			}
			mode, err := ingest.ParseRegistryMode(regMode)
			if err != nil {
				return cli.Usagef("--registry %w", err)
			}
			ctx := cmd.Context()
			kc, err := conn.Kafka()
			if err != nil {
				return err
			}
			defer kc.Close()
			if err := conn.PingKafka(ctx, kc, 15*time.Second); err != nil {
				return err
			}
			serde, done, err := clients(ctx, conn)
			if err != nil {
				return err
			}
			defer done()
			o.Log = conn.Logger()
			kopts, err := conn.KafkaOpts()
			if err != nil {
				return err
			}
			actx, stopView := context.WithCancel(ctx)
			defer stopView()
			if o.Admission, err = ingest.StartAdmission(actx, kopts, serde, mode, regTopic, o.Log); err != nil {
				return err
			}
			res, err := Redrive(ctx, kc, serde, o)
			b, _ := json.Marshal(res)
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			conn.Logger().Info("redrive summary", "scanned", res.Scanned, "selected", res.Selected, "redriven", res.Redriven,
				"records", res.Records, "still_failing", res.StillFailing, "already_redriven", res.AlreadyDone, "dry_run", res.DryRun)
			return err
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&since, "since", "", "dead letters from (a duration back from now, or a time); required")
	fs.StringVar(&until, "until", "", "dead letters before (default now)")
	fs.StringVar(&reason, "reason", "", "only dead letters with this reason (one of the bridge's reasons, e.g. not_json)")
	fs.StringVar(&routesFile, "routes", "", "routes file (default: the bridge's embedded routes)")
	fs.StringVar(&stateFile, "state-file", DefaultStateFile, "file remembering re-driven dead letters (empty = none)")
	fs.BoolVar(&dryRun, "dry-run", false, "report what would pass, produce nothing")
	fs.StringVar(&regMode, "registry", string(ingest.RegistryAuto), "the bridge's device registry check: enforce (a letter of an unregistered, suspended or revoked device still fails), observe, off, or auto = enforce when the registry topic exists")
	fs.StringVar(&regTopic, "registry-topic", topics.DevicesRegistry, "the device registry's compacted topic")
	fs.DurationVar(&maxAge, "max-age", decode.DefaultLimits().MaxAge, "how far ts may lie before the original receive time")
	fs.DurationVar(&maxFuture, "max-future", decode.DefaultLimits().MaxFuture, "how far ts may lie after the original receive time")
	return cmd
}

// redriveOptions validates the redrive flags.
func redriveOptions(since, until, reason, routesFile, stateFile string, dryRun bool, maxAge, maxFuture time.Duration, now time.Time) (RedriveOptions, error) {
	var o RedriveOptions
	if since == "" {
		return o, cli.Usagef("--since: required")
	}
	var err error
	if o.Since, err = ParseSince(since, now); err != nil {
		return o, cli.Usagef("--since: %w", err)
	}
	if until != "" {
		if o.Until, err = ParseSince(until, now); err != nil {
			return o, cli.Usagef("--until: %w", err)
		}
		if !o.Since.Before(o.Until) {
			return o, cli.Usagef("--since %s must be before --until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339))
		}
	}
	if err := CheckReason(reason); err != nil {
		return o, cli.Usagef("--reason: %w", err)
	}
	if maxAge < 0 || maxFuture < 0 {
		return o, cli.Usagef("--max-age/--max-future: must not be negative")
	}
	if routesFile != "" {
		if o.Routes, err = routes.Load(routesFile); err != nil {
			return o, cli.Usagef("--routes: %w", err)
		}
	}
	lim := decode.DefaultLimits()
	lim.MaxAge, lim.MaxFuture = maxAge, maxFuture
	o.Limits = &lim
	o.Reason, o.DryRun = reason, dryRun
	if stateFile != "" {
		o.StateFile = filepath.Clean(stateFile)
	}
	return o, nil
}
