package topics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
)

// DefaultTimeout bounds how long the topics commands wait for Kafka to
// answer before they report it unreachable (--timeout).
const DefaultTimeout = 15 * time.Second

// cmdOptions are the flags the topics subcommands share.
type cmdOptions struct {
	conn      *cli.Conn
	catalogue string
	cap       int16
	timeout   time.Duration
	aclsFile  string
	acls      bool
}

// Command returns the `topics` command: list, diff and apply. It reads the
// Kafka connection from conn (flags registered on the subcommands that talk
// to Kafka). Environment variables are bound by the root command:
// --replication-cap is DROVER_REPLICATION_CAP, --catalogue DROVER_CATALOGUE.
func Command(conn *cli.Conn) *cobra.Command {
	o := &cmdOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "topics",
		Short: "Show the topic catalogue and reconcile Kafka with it",
		Long: `The topic catalogue lists every topic drover and the DEAL-IoT reference stack
use, with partitions, replication and the configs drover manages
(cleanup.policy, retention.ms, min.insync.replicas). The catalogue is
embedded in the binary; --catalogue reads another file in the same format.

'drover topics diff' compares the cluster with the catalogue, 'apply' creates
missing topics, raises partition counts and aligns configs. Neither ever
deletes a topic, removes partitions or changes replication: those
differences are reported as drift for an operator to handle.

Replication in the catalogue is the production value (3). A smaller cluster
needs --replication-cap: 1 for the single-broker dev stack (drover dev writes
DROVER_REPLICATION_CAP=1 to its env file). The cap also lowers
min.insync.replicas to at most the capped replication.`,
		Example: `  # the catalogue, as a table
  drover topics list

  # what would change on the dev stack, then change it
  drover topics diff --replication-cap 1
  drover topics apply --replication-cap 1

  # a production cluster, checking first
  drover topics apply --dry-run --kafka-brokers kafka-0:9092,kafka-1:9092`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.catalogue, "catalogue", "", "topic catalogue YAML file (empty = the catalogue embedded in drover)")
	pf.Int16Var(&o.cap, "replication-cap", 0, "cap every topic's replication (and min.insync.replicas) at N; 0 = no cap, 1 for a single-broker cluster")
	pf.StringVar(&o.aclsFile, "acls-file", "", "Kafka ACL file, principals per stage (empty = the ACL file embedded in drover)")

	// New subcommands (describe TOPIC, ...) hook in here and reuse o.
	cmd.AddCommand(o.listCmd(), o.diffCmd(), o.applyCmd(), o.describeCmd(), o.aclsCmd())
	return cmd
}

// kafkaFlags registers the Kafka connection flags and --timeout on a
// subcommand that talks to the cluster.
func (o *cmdOptions) kafkaFlags(cmd *cobra.Command) {
	o.conn.AddKafkaFlags(cmd.Flags())
	cmd.Flags().DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long to wait for Kafka to answer (apply allows 4× for its changes)")
}

// load returns the catalogue the flags select, capped.
func (o *cmdOptions) load() (*Catalogue, error) {
	if o.cap < 0 {
		return nil, cli.Usagef("--replication-cap: must be ≥ 0, got %d", o.cap)
	}
	var (
		cat *Catalogue
		err error
	)
	if o.catalogue == "" {
		cat, err = Default()
	} else {
		cat, err = Load(o.catalogue)
	}
	if err != nil {
		return nil, cli.Usagef("--catalogue: %w", err)
	}
	return cat.WithReplicationCap(o.cap), nil
}

func (o *cmdOptions) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Print the topic catalogue as a table",
		Long: `Print the catalogue: name, partitions, replication (after --replication-cap),
cleanup policy and retention. It does not contact Kafka.`,
		Example: `  drover topics list
  drover topics list --replication-cap 1
  drover topics list --catalogue ./my-topics.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := o.load()
			if err != nil {
				return err
			}
			return WriteTable(cmd.OutOrStdout(), cat)
		},
	}
}

func (o *cmdOptions) diffCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show how the cluster differs from the catalogue (exit 3 on drift)",
		Long: `Compare the Kafka cluster with the catalogue and print one line per
difference: topics to create, partition counts to raise, configs to set, and
drift apply will not fix (more partitions than the catalogue, a different
replication factor). Topics the catalogue does not know are listed as
unmanaged, for information.

With --acls it also compares the cluster's ACLs with the ACL file (acls.yaml,
one principal per stage): ACLs missing, and extra ACLs of the file's
principals (or of User:*). ACLs of other principals are counted, not listed.
Listing ACLs needs DESCRIBE on the cluster and an authorizer on the brokers.

