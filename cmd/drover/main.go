// Command drover is the one binary of the drover pipeline. It only wires:
// every subcommand lives beside the code it runs.
package main

import (
	"os"

	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/backfill/replay"
	"github.com/drover-iot/drover/backfill/schedule"
	"github.com/drover-iot/drover/bridge"
	"github.com/drover-iot/drover/bridge/simulate"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/console/consolecmd"
	"github.com/drover-iot/drover/console/consoledev"
	"github.com/drover-iot/drover/control/controlcmd"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/doors/doorscmd"
	"github.com/drover-iot/drover/doors/doorsdev"
	"github.com/drover-iot/drover/inspect"
	"github.com/drover-iot/drover/processors"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/apps/appscmd"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/processors/timescale"
	"github.com/drover-iot/drover/registry/command"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/smoke"
	"github.com/drover-iot/drover/topics"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(newRoot().Execute(os.Args[1:]))
}

// newRoot builds the command tree (tests walk it).
func newRoot() *cli.Root {
	root := cli.NewRoot(version)
	root.Cmd.AddCommand(
		devstack.Command(root.Conn,
			bridge.DevStage(0),
			processors.DevStage(processors.Options{}, processors.DefaultAdminAddr),
			timescale.DevStage(),
			simulate.DevStage(simulate.Config{}),
			backfill.DevStage(backfill.NewNotifier(nil), ""),
			consoledev.Stage(version),
			doorsdev.HTTPStage(),
			doorsdev.CoAPStage(),
		),
		consolecmd.Command(root.Conn, version),
		topics.Command(root.Conn),
		bridge.Command(root.Conn),
		doorscmd.HTTPCommand(root.Conn),
		doorscmd.CoAPCommand(root.Conn),
		simulate.Command(root.Conn),
		schemas.Command(root.Conn),
		inspect.TailCommand(root.Conn),
		inspect.LagCommand(root.Conn),
		command.DevicesCommand(root.Conn), // includes `devices seen`, the former `drover devices`
		command.TenantsCommand(root.Conn),
		command.RegistryCommand(root.Conn),
		processors.Command(root.Conn),
		appscmd.Command(root.Conn),
		alerts.Command(root.Conn),
		state.Command(root.Conn),
		controlcmd.Command(root.Conn),
		timescale.Command(root.Conn),
		backfill.BackfillCommand(root.Conn),
		backfill.MediaCommand(root.Conn),
		dlq.DLQCommand(root.Conn),
		replay.ReplayCommand(root.Conn),
		schedule.ScheduleCommand(root.Conn),
		smoke.Command(root.Conn),
	)
	return root
}
