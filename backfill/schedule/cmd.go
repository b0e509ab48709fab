package schedule

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
)

// DefaultAdminAddr is where `drover schedule` serves /metrics, /healthz
// and /readyz.
const DefaultAdminAddr = ":9475"

// ScheduleCommand returns `drover schedule`.
func ScheduleCommand(conn *cli.Conn) *cobra.Command {
	var jobsFile, adminAddr, stateDir string
	var creds backfill.S3Credentials
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Run backfill and DLQ re-drive jobs on cron schedules",
		Long: `schedule runs the jobs of --jobs (YAML) on their cron expressions until
stopped, one run at a time per job (a run due while the previous one still
goes is skipped and counted), logging and counting every run
(drover_schedule_runs_total{job,result}, drover_schedule_run_seconds).

  jobs:
    - name: media-hourly
      schedule: "5 * * * *"        # cron, or @hourly, @every 10m
      type: backfill-media
      window: previous-hour         # previous-hour, previous-day, last:30m
      buckets: [drover-media]       # optional; prefix, rate, mapping, dry_run too
    - name: redrive
      schedule: "*/15 * * * *"
      type: dlq-redrive
      since: 1h                     # reason, dry_run optional`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobsFile == "" {
				return cli.Usagef("--jobs: required")
			}
			f, err := Load(jobsFile)
			if err != nil {
				return cli.Usagef("--jobs: %w", err)
			}
			log := conn.Logger()
			adm := admin.New(adminAddr, log)
			if err := adm.Listen(); err != nil {
				return cli.Usagef("--admin-addr: %w", err)
			}
			s := &Scheduler{Jobs: f.Jobs, Log: log, Run: Runner(conn, creds, stateDir, adm.KafkaRunMetrics("schedule"))}
			s.Register(adm.Registry)
			g, ctx := errgroup.WithContext(cmd.Context())
			g.Go(func() error { return adm.Run(ctx) })
			g.Go(func() error { log.Info("scheduler started", "jobs", len(f.Jobs)); return s.Start(ctx) })
			return g.Wait()
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	conn.AddS3Flags(fs)
	creds.AddFlags(fs)
	fs.StringVar(&jobsFile, "jobs", "", "jobs file (YAML); required")
	fs.StringVar(&stateDir, "state-dir", backfill.DefaultStateDir, "checkpoints of backfill jobs and the re-drive state")
	admin.AddFlag(fs, &adminAddr, DefaultAdminAddr)
	return cmd
}

// Runner returns the RunFunc that runs jobs against conn's cluster. A run's
// Kafka client takes metrics(job name) as an option (the stage's kprom
// series, client="<job>", present while the run's client is open); nil
// metrics = none.
func Runner(conn *cli.Conn, creds backfill.S3Credentials, stateDir string, metrics func(role string) kgo.Opt) RunFunc {
	return func(ctx context.Context, j *Job, at time.Time) error {
		var kopts []kgo.Opt
		if metrics != nil {
			kopts = append(kopts, metrics(j.Name))
		}
		start, end, err := j.RunWindow(at)
		if err != nil {
			return err
		}
		switch j.Type {
		case TypeBackfillMedia:
			o := backfill.MediaOptions{WindowStart: start.Format(time.RFC3339), WindowEnd: end.Format(time.RFC3339),
				Buckets: j.Buckets, Prefix: j.Prefix, DryRun: j.DryRun, Rate: j.Rate, StateDir: stateDir,
				MappingFile: j.Mapping, Concurrency: 4, Progress: "none", Creds: creds, KafkaOpts: kopts}
			job, closeFn, err := backfill.PrepareMedia(ctx, conn, o)
			if err != nil {
				return err
			}
			defer closeFn()
			job.Log = conn.Logger().With("job", j.Name)
			sum, err := job.Run(ctx)
			job.Log.Info("backfill summary", "listed", sum.Listed, "matched", sum.Matched, "published", sum.Published,
				"skipped", sum.Skipped, "unmappable", sum.Unmappable, "errors", sum.Errors)
			return err
		case TypeDLQRedrive:
			kc, err := conn.Kafka(kopts...)
			if err != nil {
				return err
			}
			defer kc.Close()
			serde, err := schemas.ConnSerde(conn)
			if err != nil {
				return err
			}
			res, err := dlq.Redrive(ctx, kc, serde, dlq.RedriveOptions{Since: start, Until: end, Reason: j.Reason, DryRun: j.DryRun,
				StateFile: stateDir + "/dlq-redriven.txt", Log: conn.Logger()})
			conn.Logger().Info("redrive summary", "job", j.Name, "scanned", res.Scanned, "redriven", res.Redriven,
				"records", res.Records, "still_failing", res.StillFailing, "already_redriven", res.AlreadyDone)
			return err
		}
		return fmt.Errorf("unknown job type %q", j.Type)
	}
}
