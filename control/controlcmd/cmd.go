package controlcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// ErrCommandFailed is returned by `send --wait` when the command ended
// failed or expired (exit code 1).
var ErrCommandFailed = errors.New("command did not succeed")

// Command returns `drover command` with send, status and list.
func Command(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "command",
		Short: "Send commands to devices and follow their lifecycle (commands.devices, commands.status)",
		Long: `Send a command to a device and follow it: the bridge's downlink publishes it
on devices/{tenant}/{device}/commands/{id} and records every transition
(queued, sent, delivered, succeeded, failed, expired, late_reply) on
commands.status, which status and list read.`,
	}
	cmd.AddCommand(sendCommand(conn), statusCommand(conn), listCommand(conn))
	return cmd
}

type session struct {
	kopts []kgo.Opt
	serde *schemas.Serde
}

func open(conn *cli.Conn) (*session, error) {
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return nil, err
	}
	serde, err := schemas.ConnSerde(conn)
	if err != nil {
		return nil, err
	}
	return &session{kopts: kopts, serde: serde}, nil
}

func addFlags(conn *cli.Conn, cmd *cobra.Command) {
	conn.AddKafkaFlags(cmd.Flags())
	conn.AddRegistryFlags(cmd.Flags())
}

type sendFlags struct {
	params  []string
	timeout time.Duration
	wait    bool
	id      string
}

func sendCommand(conn *cli.Conn) *cobra.Command {
	var f sendFlags
	cmd := &cobra.Command{
		Use:   "send TENANT/DEVICE NAME",
		Short: "Send a command to a device; print its id (with --wait, its outcome)",
		Long: `Send a command to a device: a record on commands.devices with a new id, the
parameters as a JSON object and a deadline --timeout from now. The bridge's
downlink publishes it to the device; a command still open at its deadline
expires. With --wait the command waits for the outcome, prints the
command's lifecycle as JSON and exits 0 when it succeeded, 1 when it failed
or expired.

A parameter value that is a JSON number, boolean, null, array or object is
sent as such (seconds=60 → 60); anything else as a string.`,
		Example: `  drover command send demo/collar-0001 set_interval --param seconds=60
  drover command send demo/collar-0001 reboot --timeout 2m --wait`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.run(cmd.Context(), conn, cmd.OutOrStdout(), args[0], args[1])
		},
	}
	addFlags(conn, cmd)
	fs := cmd.Flags()
	fs.StringArrayVar(&f.params, "param", nil, "a parameter KEY=VALUE (repeat for several)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline: the command expires this long after it is sent")
	fs.BoolVar(&f.wait, "wait", false, "wait for the outcome (up to --timeout and 10s more) and print it")
	fs.StringVar(&f.id, "id", "", "the command id (default: a new random one); sending an id again is recognised as a duplicate")
	return cmd
}

