// Package appscmd holds `drover apps`: list, validate and describe the
// stream apps of an apps file (package apps), the command layer beside the
// package rather than inside it.
package appscmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/processors/apps"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultMetricsURL is where `drover apps describe` reads the apps'
// record counters: the admin port of `drover process` (and of drover dev's
// processors stage).
const DefaultMetricsURL = "http://127.0.0.1:9471/metrics"

type options struct {
	file string
}

func (o *options) addFlag(fs *pflag.FlagSet) {
	fs.StringVar(&o.file, "apps", "", "apps file (YAML; empty = the example apps drover dev runs)")
}

func (o *options) load() ([]*apps.App, error) {
	if o.file == "" {
		as, err := apps.Example()
		if err != nil {
			return nil, fmt.Errorf("example apps: %w", err)
		}
		return as, nil
	}
	as, err := apps.Load(o.file)
	if err != nil {
		return nil, cli.Usagef("--apps: %w", err)
	}
	return as, nil
}

// Command returns `drover apps`.
func Command(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "List, check and describe stream apps (SQL-like filters as goka groups)",
		Long: `Stream apps are declared in a YAML file and run by 'drover process --apps FILE'
(drover dev runs the example apps). Each app is its own goka group, app-NAME,
reading its source topics and writing the SELECTed fields of the records its
WHERE accepts to its target topic (apps.*), which the sink stores in
app_records. The query language is the one of 'drover tail --where'.`,
	}
	cmd.AddCommand(listCommand(), validateCommand(), describeCommand(conn), revokeCommand(conn))
	return cmd
}

func listCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the apps of an apps file",
		Example: `  drover apps list
  drover apps list --apps processors/apps/example.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as, err := o.load()
			if err != nil {
				return err
			}
			return writeList(cmd.OutOrStdout(), as)
		},
	}
	o.addFlag(cmd.Flags())
	return cmd
}

func writeList(w io.Writer, as []*apps.App) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGROUP\tSOURCES\tTENANT\tDEVICES\tTARGET\tSHARE")
	for _, a := range as {
		share := "-"
		if a.Share != nil {
			share = a.Share.Tenant + " (" + a.Share.Agreement + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Group(), strings.Join(a.Topics, ","), dash(a.Tenant), dash(a.Devices), a.Target, share)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func validateCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check an apps file: YAML, queries, fields against the source schemas",
		Long: `validate checks an apps file as 'drover process --apps' does at start, without a
cluster: unknown YAML fields, query syntax (errors name the file, line, column
and app), fields the source schemas do not have, targets and shares. It exits
2 on the first bad file.`,
		Example: `  drover apps validate --apps processors/apps/example.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as, err := o.load()
			if err != nil {
				return err
			}
			name := o.file
			if name == "" {
				name = "the example apps"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d apps OK\n", name, len(as))
			return nil
		},
	}
	o.addFlag(cmd.Flags())
	return cmd
}

func describeCommand(conn *cli.Conn) *cobra.Command {
	var (
		o          options
		metricsURL string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show an app's graph, query, lag and records in/out/filtered",
		Long: `describe prints an app's graph (sources → group → target), its query and, from
the cluster, the group's lag and the records in its target topic; the records
read, written, filtered and skipped come from the /metrics of the running
process (--metrics-url).`,
		Example: `  drover apps describe hot-readings`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := o.load()
			if err != nil {
				return err
			}
			var app *apps.App
			for _, a := range as {
				if a.Name == args[0] {
					app = a
				}
			}
			if app == nil {
				return cli.Usagef("no app %q (apps: %s)", args[0], names(as))
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			adm, closeAdm, err := conn.Admin()
			if err != nil {
				return err
			}
			defer closeAdm()
			return describe(ctx, cmd.OutOrStdout(), adm, app, metricsURL)
		},
	}
	o.addFlag(cmd.Flags())
	conn.AddKafkaFlags(cmd.Flags())
	cmd.Flags().StringVar(&metricsURL, "metrics-url", DefaultMetricsURL, "the /metrics of the process running the apps (drover process, drover dev)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "give up on the cluster after this long")
	return cmd
}

func names(as []*apps.App) string {
	var n []string
	for _, a := range as {
		n = append(n, a.Name)
	}
	return strings.Join(n, ", ")
}

func describe(ctx context.Context, w io.Writer, adm *kadm.Client, a *apps.App, metricsURL string) error {
	fmt.Fprintf(w, "app %s (goka group %s)\n\n", a.Name, a.Group())
	src := strings.Join(a.Topics, ", ")
	if a.Tenant != "" {
		src += " [tenant " + a.Tenant + "]"
	}
	if a.Devices != "" {
		src += " [devices " + a.Devices + "]"
	}
	fmt.Fprintf(w, "  %s\n    └─▶ %s ──▶ %s", src, a.Group(), a.Target)
	if a.Share != nil {
		fmt.Fprintf(w, "  (shared with tenant %s, agreement %s)", a.Share.Tenant, a.Share.Agreement)
	}
	fmt.Fprintf(w, "\n\nquery:\n  %s\n\n", strings.ReplaceAll(strings.TrimSpace(a.QueryText), "\n", "\n  "))
	for _, l := range shape(a) {
		fmt.Fprintln(w, l)
	}

	lag, state := "not running yet (no group on the cluster)", ""
	lags, err := adm.Lag(ctx, a.Group())
	if err != nil {
		return fmt.Errorf("lag of %s: %w", a.Group(), err)
	}
	if l, ok := lags[a.Group()]; ok && l.Error() == nil && len(l.Lag) > 0 {
		lag, state = fmt.Sprint(l.Lag.Total()), l.State
	}
	fmt.Fprintf(w, "lag:          %s", lag)
	if state != "" {
		fmt.Fprintf(w, " (group %s)", state)
	}
	fmt.Fprintln(w)
	ends, err := adm.ListEndOffsets(ctx, a.Target)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", a.Target, err)
	}
	var stored int64
	missing := false
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			missing = true
			return
		}
		stored += o.Offset
	})
	if missing {
		fmt.Fprintf(w, "target:       %s does not exist yet\n", a.Target)
	} else {
		fmt.Fprintf(w, "target:       %d records in %s\n", stored, a.Target)
	}
	counts, err := scrape(ctx, metricsURL, a.Name)
	if err != nil {
		fmt.Fprintf(w, "records:      unknown (%v)\n", err)
		return nil
	}
	fmt.Fprintf(w, "records:      in %d, out %d, filtered %d, skipped %d, errors %d, undecodable %d (since the process started)\n",
		counts["in"], counts["out"], counts["filtered"], counts["skipped"], counts["errors"], counts["bad"])
	return nil
}