Exit status: 0 when the cluster matches, 3 when anything differs, 1 when
Kafka cannot be reached.`,
		Example: `  drover topics diff --replication-cap 1
  DROVER_KAFKA_BROKERS=kafka-0:9092 drover topics diff
  drover topics diff --acls --kafka-sasl-mechanism PLAIN --kafka-sasl-user drover-ops --kafka-sasl-password-file ops.pw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, set, err := o.loadWithACLs()
			if err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				plan, err := o.diff(ctx, adm, cat, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprint(cmd.OutOrStdout(), plan)
				n := len(plan.Changes)
				if set != nil {
					aplan, err := o.diffACLs(ctx, adm, set)
					if err != nil {
						return err
					}
					fmt.Fprint(cmd.OutOrStdout(), aplan)
					n += len(aplan.Missing) + len(aplan.Extra)
				}
				if n > 0 {
					return fmt.Errorf("%d difference(s) between the cluster and the catalogue: %w", n, cli.ErrCheckFailed)
				}
				return nil
			})
		},
	}
	o.kafkaFlags(cmd)
	o.aclsFlag(cmd)
	return cmd
}

func (o *cmdOptions) applyCmd() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Create missing topics, raise partitions and align configs",
		Long: `Make the cluster match the catalogue: create missing topics, raise partition
counts that are lower than the catalogue's, and set the configs the catalogue
names (IncrementalAlterConfigs; other configs are left alone). apply never
deletes topics, removes partitions or changes replication; such drift is
printed as "not applied". Running apply twice changes nothing the second time.

--dry-run sends every change as a validate-only request: the cluster checks
it and nothing changes.

With --acls it then creates the ACLs of the ACL file (acls.yaml) that the
cluster lacks (CreateACLs: run it as the brokers' super user). It never
deletes an ACL: extra ones are printed as "not applied", with the
kafka-acls.sh command that removes them. Kafka cannot validate ACLs without
creating them, so --dry-run only lists them.`,
		Example: `  drover topics apply --dry-run --replication-cap 1
  drover topics apply --replication-cap 1
  drover topics apply --catalogue ./topics.yaml --kafka-brokers kafka-0:9092
  drover topics apply --acls --kafka-sasl-mechanism PLAIN --kafka-sasl-user admin --kafka-sasl-password-file admin.pw`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, set, err := o.loadWithACLs()
			if err != nil {
				return err
			}
			return o.withAdmin(cmd.Context(), func(ctx context.Context, adm *kadm.Client) error {
				plan, err := o.diff(ctx, adm, cat, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				actx, cancel := context.WithTimeout(ctx, 4*o.timeout)
				defer cancel()
				rep, err := Apply(actx, adm, plan, dryRun)
				fmt.Fprint(cmd.OutOrStdout(), rep)
				if errors.Is(err, ErrNotEnoughBrokers) {
					return fmt.Errorf("%w (use --replication-cap %d or DROVER_REPLICATION_CAP=%d for this cluster)", err, plan.Brokers, plan.Brokers)
				}
				if err != nil || set == nil {
					return o.kafkaErr(err)
				}
				aplan, err := o.diffACLs(ctx, adm, set)
				if err != nil {
					return err
				}
				arep, err := ApplyACLs(actx, adm, aplan, dryRun)
				fmt.Fprint(cmd.OutOrStdout(), arep)
				return o.kafkaErr(err)
			})
		},
	}
	o.kafkaFlags(cmd)
	o.aclsFlag(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate every change with the cluster and change nothing")
	return cmd
}

// aclsFlag registers --acls on a subcommand that talks to the cluster.
func (o *cmdOptions) aclsFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.acls, "acls", false, "also reconcile the Kafka ACLs of the ACL file (--acls-file; needs an authorizer on the brokers)")
}

// loadWithACLs returns the catalogue and, with --acls, the ACL set checked
// against it (nil without --acls).
func (o *cmdOptions) loadWithACLs() (*Catalogue, *ACLSet, error) {
	cat, err := o.load()
	if err != nil || !o.acls {
		return cat, nil, err
	}
	set, err := o.loadACLs(cat)
	return cat, set, err
}

// loadACLs returns the ACL file the flags select, checked against cat.
func (o *cmdOptions) loadACLs(cat *Catalogue) (*ACLSet, error) {
	var (
		set *ACLSet
		err error
	)
	if o.aclsFile == "" {
		set, err = DefaultACLs(cat)
	} else {
		set, err = LoadACLs(o.aclsFile, cat)
	}
	if err != nil {
		return nil, cli.Usagef("--acls-file: %w", err)
	}
	return set, nil
}

// diffACLs runs DiffACLs within --timeout.
func (o *cmdOptions) diffACLs(ctx context.Context, adm *kadm.Client, set *ACLSet) (ACLPlan, error) {
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	plan, err := DiffACLs(dctx, adm, set)
	return plan, o.kafkaErr(err)
}

