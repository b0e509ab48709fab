package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Stage is a pipeline stage that `drover dev` runs on top of the embedded
// stack once it is ready (bridge, processors, sink, simulator). Run blocks
// until ctx is cancelled and returns nil on a clean stop; an error stops
// the whole dev process.
type Stage struct {
	Name string
	Run  func(ctx context.Context, ep Endpoints, log *slog.Logger) error
	// OnObjectCreated, if set, is called for every object the embedded S3
	// stores (the stand-in for S3 bucket notifications).
	OnObjectCreated func(bucket, key string, size int64, etag, contentType string, meta map[string]string)
	// Flags, if set, adds the stage's own flags to `drover dev` (e.g. the
	// processors' --alert-rules).
	Flags func(fs *pflag.FlagSet)
	// Check, if set, validates those flags before anything starts, so a
	// bad value fails fast (exit 2) instead of after the stack is up. It is
	// not called for stages that will not run (--skip, --no-pipeline).
	Check func() error
	// Ready, if set, reports nil once the stage accepts work (the bridge:
	// subscribed). `drover dev` writes the env file only when every running
	// stage is ready, so a script that waits for the file and then
	// publishes loses nothing to a bridge that has not subscribed yet.
	Ready func(ctx context.Context) error
	// Admin, if set, returns the base URL (http://127.0.0.1:PORT) of the
	// stage's /metrics, /healthz and /readyz once it listens, "" before.
	Admin func() string
	// Env, if set, returns extra KEY=VALUE lines for the env file and the
	// ready summary (the console's URL, say); it is called once every
	// stage is ready.
	Env func() [][2]string
}

// stageReadyTimeout bounds the wait for the stages before the env file is
// written anyway (with a warning naming the stage).
const stageReadyTimeout = 2 * time.Minute

type devFlags struct {
	cfg        Config
	envFile    string
	noPipeline bool
	skip       []string
}

// Command returns `drover dev`: the embedded stack plus the given stages.
func Command(conn *cli.Conn, stages ...Stage) *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole pipeline on the embedded stack (Kafka, registry, MQTT, S3, PostgreSQL) in one process",
		Long: `dev starts the embedded stack in one process: Kafka (kfake, persisted under
--data-dir), a Confluent-compatible schema registry (persisted), an MQTT broker
(v5 and 3.1.1, shared subscriptions), S3 (on disk) and a throwaway PostgreSQL
cluster from the machine's own binaries (or the database at --database-url).

When everything is up it applies the topic catalogue (replication capped at 1),
registers every schema, prints the endpoints and writes them atomically to
--env-file as DROVER_* shell lines; other drover commands and scripts read that
file. Then it runs the pipeline stages unless --no-pipeline is given.

A default port that is already taken (say, by a system mosquitto on 1883) is
replaced by a free one and the log says so. Ctrl-C or SIGTERM stops everything
cleanly; records, schemas and the database survive a restart.`,
		Example: `  # everything, default ports and data dir .drover/
  drover dev

  # infrastructure only, on any free ports, data elsewhere
  drover dev --no-pipeline --data-dir /tmp/drover --mqtt-port 0 --kafka-port 0

  # wait for it from a script
  while [ ! -f .drover/dev.env ]; do sleep 0.2; done; . .drover/dev.env`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), conn.Logger(), f, stages)
		},
	}
	cli.WritesDevEnv(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.cfg.DataDir, "data-dir", ".drover", "directory for Kafka, registry, S3 and PostgreSQL data")
	fs.StringVar(&f.envFile, "env-file", "", "where to write the endpoints (default <data-dir>/dev.env)")
	fs.IntVar(&f.cfg.MQTTPort, "mqtt-port", 1883, "MQTT broker port (0 = any free port)")
	fs.IntVar(&f.cfg.KafkaPort, "kafka-port", 9092, "Kafka port (0 = any free port)")
	fs.IntVar(&f.cfg.RegistryPort, "registry-port", 8081, "schema registry port (0 = any free port)")
	fs.IntVar(&f.cfg.S3Port, "s3-port", 9000, "S3 port (0 = any free port)")
	fs.IntVar(&f.cfg.PostgresPort, "postgres-port", 0, "throwaway PostgreSQL port (0 = any free port)")
	fs.StringVar(&f.cfg.DatabaseURL, "database-url", "", "use this database instead of a throwaway PostgreSQL cluster")
	fs.BoolVar(&f.noPipeline, "no-pipeline", false, "start the infrastructure only, no pipeline stages")
	fs.StringSliceVar(&f.skip, "skip", nil, "pipeline stages not to run, comma separated (e.g. simulator)")
	for _, s := range stages {
		if s.Flags != nil {
			s.Flags(fs)
		}
	}
	return cmd
}

func (f *devFlags) validate(stages []Stage) error {
	for name, p := range map[string]int{"mqtt-port": f.cfg.MQTTPort, "kafka-port": f.cfg.KafkaPort,
		"registry-port": f.cfg.RegistryPort, "s3-port": f.cfg.S3Port, "postgres-port": f.cfg.PostgresPort} {
		if p < 0 || p > 65535 {
			return cli.Usagef("--%s: %d is not a port (0-65535)", name, p)
		}
	}
	if f.cfg.DataDir == "" {
		return cli.Usagef("--data-dir: empty")
	}
	known := map[string]bool{}
	for _, s := range stages {
		known[s.Name] = true
	}
	for _, s := range f.skip {
		if !known[s] {
			return cli.Usagef("--skip: unknown stage %q", s)
		}
	}
	if f.noPipeline {
		return nil
	}
	for _, s := range stages {
		if s.Check != nil && !slices.Contains(f.skip, s.Name) {
			if err := s.Check(); err != nil {
				return err
			}
		}
	}
	return nil
}

