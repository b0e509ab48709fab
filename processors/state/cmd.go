package state

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
)

// Command returns `drover state` with its `get` subcommand.
func Command(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read the device shadow kept by the state processor",
	}
	cmd.AddCommand(getCommand(conn))
	return cmd
}

func getCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "get DEVICE",
		Short: "Print a device's latest state as JSON (from the compacted state.latest topic)",
		Long: `Print a device's latest state (the device shadow) as JSON: last seen (event
and ingest time), the last value of every metric, last position, online,
battery, firmware and the number of active alerts.

The state is read from the compacted topic state.latest, which the state
processor ('drover process --groups state') writes. A running processor
also answers GET /devices/{id} on its admin port.`,
		Example: `  drover state get cow-0042`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return cli.Usagef("--timeout: must be positive, got %s", timeout)
			}
			kopts, err := conn.KafkaOpts()
			if err != nil {
				return err
			}
			reg, err := conn.Registry()
			if err != nil {
				return err
			}
			serde, err := schemas.NewSerde(reg)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			ds, err := Lookup(ctx, kopts, serde, args[0])
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return errors.New("state get: no answer within --timeout " + timeout.String() + " (is Kafka reachable at " + strings.Join(conn.KafkaBrokers, ",") + "?)")
				}
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(ViewOf(ds))
		},
	}
	conn.AddKafkaFlags(cmd.Flags())
	conn.AddRegistryFlags(cmd.Flags())
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}
