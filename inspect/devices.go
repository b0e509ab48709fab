package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Device is one row of `drover devices`: the latest state of a device.
type Device struct {
	Tenant       string     `json:"tenant"`
	DeviceID     string     `json:"device_id"`
	LastSeen     time.Time  `json:"last_seen"`
	Online       bool       `json:"online"`
	Battery      *float64   `json:"battery"`
	ActiveAlerts int32      `json:"active_alerts"`
	Firmware     *string    `json:"firmware"`
	Lat          *float64   `json:"lat"`
	Lon          *float64   `json:"lon"`
	PositionTS   *time.Time `json:"position_ts"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// DeviceList is what Devices read: the devices, sorted by tenant then
// device id, and how many records of the topic did not decode.
type DeviceList struct {
	Devices     []Device
	Undecodable int
	// FirstError is why the first undecodable record did not decode.
	FirstError error
}

type devicesOptions struct {
	conn    *cli.Conn
	tenants []string
	status  string
	format  string
	timeout time.Duration
	now     func() time.Time
}

// DevicesCommand returns `drover devices`.
func DevicesCommand(conn *cli.Conn) *cobra.Command { return devicesCommand(conn, time.Now) }

func devicesCommand(conn *cli.Conn, now func() time.Time) *cobra.Command {
	o := &devicesOptions{conn: conn, now: now}
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List the devices known to state.latest: last seen, online, battery, active alerts",
		Long: `Read the compacted state.latest topic from its start to its current end
(the last value of each key wins; a tombstone removes the device) and print
one row per device: tenant, device id, when it was last seen and how long
ago, whether the state processor considers it online, battery level and
the number of active alerts. The state processor writes state.latest; this
command only reads it (no consumer group).

For one device's full state use 'drover state get DEVICE'.`,
		Example: `  # every device
  drover devices

  # one tenant's offline devices, as JSON lines for jq
  drover devices --tenant farm-1 --status offline --format json | jq -r .device_id`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringSliceVar(&o.tenants, "tenant", nil, "only devices of these tenants (repeat or comma-separate)")
	fs.StringVar(&o.status, "status", "", "only online or offline devices (default both)")
	fs.StringVarP(&o.format, "format", "o", "", "output: table or json (default table on a terminal, json otherwise)")
	fs.DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long to wait for Kafka to answer setup requests")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{FormatTable, FormatJSON}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"online", "offline"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *devicesOptions) run(ctx context.Context, out, errOut io.Writer) error {
	format, err := tableOrJSON(o.format, out)
	if err != nil {
		return err
	}
	switch o.status {
	case "", "online", "offline":
	default:
		return cli.Usagef("--status: unknown status %q (want online or offline)", o.status)
	}
	if o.timeout <= 0 {
		return cli.Usagef("--timeout: must be > 0, got %s", o.timeout)
	}
	adm, err := connect(ctx, o.conn, o.timeout)
	if err != nil {
		return err
	}
	defer adm.Close()
	reg, err := o.conn.Registry()
	if err != nil {
		return err
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return err
	}
	list, err := Devices(ctx, o.conn, adm, serde, o.timeout)
	if err != nil {
		return err
	}
	if err := checkTenants(o.tenants, list.Devices); err != nil {
		return err
	}
	devs := slices.DeleteFunc(list.Devices, func(d Device) bool {
		return (len(o.tenants) > 0 && !slices.Contains(o.tenants, d.Tenant)) ||
			(o.status == "online" && !d.Online) || (o.status == "offline" && d.Online)
	})
	if list.Undecodable > 0 {
		fmt.Fprintf(errOut, "drover devices: %d record(s) of %s did not decode (first: %v); see drover tail %s --from earliest --to latest\n",
			list.Undecodable, topics.StateLatest, list.FirstError, topics.StateLatest)
	}
	if format == FormatJSON {
		return writeJSONLines(out, devs)
	}
	return writeDevices(out, devs, o.now())
}

// checkTenants fails with a usage error naming a --tenant that no device
// in state.latest has (a typo would otherwise list nothing).
func checkTenants(want []string, devs []Device) error {
	var seen []string
	for _, d := range devs {
		if !slices.Contains(seen, d.Tenant) {
			seen = append(seen, d.Tenant)
		}
	}
	for _, t := range want {
		if !slices.Contains(seen, t) {
			slices.Sort(seen)
			return cli.Usagef("--tenant: no device of tenant %q in %s (tenants: %s)", t, topics.StateLatest, strings.Join(seen, ", "))
		}
	}
	return nil
}

