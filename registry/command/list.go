package command

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/inspect"
	"github.com/drover-iot/drover/registry"
)

type listFlags struct {
	tenants             []string
	status, format      string
	state, unregistered bool
	timeout             time.Duration
}

// row is one line of `drover devices list`: a registry entry (nil for a
// device seen but not registered) and what state.latest says of it.
type row struct {
	tenant, id string
	dev        *registry.Device
	seen       *inspect.Device
}

func listCommand(conn *cli.Conn) *cobra.Command {
	var f listFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List registered devices with their status, labels and when they were last seen",
		Long: `List the registry's devices (tenant, id, type, status, labels), joined with the
state processor's view of each (last seen, online) read from state.latest.
--state=false skips that join (the registry alone). --unregistered also lists
devices state.latest knows that the registry does not: what the bridge lets
through today and would refuse once the registry is enforced.`,
		Example: `  drover devices list
  drover devices list --tenant farm1 --status suspended
  drover devices list --unregistered --format json | jq -r 'select(.status=="unregistered") | .device_id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return classify(f.run(cmd.Context(), conn, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	sessionFlags(fs, conn, &f.timeout)
	fs.StringSliceVar(&f.tenants, "tenant", nil, "only these tenants (repeat or comma-separate)")
	fs.StringVar(&f.status, "status", "", "only devices with this status: active, suspended or revoked")
	fs.StringVarP(&f.format, "format", "o", "", "output: table or json (default table on a terminal, json otherwise)")
	fs.BoolVar(&f.state, "state", true, "join with state.latest (last seen, online)")
	fs.BoolVar(&f.unregistered, "unregistered", false, "also list devices seen in state.latest but not registered")
	return cmd
}

func (f *listFlags) run(ctx context.Context, conn *cli.Conn, out, errOut io.Writer) error {
	format, err := format(f.format, out)
	if err != nil {
		return err
	}
	if f.status != "" {
		if _, err := registry.ParseStatus(f.status); err != nil {
			return cli.Usagef("--status: %w", err)
		}
	}
	s, err := open(ctx, conn, f.timeout)
	if err != nil {
		return err
	}
	defer s.close()
	rows := map[string]*row{}
	for _, d := range s.view.Devices() {
		rows[d.Key()] = &row{tenant: d.Tenant, id: d.ID, dev: d}
	}
	if f.state {
		if err := f.join(ctx, conn, s, rows); err != nil {
			fmt.Fprintf(errOut, "drover devices list: last seen unknown: %v\n", err)
		}
	}
	list := f.filter(rows)
	if format == "json" {
		return writeRowsJSON(out, list)
	}
	return writeRows(out, list, time.Now())
}

// join adds state.latest's view of each device (keyed by tenant and id).
func (f *listFlags) join(ctx context.Context, conn *cli.Conn, s *session, rows map[string]*row) error {
	adm, closeAdm, err := conn.Admin()
	if err != nil {
		return err
	}
	defer closeAdm()
	seen, err := inspect.Devices(ctx, conn, adm, s.serde, f.timeout)
	if err != nil {
		return err
	}
	for i := range seen.Devices {
		d := &seen.Devices[i]
		key := identity.Key(d.Tenant, d.DeviceID)
		if r, ok := rows[key]; ok {
			r.seen = d
		} else if f.unregistered {
			rows[key] = &row{tenant: d.Tenant, id: d.DeviceID, seen: d}
		}
	}
	return nil
}

func (f *listFlags) filter(rows map[string]*row) []*row {
	var out []*row
	for _, r := range rows {
		if len(f.tenants) > 0 && !slices.Contains(f.tenants, r.tenant) {
			continue
		}
		if f.status != "" && (r.dev == nil || string(r.dev.Status) != f.status) {
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].tenant != out[j].tenant {
			return out[i].tenant < out[j].tenant
		}
		return out[i].id < out[j].id
	})
	return out
}

func (r *row) status() string {
	if r.dev == nil {
		return "unregistered"
	}
	return string(r.dev.Status)
}

func writeRows(w io.Writer, rows []*row, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tDEVICE\tTYPE\tSTATUS\tLABELS\tLAST SEEN\tONLINE")
	for _, r := range rows {
		typ, labels, last, online := "-", "-", "never", "-"
		if r.dev != nil {
			if r.dev.Type != "" {
				typ = r.dev.Type
			}
			if len(r.dev.Labels) > 0 {
				labels = labelString(r.dev.Labels)
			}
		}
		if r.seen != nil {
			last = r.seen.LastSeen.UTC().Format(time.RFC3339) + " (" + now.Sub(r.seen.LastSeen).Round(time.Second).String() + " ago)"
			online = map[bool]string{true: "yes", false: "no"}[r.seen.Online]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.tenant, r.id, typ, r.status(), labels, last, online)
	}
	return tw.Flush()
}

// writeRowsJSON writes one JSON object per device: the registry entry's
// fields, status "unregistered" for a device only state.latest knows, and
// last_seen and online when state.latest has them.
func writeRowsJSON(w io.Writer, rows []*row) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		m := map[string]any{"tenant": r.tenant, "device_id": r.id, "status": r.status()}
		if r.dev != nil {
			b, err := json.Marshal(r.dev)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &m); err != nil {
				return err
			}
		}
		if r.seen != nil {
			m["last_seen"], m["online"] = r.seen.LastSeen, r.seen.Online
		}
		if err := enc.Encode(m); err != nil {
			return err
		}
	}
	return nil
}

func sortStrings(s []string) { sort.Strings(s) }
