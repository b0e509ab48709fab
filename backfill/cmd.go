package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultStateDir holds backfill checkpoints unless --state-dir says
// otherwise.
const DefaultStateDir = ".drover/backfill"

// ParseTime parses a window bound: RFC 3339 (2026-11-23T05:00:00Z), or
// UTC "2026-11-23T05:00" or "2026-11-23".
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (want RFC 3339 like 2026-11-23T05:00:00Z, or 2026-11-23T05:00, or 2026-11-23; UTC)", s)
}

// MediaOptions are the flags of `drover backfill media`.
type MediaOptions struct {
	WindowStart, WindowEnd string
	// Window is a relative window (previous-hour, previous-day,
	// last:<duration>) resolved against Now; it replaces WindowStart/End.
	Window string
	// Now is the clock for Window (default time.Now).
	Now              func() time.Time
	Buckets          []string
	Prefix           string
	DryRun           bool
	Rate             float64
	StateDir         string
	MappingFile      string
	Concurrency      int
	NoPrune          bool
	ProgressInterval time.Duration
	Progress         string // auto, bar, log, none
	Creds            S3Credentials
	// KafkaOpts are appended to the Kafka client's options (hooks such as
	// the stage's kprom metrics); nil = none.
	KafkaOpts []kgo.Opt
}

// BackfillCommand returns `drover backfill` with its subcommand `media`.
func BackfillCommand(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backfill",
		Short: "Bounded replay jobs: publish S3 media metadata of a time window",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(mediaBackfillCommand(conn))
	return cmd
}

