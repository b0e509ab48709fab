package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Command returns `drover state` with its `get` and `set` subcommands.
func Command(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Read the device shadow kept by the state processor",
	}
	cmd.AddCommand(getCommand(conn), setCommand(conn))
	return cmd
}

func setCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set TENANT/DEVICE KEY=VALUE...",
		Short: "Set a device's desired state (a 'desired' command on commands.devices)",
		Long: `Set keys of a device's desired state. The update is a command named
'desired' on commands.devices whose payload is the JSON object of the keys;
the state processor merges it into the shadow (desired, version) and
'drover state get' shows the pending delta: the desired keys whose reported
value (the metric of that name, or firmware) differs. KEY= removes a key.
The bridge sends the device that delta on devices/TENANT/DEVICE/shadow/delta
when it connects and whenever its desired state changes (never the command
itself).`,
		Example: `  drover state set demo/collar-0001 interval=30 mode=eco`,
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return cli.Usagef("--timeout: must be positive, got %s", timeout)
			}
			tenant, device, err := identity.ParseKey(args[0])
			if err != nil {
				return cli.Usagef("state set: want TENANT/DEVICE (e.g. demo/collar-0001): %v", err)
			}
			d := map[string]string{}
			for _, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return cli.Usagef("state set: %q: want KEY=VALUE", kv)
				}
				if _, dup := d[k]; dup {
					return cli.Usagef("state set: %q: %s given twice", kv, k)
				}
				d[k] = v
			}
			kopts, err := conn.KafkaOpts()
			if err != nil {
				return err
			}
			serde, err := schemas.ConnSerde(conn)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			id, err := control.SetDesired(ctx, cl, serde, tenant, device, d, timeout)
			if err != nil {
				return fmt.Errorf("state set: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
	conn.AddKafkaFlags(cmd.Flags())
	conn.AddRegistryFlags(cmd.Flags())
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long (also the update's deadline on commands.devices)")
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
also answers GET /devices/TENANT/DEVICE on its admin port.

A device is TENANT/DEVICE: state is kept per tenant and device, so cow-1 of
two tenants are two shadows.`,
		Example: `  drover state get demo/collar-0001`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return cli.Usagef("--timeout: must be positive, got %s", timeout)
			}
			if _, _, err := identity.ParseKey(args[0]); err != nil {
				return cli.Usagef("state get: want TENANT/DEVICE (e.g. demo/collar-0001): %v", err)
			}
			kopts, err := conn.KafkaOpts()
			if err != nil {
				return err
			}
			serde, err := schemas.ConnSerde(conn)
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
