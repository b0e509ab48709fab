package smoke

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
)

// Command returns `drover smoke`.
func Command(conn *cli.Conn) *cobra.Command {
	var (
		envFile string
		c       Config
	)
	cmd := &cobra.Command{
		Use:   "smoke",
		Short: "End-to-end smoke test of a running stack: MQTT and S3 in, Kafka, registry and database checked",
		Long: `smoke drives a running drover stack from outside. It reads the stack's
endpoints from --env-file (as 'drover dev' writes it: DROVER_MQTT_URL,
DROVER_KAFKA_BROKERS, DROVER_SCHEMA_REGISTRY_URL, DROVER_S3_ENDPOINT,
DROVER_S3_BUCKET, DROVER_DATABASE_URL, AWS_*), or from the environment when
--env-file is empty. It publishes every payload form and bad-input class of
the bridge over MQTT, a fever series and an object into S3 for fresh device
ids, then checks raw.*, dlq.events, features.events, alerts.events,
state.latest, the registry and every table of the database, printing a
checklist. Exit 0: all passed; 3: a check failed; 2: bad flags or env file;
1: an endpoint is unreachable.`,
		Example: `  drover smoke --env-file .drover/dev.env
  # a stack whose processors run an offline rule of 1 minute
  drover smoke --env-file compose.env --offline-after 1m --timeout 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := map[string]string{}
			src := "the environment"
			if envFile != "" {
				m, err := readEnv(envFile)
				if err != nil {
					return cli.Usagef("--env-file: %w", err)
				}
				env, src = m, envFile
			} else {
				for _, kv := range os.Environ() {
					if k, v, ok := strings.Cut(kv, "="); ok {
						env[k] = v
					}
				}
			}
			base, err := FromEnv(src, env)
			if err != nil {
				return cli.Usagef("%w", err)
			}
			base.Tenant, base.Timeout, base.OfflineAfter = c.Tenant, c.Timeout, c.OfflineAfter
			if err := base.Validate(); err != nil {
				return cli.Usagef("%w", err)
			}
			err = Run(cmd.Context(), base, cmd.OutOrStdout(), conn.Logger())
			if errors.Is(err, ErrFailed) {
				return fmt.Errorf("%w: %w", cli.ErrCheckFailed, err)
			}
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&envFile, "env-file", cli.DefaultDevEnvFile, "env file with the stack's endpoints (empty = read DROVER_* from the environment)")
	fs.DurationVar(&c.Timeout, "timeout", DefaultTimeout, "deadline for the whole run")
	fs.DurationVar(&c.OfflineAfter, "offline-after", 0, "the stack's offline-rule threshold; the offline check runs only when set (at most 5m)")
	fs.StringVar(&c.Tenant, "tenant", DefaultTenant, "tenant of the run's devices")
	return cmd
}

// readEnv reads the env file, saying plainly when it does not exist.
func readEnv(path string) (map[string]string, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s does not exist (start 'drover dev' or point --env-file at your stack's env file)", path)
		}
		return nil, err
	}
	return readEnvFile(path)
}