// Devices reads state.latest from its start to the end offsets at the time
// of the call and returns the latest state of each device. setup bounds the
// offset listing; reading takes as long as the topic needs (ctx bounds it).
func Devices(ctx context.Context, conn *cli.Conn, adm *kadm.Client, serde *schemas.Serde, setup time.Duration) (DeviceList, error) {
	sctx, cancel := context.WithTimeout(ctx, setup)
	parts, err := selectPartitions(sctx, adm, []string{topics.StateLatest}, nil)
	if err != nil {
		cancel()
		return DeviceList{}, err
	}
	b, err := listBounds(sctx, adm, []string{topics.StateLatest})
	cancel()
	if err != nil {
		return DeviceList{}, err
	}
	latest := map[string]*kgo.Record{}
	err = readRange(ctx, conn, b, parts, func(r *kgo.Record) {
		if r.Value == nil {
			delete(latest, string(r.Key))
			return
		}
		latest[string(r.Key)] = r
	})
	if err != nil {
		return DeviceList{}, err
	}
	var list DeviceList
	for key, r := range latest {
		var st schemas.DeviceState
		if _, err := serde.Decode(ctx, r.Value, &st); err != nil {
			list.Undecodable++
			if list.FirstError == nil {
				list.FirstError = fmt.Errorf("key %q partition %d offset %d: %w", key, r.Partition, r.Offset, err)
			}
			continue
		}
		if st.DeviceID == "" {
			st.DeviceID = key
		}
		list.Devices = append(list.Devices, Device{
			Tenant: st.Tenant, DeviceID: st.DeviceID, LastSeen: st.LastSeen, Online: st.Online,
			Battery: st.Battery, ActiveAlerts: st.ActiveAlerts, Firmware: st.Firmware,
			Lat: st.Lat, Lon: st.Lon, PositionTS: st.PositionTS, UpdatedAt: st.UpdatedAt,
		})
	}
	slices.SortFunc(list.Devices, func(a, b Device) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return strings.Compare(a.DeviceID, b.DeviceID)
	})
	return list, nil
}

// readRange reads every record of the selected partitions from their
// start to their end offset (control records skipped) and calls fn for each
// in offset order per partition.
func readRange(ctx context.Context, conn *cli.Conn, b map[partitionKey]bounds, parts map[partitionKey]bool, fn func(*kgo.Record)) error {
	offsets := map[string]map[int32]kgo.Offset{}
	remaining := map[partitionKey]int64{}
	for k, bd := range b {
		if !parts[k] || bd.start >= bd.end {
			continue
		}
		if offsets[k.Topic] == nil {
			offsets[k.Topic] = map[int32]kgo.Offset{}
		}
		offsets[k.Topic][k.Partition] = kgo.NewOffset().At(bd.start)
		remaining[k] = bd.end
	}
	if len(remaining) == 0 {
		return nil
	}
	cl, err := conn.Kafka(kgo.ConsumePartitions(offsets), kgo.KeepControlRecords(), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, kgo.ErrClientClosed) {
				return fe.Err
			}
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			k := partitionKey{fp.Topic, fp.Partition}
			end, ok := remaining[k]
			if !ok {
				return
			}
			for _, r := range fp.Records {
				if r.Offset >= end {
					break
				}
				if !r.Attrs.IsControl() {
					fn(r)
				}
			}
			if n := len(fp.Records); n > 0 && fp.Records[n-1].Offset+1 >= end {
				delete(remaining, k)
				cl.PauseFetchPartitions(map[string][]int32{k.Topic: {k.Partition}})
			}
		})
	}
	return nil
}

func writeDevices(w io.Writer, devs []Device, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tDEVICE\tLAST SEEN\tAGO\tONLINE\tBATTERY\tALERTS\tFIRMWARE")
	for _, d := range devs {
		battery, fw := "-", "-"
		if d.Battery != nil {
			battery = strconv.FormatFloat(*d.Battery, 'f', -1, 64)
		}
		if d.Firmware != nil {
			fw = *d.Firmware
		}
		online := "no"
		if d.Online {
			online = "yes"
		}
		// Ids and firmware come from devices: quoted and escaped when they
		// hold anything a terminal would interpret (see cell).
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", cell(d.Tenant), cell(d.DeviceID), d.LastSeen.UTC().Format(time.RFC3339),
			humanAge(now.Sub(d.LastSeen)), online, battery, d.ActiveAlerts, cell(fw))
	}
	return tw.Flush()
}

// writeJSONLines writes each element of rows as one JSON line.
func writeJSONLines[T any](w io.Writer, rows []T) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}