// Params parses KEY=VALUE pairs into a JSON object.
func Params(kvs []string) (string, error) {
	m := map[string]json.RawMessage{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return "", fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return "", fmt.Errorf("%q: %s given twice", kv, k)
		}
		raw := json.RawMessage(v)
		if !json.Valid(raw) {
			raw, _ = json.Marshal(v)
		}
		m[k] = raw
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// NewID returns a fresh command id, "c-" and 16 hex digits.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

func (f *sendFlags) run(ctx context.Context, conn *cli.Conn, out io.Writer, key, name string) error {
	tenant, device, err := identity.ParseKey(key)
	if err != nil {
		return cli.Usagef("command send: want TENANT/DEVICE (e.g. demo/collar-0001): %v", err)
	}
	if name == "" || strings.ContainsAny(name, "\x00\n") {
		return cli.Usagef("command send: NAME must be a non-empty single line")
	}
	if f.timeout <= 0 {
		return cli.Usagef("--timeout: must be positive, got %s", f.timeout)
	}
	payload, err := Params(f.params)
	if err != nil {
		return cli.Usagef("--param %v", err)
	}
	id := f.id
	if id == "" {
		id = NewID()
	}
	if err := control.ValidID(id); err != nil {
		return cli.Usagef("--id: %v", err)
	}
	s, err := open(conn)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(s.kopts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var start kadm.ListedOffsets
	if f.wait {
		if start, err = kadm.NewClient(cl).ListEndOffsets(pctx, topics.CommandStatus); err == nil {
			err = start.Error()
		}
		if err != nil {
			return fmt.Errorf("command send: end offsets of %s: %w", topics.CommandStatus, err)
		}
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	exp := now.Add(f.timeout)
	reply := control.ReplyTopic(tenant, device, id)
	c := schemas.DeviceCommand{CommandID: id, Tenant: tenant, DeviceID: device, Name: name, Payload: payload,
		CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now, ReplyTopic: &reply}
	v, err := s.serde.Encode(pctx, topics.Commands, &c)
	if err != nil {
		return fmt.Errorf("command send: %w", err)
	}
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: topics.Commands, Key: []byte(identity.Key(tenant, device)), Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("command send: producing to %s: %w", topics.Commands, err)
	}
	if !f.wait {
		fmt.Fprintln(out, id)
		return nil
	}
	wctx, wcancel := context.WithTimeout(ctx, f.timeout+10*time.Second)
	defer wcancel()
	got, err := waitFor(wctx, s, start, id)
	if err != nil {
		return fmt.Errorf("command send: %s: %w", id, err)
	}
	if err := writeJSON(out, got); err != nil {
		return err
	}
	if got.Status != control.Succeeded {
		return fmt.Errorf("%w: %s %s", ErrCommandFailed, id, got.Status)
	}
	return nil
}

// waitFor follows commands.status from start until command id ends.
func waitFor(ctx context.Context, s *session, start kadm.ListedOffsets, id string) (*control.Command, error) {
	offs := map[string]map[int32]kgo.Offset{topics.CommandStatus: {}}
	start.Each(func(o kadm.ListedOffset) { offs[topics.CommandStatus][o.Partition] = kgo.NewOffset().At(o.Offset) })
	opts := append([]kgo.Opt{}, s.kopts...)
	opts = append(opts, kgo.ConsumePartitions(offs))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	c := &control.Command{}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			if c.ID != "" {
				return nil, fmt.Errorf("still %s when the wait ended", c.Status)
			}
			return nil, errors.New("no status within the wait (is the bridge's downlink running?)")
		}
		fs.EachRecord(func(r *kgo.Record) {
			var st schemas.CommandStatus
			if _, err := s.serde.Decode(ctx, r.Value, &st); err == nil && st.CommandID == id {
				control.Fold(c, &st)
			}
		})
		if c.Status.Terminal() {
			return c, nil
		}
	}
}

// View is the JSON shape of a command's lifecycle.
type View struct {
	ID          string     `json:"command_id"`
	Device      string     `json:"device"`
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	Params      any        `json:"params,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	QueuedAt    *time.Time `json:"queued_at,omitempty"`
	SentAt      *time.Time `json:"sent_at,omitempty"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	EndedAt     *time.Time `json:"ended_at,omitempty"`
	RoundTripMS *int64     `json:"round_trip_ms,omitempty"`
	Result      any        `json:"result,omitempty"`
	Message     string     `json:"message,omitempty"`
	LateReplyAt *time.Time `json:"late_reply_at,omitempty"`
}

func opt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func rawJSON(s *string) any {
	if s == nil {
		return nil
	}
	if json.Valid([]byte(*s)) {
		return json.RawMessage(*s)
	}
	return *s
}