func (o *cmdOptions) aclsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "acls",
		Short: "Print the Kafka principals of the ACL file and the ACLs they expand to",
		Long: `Print each principal of the ACL file (acls.yaml: one SASL user per stage),
who uses it, and the ACLs it expands to against the catalogue (topic globs
become one LITERAL ACL per catalogue topic). It does not contact Kafka;
'drover topics diff --acls' compares them with a cluster and 'apply --acls'
creates the missing ones.`,
		Example: `  drover topics acls
  drover topics acls --acls-file ./acls.yaml --catalogue ./topics.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := o.load()
			if err != nil {
				return err
			}
			set, err := o.loadACLs(cat)
			if err != nil {
				return err
			}
			return WriteACLs(cmd.OutOrStdout(), set)
		},
	}
}

// WriteACLs prints each principal (user, used by) followed by its ACLs.
func WriteACLs(w io.Writer, set *ACLSet) error {
	var b strings.Builder
	acls := set.ACLs()
	for i, p := range set.Principals {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s (used by %s): %s\n", p.Name(), strings.Join(p.UsedBy, ", "), p.Description)
		for _, a := range acls {
			if a.Principal == p.Name() {
				fmt.Fprintf(&b, "  %s %s %s (%s)\n", a.Operation, a.Resource, a.Name, strings.ToLower(a.Pattern.String()))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// withAdmin connects to Kafka, checks within --timeout that a broker
// answers, and runs fn with a context bounded by --timeout.
func (o *cmdOptions) withAdmin(ctx context.Context, fn func(context.Context, *kadm.Client) error) error {
	if o.timeout <= 0 {
		return cli.Usagef("--timeout: must be > 0, got %s", o.timeout)
	}
	// kgo's connection handshake does not stop at the context deadline: a
	// broker that accepts but never answers holds Ping (and Close) for the
	// read deadline, RequestTimeoutOverhead (10s by default). Bound both
	// dialing and reading by --timeout.
	cl, err := o.conn.Kafka(kgo.DialTimeout(o.timeout), kgo.RequestTimeoutOverhead(o.timeout))
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	defer adm.Close()
	if err := o.conn.PingKafka(ctx, cl, o.timeout); err != nil {
		return err
	}
	return fn(ctx, adm)
}

// diff runs Diff within --timeout and notes on w when the cluster has fewer
// brokers than the catalogue's replication.
func (o *cmdOptions) diff(ctx context.Context, adm *kadm.Client, cat *Catalogue, w io.Writer) (Plan, error) {
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	plan, err := Diff(dctx, adm, cat)
	if err != nil {
		return Plan{}, o.kafkaErr(err)
	}
	var maxRF int16
	for _, t := range cat.Topics {
		maxRF = max(maxRF, t.Replication)
	}
	if plan.Brokers > 0 && int(maxRF) > plan.Brokers {
		fmt.Fprintf(w, "note: the cluster has %d live broker(s) and the catalogue asks for replication up to %d; use --replication-cap %d for this cluster\n", plan.Brokers, maxRF, plan.Brokers)
	}
	return plan, nil
}

// kafkaErr names the brokers in an error that came from a timeout.
func (o *cmdOptions) kafkaErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("kafka at %s did not answer within the time allowed (--timeout %s): %w", strings.Join(o.conn.KafkaBrokers, ","), o.timeout, err)
	}
	return err
}

// WriteTable prints the catalogue as an aligned table: name, partitions,
// replication, cleanup policy, retention, value format (avro, or goka for
// a processor group's internal topic).
func WriteTable(w io.Writer, cat *Catalogue) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPARTITIONS\tREPLICATION\tCLEANUP\tRETENTION\tFORMAT")
	for _, t := range cat.Topics {
		cleanup := t.Configs[CleanupPolicy]
		if cleanup == "" {
			cleanup = "(default)"
		}
		format := t.Format
		if format == "" {
			format = FormatAvro
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\n", t.Name, t.Partitions, t.Replication, cleanup, humanRetention(t.Configs[RetentionMs]), format)
	}
	return tw.Flush()
}

// humanRetention renders retention.ms: "7d", "12h", "forever", "(default)".
func humanRetention(ms string) string {
	if ms == "" {
		return "(default)"
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	switch {
	case err != nil:
		return ms
	case n == -1:
		return "forever"
	case n > 0 && n%(24*3600*1000) == 0:
		return strconv.FormatInt(n/(24*3600*1000), 10) + "d"
	case n > 0 && n%(3600*1000) == 0:
		return strconv.FormatInt(n/(3600*1000), 10) + "h"
	}
	return time.Duration(n * int64(time.Millisecond)).String()
}
