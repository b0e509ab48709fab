package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Stage is a pipeline stage that `drover dev` runs (devstage.Stage).
type Stage = devstage.Stage

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
	fs.StringVar(&f.cfg.ListenHost, "listen-host", loopback, "address every dev listener binds (Kafka, registry, MQTT, S3, the stages' admin servers); 0.0.0.0 opens them to the network, without authentication. The throwaway PostgreSQL always stays on 127.0.0.1")
	fs.StringVar(&f.envFile, "env-file", "", "where to write the endpoints (default <data-dir>/dev.env)")
	fs.IntVar(&f.cfg.MQTTPort, "mqtt-port", 1883, "MQTT broker port (0 = any free port)")
	fs.IntVar(&f.cfg.MQTTWSPort, "mqtt-ws-port", DefaultMQTTWSPort, "MQTT over WebSockets port of the same broker, ws://host:port/mqtt (0 = any free port)")
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
	for name, p := range map[string]int{"mqtt-port": f.cfg.MQTTPort, "mqtt-ws-port": f.cfg.MQTTWSPort, "kafka-port": f.cfg.KafkaPort,
		"registry-port": f.cfg.RegistryPort, "s3-port": f.cfg.S3Port, "postgres-port": f.cfg.PostgresPort} {
		if p < 0 || p > 65535 {
			return cli.Usagef("--%s: %d is not a port (0-65535)", name, p)
		}
	}
	if f.cfg.DataDir == "" {
		return cli.Usagef("--data-dir: empty")
	}
	if err := checkListenHost(f.cfg.ListenHost); err != nil {
		return cli.Usagef("--listen-host: %v", err)
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
	if err := Provision(ctx, stack.Endpoints(), log); err != nil {
		return err
	}
	if err := stack.EnforceRegistry(ctx); err != nil {
		return err
	}
	ep := stack.Endpoints()
	ready := func(ep Endpoints) error {
		if err := ep.WriteEnvFile(f.envFile); err != nil {
			return fmt.Errorf("--env-file %s: %w", f.envFile, err)
		}
		log.Info("drover dev ready",
			"mqtt", ep.MQTTURL, "kafka", ep.KafkaBrokers, "schema_registry", ep.SchemaRegistryURL,
			"s3", ep.S3Endpoint, "database", ep.DatabaseURL, "admin", ep.Admin, "env_file", f.envFile,
			"startup", time.Since(start).Round(time.Millisecond).String())
		printReady(os.Stdout, ep, f.envFile)
		return nil
	}
	if f.noPipeline {
		if err := ready(ep); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}
	var running []Stage
	for _, s := range stages {
		if !skip[s.Name] {
			running = append(running, s)
		}
	}
	return runStages(ctx, log, ep, f.cfg.ListenHost, running, ready)
}

// printReady prints the endpoints, the stages' health URLs and the env
// file.
func printReady(w io.Writer, ep Endpoints, envFile string) {
	fmt.Fprintf(w, "drover dev is ready\n  MQTT             %s\n  Kafka            %s\n  schema registry  %s\n  S3               %s\n  database         %s\n",
		ep.MQTTURL, ep.KafkaBrokers, ep.SchemaRegistryURL, ep.S3Endpoint, ep.DatabaseURL)
	for _, name := range slices.Sorted(maps.Keys(ep.Admin)) {
		fmt.Fprintf(w, "  %-16s %s/healthz  %s/readyz  (/metrics)\n", name, ep.Admin[name], ep.Admin[name])
	}
	for _, kv := range ep.Extra {
		fmt.Fprintf(w, "  %s=%s\n", kv[0], kv[1])
	}
	fmt.Fprintf(w, "  env file         %s  (. %s)\n", envFile, envFile)
}

// runStages gives every stage an admin server on host, runs the stages
// until ctx ends or one fails, and calls ready once all are ready.
func runStages(ctx context.Context, log *slog.Logger, ep Endpoints, host string, stages []Stage, ready func(Endpoints) error) error {
	admins := make([]*admin.Server, len(stages))
	ep.Admin = map[string]string{}
	for i, s := range stages {
		adm, err := stageAdmin(log.With("stage", s.Name), s, host)
		if err != nil {
			return err
		}
		admins[i] = adm
		ep.Admin[s.Name] = "http://" + hostPort(host, adm.Listener())
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range stages {
		slg, adm := log.With("stage", s.Name), admins[i]
		var stopped atomic.Bool
		adm.AddCheck("running", func(context.Context) error {
			if stopped.Load() {
				return errors.New("stage stopped")
			}
			return nil
		})
		if s.Admin != nil {
			s.Admin(adm)
		} else {
			if s.Ready != nil {
				adm.AddCheck(s.Name, s.Ready)
			}
			g.Go(func() error { return adm.Run(gctx) })
		}
		g.Go(func() error {
			defer stopped.Store(true)
			slg.Info("stage starting", "admin", ep.Admin[s.Name])
			if err := s.Run(gctx, ep, slg); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("stage %s: %w", s.Name, err)
			}
			slg.Info("stage stopped")
			return nil
		})
	}
	g.Go(func() error {
		waitStages(gctx, stages, log)
		if gctx.Err() != nil {
			return nil
		}
		for _, s := range stages {
			if s.Env != nil {
				ep.Extra = append(ep.Extra, s.Env()...)
			}
		}
		return ready(ep)
	})
	g.Go(func() error { <-gctx.Done(); return nil })
	return g.Wait()
}

// stageAdmin returns the stage's admin server, listening on host at the
// stage's AdminPort (or a free port when that is taken or 0).
func stageAdmin(log *slog.Logger, s Stage, host string) (*admin.Server, error) {
	l, err := listen(log, s.Name+" admin", host, s.AdminPort, false)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	adm := admin.New(l.Addr().String(), log)
	adm.UseListener(l)
	return adm, nil
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