// ViewOf returns the JSON view of c.
func ViewOf(c *control.Command) View {
	v := View{ID: c.ID, Device: identity.Key(c.Tenant, c.Device), Name: c.Name, Status: string(c.Status),
		Params: rawJSON(c.Payload), CreatedAt: c.CreatedAt.UTC(), ExpiresAt: c.ExpiresAt,
		QueuedAt: opt(c.QueuedAt), SentAt: opt(c.SentAt), DeliveredAt: opt(c.DeliveredAt), EndedAt: opt(c.EndedAt),
		Result: rawJSON(c.Result), LateReplyAt: opt(c.LateReplyAt)}
	if c.Message != nil {
		v.Message = *c.Message
	}
	if rt := c.RoundTrip(); rt > 0 {
		ms := rt.Milliseconds()
		v.RoundTripMS = &ms
	}
	return v
}

func writeJSON(out io.Writer, c *control.Command) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(ViewOf(c))
}

func readAll(ctx context.Context, conn *cli.Conn, timeout time.Duration) (map[string]*control.Command, error) {
	if timeout <= 0 {
		return nil, cli.Usagef("--timeout: must be positive, got %s", timeout)
	}
	s, err := open(conn)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	all, err := control.ReadAll(rctx, s.kopts, s.serde)
	if err != nil {
		return nil, fmt.Errorf("reading %s within --timeout %s: %w", topics.CommandStatus, timeout, err)
	}
	return all, nil
}

func statusCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Print one command's lifecycle as JSON (from commands.status)",
		Long: `Print one command's lifecycle as JSON: its status, parameters, the time of
each transition, the round trip (sent → reply), the device's result or
message, and a late reply if one came. Exits 1 when commands.status has no
record of the id (not yet queued by the bridge, or older than its retention).`,
		Example: `  drover command status c-5f1e0c7a9b2d4e68`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := readAll(cmd.Context(), conn, timeout)
			if err != nil {
				return err
			}
			c, ok := all[args[0]]
			if !ok {
				return fmt.Errorf("command status: no command %s on %s", strconv.Quote(args[0]), topics.CommandStatus)
			}
			return writeJSON(cmd.OutOrStdout(), c)
		},
	}
	addFlags(conn, cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up reading commands.status after this long")
	return cmd
}

func listCommand(conn *cli.Conn) *cobra.Command {
	var (
		timeout time.Duration
		device  string
		format  string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List commands (of one device with --device), newest first",
		Example: `  drover command list --device demo/collar-0001
  drover command list --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tenant, dev string
			if device != "" {
				var err error
				if tenant, dev, err = identity.ParseKey(device); err != nil {
					return cli.Usagef("--device: want TENANT/DEVICE: %v", err)
				}
			}
			if format != "table" && format != "json" {
				return cli.Usagef("--format: want table or json, got %q", format)
			}
			all, err := readAll(cmd.Context(), conn, timeout)
			if err != nil {
				return err
			}
			var list []*control.Command
			for _, c := range all {
				if device == "" || (c.Tenant == tenant && c.Device == dev) {
					list = append(list, c)
				}
			}
			sort.Slice(list, func(i, j int) bool {
				if !list[i].CreatedAt.Equal(list[j].CreatedAt) {
					return list[i].CreatedAt.After(list[j].CreatedAt)
				}
				return list[i].ID < list[j].ID
			})
			return writeList(cmd.OutOrStdout(), list, format)
		},
	}
	addFlags(conn, cmd)
	fs := cmd.Flags()
	fs.StringVar(&device, "device", "", "only this device's commands (TENANT/DEVICE)")
	fs.StringVarP(&format, "format", "o", "table", "output: table or json (one object per line)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up reading commands.status after this long")
	return cmd
}

func writeList(out io.Writer, list []*control.Command, format string) error {
	if format == "json" {
		enc := json.NewEncoder(out)
		for _, c := range list {
			if err := enc.Encode(ViewOf(c)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDEVICE\tNAME\tSTATUS\tCREATED\tROUND TRIP")
	for _, c := range list {
		rt := "-"
		if d := c.RoundTrip(); d > 0 {
			rt = d.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, identity.Key(c.Tenant, c.Device), c.Name, c.Status,
			c.CreatedAt.UTC().Format(time.RFC3339), rt)
	}
	return tw.Flush()
}