func mediaBackfillCommand(conn *cli.Conn) *cobra.Command {
	var o MediaOptions
	cmd := &cobra.Command{
		Use:   "media",
		Short: "Publish raw.*.meta records (replayed=true) for S3 objects last modified in [--window-start, --window-end)",
		Long: `media lists the objects of the buckets with ListObjectsV2 (never downloading
a body; HeadObject only when the key layout does not name kind, tenant and
device), keeps those whose LastModified lies in [--window-start, --window-end)
and publishes one raw.{kind}.meta record per object, with replayed=true, key =
device id and an event_id from bucket, key and ETag: the same record the live
media stage writes, so a replay is idempotent downstream.

With a date-partitioned key layout (see --mapping; default
{kind}/{tenant}/{device}/YYYY/MM/DD/...) only the window's date partitions are
listed. Objects that cannot be mapped go to dlq.events (stage backfill) with a
reason and are counted as unmappable.

Progress is checkpointed under --state-dir: a killed job run again with the
same arguments continues where Kafka last acknowledged. The summary (listed,
matched, published, skipped, unmappable, errors) is printed as JSON on stdout;
the exit code is 1 when any object failed.`,
		Example: `  # the previous day, from the embedded stack's bucket
  drover backfill media --window-start 2026-11-22 --window-end 2026-11-23

  # the previous whole hour (UTC), e.g. from a Kubernetes CronJob
  drover backfill media --window previous-hour

  # what would an hour of one tenant publish?
  drover backfill media --window-start 2026-11-23T05:00:00Z --window-end 2026-11-23T06:00:00Z \
      --bucket cams --prefix image2d/farm-1/ --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMediaBackfill(cmd.Context(), conn, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	conn.AddS3Flags(fs)
	o.Creds.AddFlags(fs)
	fs.StringVar(&o.WindowStart, "window-start", "", "window start, inclusive (RFC 3339, or 2026-11-23T05:00 / 2026-11-23 in UTC); required")
	fs.StringVar(&o.WindowEnd, "window-end", "", "window end, exclusive; required")
	fs.StringVar(&o.Window, "window", "", "relative window instead of --window-start/--window-end: previous-hour, previous-day (UTC) or last:<duration> (for CronJobs)")
	fs.StringSliceVar(&o.Buckets, "bucket", nil, "bucket to list (repeatable; default: the mapping's buckets, drover-media)")
	fs.StringVar(&o.Prefix, "prefix", "", "list only keys under this prefix")
	fs.BoolVar(&o.DryRun, "dry-run", false, "list and map, publish nothing and write no checkpoint")
	fs.Float64Var(&o.Rate, "rate", 0, "at most this many objects per second (0 = no limit)")
	fs.StringVar(&o.StateDir, "state-dir", DefaultStateDir, "directory of the resumable checkpoints (empty = no checkpoint)")
	fs.StringVar(&o.MappingFile, "mapping", "", "mapping file: key layout, extension → kind, rules (default: the embedded mapping.yaml)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "prefixes listed in parallel")
	fs.BoolVar(&o.NoPrune, "no-prune", false, "list every key under --prefix instead of the window's date partitions")
	fs.DurationVar(&o.ProgressInterval, "progress-interval", 10*time.Second, "interval of the JSON progress lines when stderr is not a terminal")
	fs.StringVar(&o.Progress, "progress", "auto", "progress display: auto (bar on a terminal, log lines otherwise), bar, log or none")
	return cmd
}

// PrepareMedia validates o and builds the job (S3 client, buckets checked,
// Kafka reachable, schemas resolvable): every bad input fails here, before
// any work. close releases the clients.
func PrepareMedia(ctx context.Context, conn *cli.Conn, o MediaOptions) (job *Job, closeFn func(), err error) {
	if o.Window != "" {
		if o.WindowStart != "" || o.WindowEnd != "" {
			return nil, nil, cli.Usagef("--window: give either --window or --window-start/--window-end, not both")
		}
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		start, end, err := WindowAt(o.Window, now())
		if err != nil {
			return nil, nil, cli.Usagef("--window: %w", err)
		}
		o.WindowStart, o.WindowEnd = start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano)
	}
	if o.WindowStart == "" {
		return nil, nil, cli.Usagef("--window-start: required")
	}
	if o.WindowEnd == "" {
		return nil, nil, cli.Usagef("--window-end: required")
	}
	start, err := ParseTime(o.WindowStart)
	if err != nil {
		return nil, nil, cli.Usagef("--window-start: %w", err)
	}
	end, err := ParseTime(o.WindowEnd)
	if err != nil {
		return nil, nil, cli.Usagef("--window-end: %w", err)
	}
	if !start.Before(end) {
		return nil, nil, cli.Usagef("--window-start %s must be before --window-end %s", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	if o.Rate < 0 {
		return nil, nil, cli.Usagef("--rate: %v is negative", o.Rate)
	}
	if o.ProgressInterval < 0 {
		return nil, nil, cli.Usagef("--progress-interval: %s is negative", o.ProgressInterval)
	}
	if o.Concurrency < 1 {
		return nil, nil, cli.Usagef("--concurrency: %d (want ≥ 1)", o.Concurrency)
	}
	switch o.Progress {
	case "auto", "bar", "log", "none":
	default:
		return nil, nil, cli.Usagef("--progress: unknown %q (want auto, bar, log or none)", o.Progress)
	}
	m := DefaultMapping()
	if o.MappingFile != "" {
		if m, err = LoadMapping(o.MappingFile); err != nil {
			return nil, nil, cli.Usagef("--mapping: %w", err)
		}
	}
	buckets := o.Buckets
	if len(buckets) == 0 {
		buckets = m.Buckets
	}
	if len(buckets) == 0 {
		return nil, nil, cli.Usagef("--bucket: required (the mapping names no default bucket)")
	}
	for _, b := range buckets {
		if strings.TrimSpace(b) == "" {
			return nil, nil, cli.Usagef("--bucket: empty bucket name")
		}
	}
	s3c, err := NewS3Client(ctx, conn, o.Creds)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := CheckBuckets(cctx, s3c, buckets); err != nil {
		return nil, nil, err
	}
	job = &Job{S3: s3c, Mapping: m, Buckets: buckets, Prefix: o.Prefix, Start: start, End: end, DryRun: o.DryRun,
		Rate: o.Rate, StateDir: o.StateDir, Concurrency: o.Concurrency, NoPrune: o.NoPrune, Log: conn.Logger()}
	closeFn = func() {}
	if !o.DryRun {
		kc, err := conn.Kafka(o.KafkaOpts...)
		if err != nil {
			return nil, nil, err
		}
		if err := conn.PingKafka(ctx, kc, 15*time.Second); err != nil {
			kc.Close()
			return nil, nil, err
		}
		reg, err := conn.Registry()
		if err != nil {
			kc.Close()
			return nil, nil, err
		}
		serde, err := schemas.NewSerde(reg, schemas.AutoRegister(true))
		if err != nil {
			kc.Close()
			return nil, nil, err
		}
		ts := []string{topics.DLQ}
		for _, k := range mediaKinds {
			t, _ := topics.MediaTopic(k)
			ts = append(ts, t)
		}
		if err := serde.Prepare(cctx, ts...); err != nil {
			kc.Close()
			return nil, nil, fmt.Errorf("schema registry %s: %w", conn.SchemaRegistryURL, err)
		}
		job.Kafka, job.Serde = kc, serde
		closeFn = kc.Close
	}
	return job, closeFn, nil
}

func runMediaBackfill(ctx context.Context, conn *cli.Conn, o MediaOptions, stdout, stderr io.Writer) error {
	job, closeFn, err := PrepareMedia(ctx, conn, o)
	if err != nil {
		return err
	}
	defer closeFn()
	stop := showProgress(o, job, conn.Logger(), stderr)
	start := time.Now()
	sum, err := job.Run(ctx)
	stop()
	log := conn.Logger()
	log.Info("backfill summary", "listed", sum.Listed, "matched", sum.Matched, "published", sum.Published,
		"skipped", sum.Skipped, "unmappable", sum.Unmappable, "errors", sum.Errors, "resumed_prefixes", sum.Resumed,
		"dry_run", sum.DryRun, "took", time.Since(start).Round(time.Millisecond).String())
	b, _ := json.Marshal(sum)
	fmt.Fprintln(stdout, string(b))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w; progress is checkpointed: run again with the same arguments to continue", ErrInterrupted)
	}
	if errors.Is(err, ErrJobFailed) {
		return fmt.Errorf("%w: %d errors (see the log); run again with the same arguments to retry what failed", err, sum.Errors)
	}
	return err
}

// showProgress shows a bar (over planned prefixes) on a terminal, or logs
// a JSON progress line every interval; the returned func stops it.
func showProgress(o MediaOptions, job *Job, log *slog.Logger, stderr io.Writer) func() {
	mode := o.Progress
	if mode == "auto" {
		mode = "log"
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	switch mode {
	case "none":
		close(finished)
	case "bar":
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("backfill"),
			progressbar.OptionShowCount(), progressbar.OptionSetItsString("prefixes"), progressbar.OptionShowIts(),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
		go func() {
			defer close(finished)
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				s := &job.Stats
				if n := s.Prefixes.Load(); n > 0 {
					bar.ChangeMax64(n)
				}
				_ = bar.Set64(s.PrefixesDone.Load())
				bar.Describe(fmt.Sprintf("listed %d  matched %d  published %d  unmappable %d  errors %d",
					s.Listed.Load(), s.Matched.Load(), s.Published.Load(), s.Unmappable.Load(), s.Errors.Load()))
				select {
				case <-done:
					_ = bar.Finish()
					return
				case <-t.C:
				}
			}
		}()
	default:
		iv := o.ProgressInterval
		if iv <= 0 {
			iv = 10 * time.Second
		}
		go func() {
			defer close(finished)
			t := time.NewTicker(iv)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					s := job.Stats.Snapshot()
					log.Info("backfill progress", "prefixes_done", job.Stats.PrefixesDone.Load(), "prefixes", s.Prefixes,
						"listed", s.Listed, "matched", s.Matched, "published", s.Published, "unmappable", s.Unmappable, "errors", s.Errors)
				}
			}
		}()
	}
	return func() { close(done); <-finished }
}