func runDev(ctx context.Context, log *slog.Logger, f devFlags, stages []Stage) error {
	if err := f.validate(stages); err != nil {
		return err
	}
	if f.envFile == "" {
		f.envFile = filepath.Join(f.cfg.DataDir, "dev.env")
	}
	// A stale env file would let a waiting script go ahead before we are up.
	if err := os.Remove(f.envFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--env-file %s: %w", f.envFile, err)
	}
	skip := map[string]bool{}
	for _, s := range f.skip {
		skip[s] = true
	}
	var hooks []func(string, string, int64, string, string, map[string]string)
	for _, s := range stages {
		if s.OnObjectCreated != nil && !f.noPipeline && !skip[s.Name] {
			hooks = append(hooks, s.OnObjectCreated)
		}
	}
	if len(hooks) > 0 {
		f.cfg.OnObjectCreated = func(b, k string, n int64, e, ct string, m map[string]string) {
			for _, h := range hooks {
				h(b, k, n, e, ct, m)
			}
		}
	}
	f.cfg.Logger = log
	start := time.Now()
	stack, err := Start(ctx, f.cfg)
	if err != nil {
		return err
	}
	defer func() {
		_ = os.Remove(f.envFile)
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := stack.Close(cctx); err != nil {
			log.Error("stopping the embedded stack", "err", err)
		}
		log.Info("embedded stack stopped")
	}()
	ep := stack.Endpoints()
	if err := Provision(ctx, ep, log); err != nil {
		return err
	}
	var extra [][2]string
	ready := func() error {
		if err := ep.WriteEnvFile(f.envFile, extra...); err != nil {
			return fmt.Errorf("--env-file %s: %w", f.envFile, err)
		}
		log.Info("drover dev ready",
			"mqtt", ep.MQTTURL, "kafka", ep.KafkaBrokers, "schema_registry", ep.SchemaRegistryURL,
			"s3", ep.S3Endpoint, "database", ep.DatabaseURL, "env_file", f.envFile,
			"startup", time.Since(start).Round(time.Millisecond).String())
		fmt.Fprintf(os.Stdout, "drover dev is ready\n  MQTT             %s\n  Kafka            %s\n  schema registry  %s\n  S3               %s\n  database         %s\n  env file         %s  (. %s)\n",
			ep.MQTTURL, ep.KafkaBrokers, ep.SchemaRegistryURL, ep.S3Endpoint, ep.DatabaseURL, f.envFile, f.envFile)
		for _, kv := range extra {
			fmt.Fprintf(os.Stdout, "  %s=%s\n", kv[0], kv[1])
		}
		return nil
	}

	if f.noPipeline {
		if err := ready(); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	var running []Stage
	for _, s := range stages {
		if skip[s.Name] {
			continue
		}
		s := s
		running = append(running, s)
		slg := log.With("stage", s.Name)
		g.Go(func() error {
			slg.Info("stage starting")
			if err := s.Run(gctx, ep, slg); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("stage %s: %w", s.Name, err)
			}
			slg.Info("stage stopped")
			return nil
		})
	}
	g.Go(func() error {
		waitStages(gctx, running, log)
		if gctx.Err() != nil {
			return nil
		}
		extra = stageEnv(running)
		return ready()
	})
	g.Go(func() error { <-gctx.Done(); return nil })
	return g.Wait()
}

// stageEnv collects the running stages' extra env file lines.
func stageEnv(stages []Stage) [][2]string {
	var out [][2]string
	for _, s := range stages {
		if s.Env != nil {
			out = append(out, s.Env()...)
		}
	}
	return out
}

// waitStages polls every stage's Ready until all report nil, ctx ends or
// stageReadyTimeout passes (then it logs the stages still not ready).
func waitStages(ctx context.Context, stages []Stage, log *slog.Logger) {
	deadline := time.Now().Add(stageReadyTimeout)
	pending := map[string]func(context.Context) error{}
	for _, s := range stages {
		if s.Ready != nil {
			pending[s.Name] = s.Ready
		}
	}
	for len(pending) > 0 {
		for name, r := range pending {
			if r(ctx) == nil {
				delete(pending, name)
			}
		}
		if len(pending) == 0 || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			for name, r := range pending {
				log.Warn("stage not ready; writing the env file anyway", "stage", name, "err", r(ctx))
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Provision applies the topic catalogue (replication capped at 1, the
// embedded Kafka has one broker) and registers every schema, so the stack is
// ready for the pipeline. It is idempotent.
func Provision(ctx context.Context, ep Endpoints, log *slog.Logger) error {
	conn := &cli.Conn{KafkaBrokers: []string{ep.KafkaBrokers}, SchemaRegistryURL: ep.SchemaRegistryURL, Log: log}
	adm, closeAdm, err := conn.Admin()
	if err != nil {
		return err
	}
	defer closeAdm()
	cat, err := topics.Default()
	if err != nil {
		return err
	}
	cat = cat.WithReplicationCap(1)
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	plan, err := topics.Diff(actx, adm, cat)
	if err != nil {
		return fmt.Errorf("topic catalogue: %w", err)
	}
	if _, err := topics.Apply(actx, adm, plan, false); err != nil {
		return fmt.Errorf("topic catalogue: %w", err)
	}
	reg, err := conn.Registry()
	if err != nil {
		return err
	}
	res, err := schemas.Register(actx, reg, schemas.Topics())
	if err != nil {
		return fmt.Errorf("schemas: %w", err)
	}
	log.Info("catalogue applied and schemas registered", "topics", len(cat.Topics), "subjects", len(res))
	return nil
}