// scrape reads drover_app_records_total of app from a /metrics page.
func scrape(ctx context.Context, url, app string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("process metrics not reachable at %s", url)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	mf, ok := mfs["drover_app_records_total"]
	if !ok {
		return nil, errors.New("the process at " + url + " runs no apps")
	}
	out := map[string]int64{}
	found := false
	for _, m := range mf.GetMetric() {
		var a, o string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "app":
				a = l.GetValue()
			case "outcome":
				o = l.GetValue()
			}
		}
		if a == app {
			found = true
			out[o] = int64(m.GetCounter().GetValue())
		}
	}
	if !found {
		return nil, fmt.Errorf("the process at %s does not run app %s", url, app)
	}
	return out, nil
}

func revokeCommand(conn *cli.Conn) *cobra.Command {
	var (
		o       options
		reason  string
		actor   string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "revoke AGREEMENT",
		Short: "Revoke a sharing agreement: its apps stop sharing within a minute, and the revocation is recorded",
		Long: `revoke writes a sharing.revoked record for AGREEMENT to dataact.third_party.sharing
(the Data Act register of third-party sharing, Envelope schema). Every running
app that shares under the agreement reads it within seconds and writes nothing
more to its target (drover_app_records_total{outcome="revoked"} counts what it
held back); a restarted app reads past revocations before it starts. The
agreement's evidence of the hours before stays. It lists the apps of --apps
that share under the agreement.`,
		Example: `  drover apps revoke AGR-demo-vet-1 --reason "contract ended"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			as, err := o.load()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			cl, err := conn.Kafka()
			if err != nil {
				return err
			}
			defer cl.Close()
			serde, err := schemas.ConnSerde(conn)
			if err != nil {
				return err
			}
			env, err := apps.Revoke(ctx, cl, serde, args[0], reason, actor, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agreement %s revoked at %s (event %s on %s)\n", args[0], env.TS.Format(time.RFC3339), env.EventID, topics.ThirdPartySharing)
			var sharing []string
			for _, a := range as {
				if a.Share != nil && a.Share.Agreement == args[0] {
					sharing = append(sharing, a.Name)
				}
			}
			if len(sharing) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "apps that stop sharing: %s\n", strings.Join(sharing, ", "))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), "no app of the apps file shares under it")
			}
			return nil
		},
	}
	o.addFlag(cmd.Flags())
	conn.AddKafkaFlags(cmd.Flags())
	conn.AddRegistryFlags(cmd.Flags())
	cmd.Flags().StringVar(&reason, "reason", "", "why the agreement is revoked (recorded)")
	cmd.Flags().StringVar(&actor, "actor", os.Getenv("USER"), "who revokes it (recorded; default $USER)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "give up on the cluster after this long")
	return cmd
}

// shape describes a join's or a window's settings, defaults included.
func shape(a *apps.App) []string {
	var out []string
	if j := a.Join; j != nil {
		by := "the record key (TENANT/DEVICE)"
		if j.Link != "" {
			by = "registry label " + j.Link
		}
		out = append(out, fmt.Sprintf("join:         %s (left) with %s (right), by %s; tolerance %s, lateness %s, buffer %d per key",
			j.Left, j.Right, by, j.Tolerance, j.Lateness, j.Buffer))
		if len(j.Interpolate) > 0 {
			out = append(out, "interpolate:  "+strings.Join(j.Interpolate, ", "))
		}
	}
	if w := a.Window; w != nil {
		out = append(out, fmt.Sprintf("window:       TUMBLE(%s) per device, lateness %s", w.Size, a.Lateness))
	}
	return out
}
