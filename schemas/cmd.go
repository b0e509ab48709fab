package schemas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
)

// DefaultTimeout bounds the registry requests of one `drover schemas`
// command.
const DefaultTimeout = 30 * time.Second

type cmdOptions struct {
	conn      *cli.Conn
	timeout   time.Duration
	schemaDir string
}

// Command returns the `drover schemas` command tree: register, check, list
// and show.
func Command(conn *cli.Conn) *cobra.Command {
	o := &cmdOptions{conn: conn}
	cmd := &cobra.Command{
		Use:   "schemas",
		Short: "Manage the Avro schemas of drover's topics in the schema registry",
		Long: `drover embeds one Avro schema (namespace io.drover) for every topic it writes.
Each is registered in a Confluent-compatible schema registry under the subject
<topic>-value with BACKWARD compatibility, and every value on a drover topic
is written in the Confluent wire format (magic byte 0, 4-byte schema id,
Avro body).

Run 'register' once per deployment (and after upgrading drover) before the
pipeline starts: producers refuse to write with an unregistered schema.
'check' compares the embedded schemas with the registry without changing it.
Both check BACKWARD compatibility themselves, because the embedded registry
of 'drover dev' does not.`,
		Example: `  drover schemas list
  drover schemas show raw.sensor
  drover schemas check --schema-registry-url http://registry:8081
  drover schemas register`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(o.registerCmd(), o.checkCmd(), o.listCmd(), o.showCmd())
	return cmd
}

// validate checks the arguments and --timeout of register and check.
func (o *cmdOptions) validate(args []string) error {
	if o.timeout <= 0 {
		return cli.Usagef("--timeout: must be > 0, got %s", o.timeout)
	}
	return validTopics(args)
}

// registryFlags registers the registry connection flags and --timeout on a
// subcommand that talks to the registry.
func (o *cmdOptions) registryFlags(cmd *cobra.Command) {
	o.conn.AddRegistryFlags(cmd.Flags())
	cmd.Flags().DurationVar(&o.timeout, "timeout", DefaultTimeout, "how long the command may wait for the schema registry")
	cmd.Flags().StringVar(&o.schemaDir, "schema-dir", "", "directory of *.avsc files replacing the embedded schemas of the records they define (check an evolved schema before rebuilding)")
}

// validTopics refuses topics without a schema, as a usage error.
func validTopics(topics []string) error {
	for _, t := range topics {
		if _, ok := ForTopic(t); !ok {
			return cli.Usagef("unknown topic %q: it has no schema (see 'drover schemas list')", t)
		}
	}
	return nil
}

func (o *cmdOptions) registerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "register [TOPIC...]",
		Short: "Register the embedded schemas under <topic>-value (idempotent)",
		Long: `Register each topic's embedded schema under the subject <topic>-value and set
the subject's compatibility to BACKWARD. With no TOPIC, every topic that has a
schema is registered.

A schema that is already registered is reported 'unchanged' with its id and
version, so running register again is harmless. Before anything is written,
each new schema is checked for BACKWARD compatibility with the subject's
latest version (new code must read old records). If any subject is
incompatible, nothing is registered, the offending subjects and fields are
printed, and the command exits with code 3.

Prints one line per subject: subject, schema id, version, created|unchanged.`,
		Example: `  # everything, against the registry of 'drover dev'
  drover schemas register

  # two topics, against a production registry
  drover schemas register raw.sensor raw.gps --schema-registry-url https://registry.example:8081`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(args); err != nil {
				return err
			}
			opts, err := dirOptions(o.schemaDir)
			if err != nil {
				return err
			}
			client, err := o.conn.Registry()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			results, err := Register(ctx, client, args, opts...)
			if err != nil {
				var ie *IncompatibleError
				if errors.As(err, &ie) {
					return fmt.Errorf("%w: %w", cli.ErrCheckFailed, err)
				}
				return fmt.Errorf("registering schemas at %s: %w", o.conn.SchemaRegistryURL, err)
			}
			return writeResults(cmd.OutOrStdout(), results)
		},
	}
	o.registryFlags(cmd)
	return cmd
}

func (o *cmdOptions) checkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [TOPIC...]",
		Short: "Compare the embedded schemas with the registry (exit 3 on a problem)",
		Long: `Compare each topic's embedded schema with the latest version registered under
<topic>-value, without changing the registry. With no TOPIC, every topic that
has a schema is checked. Each subject is reported as:

  identical     the latest registered version is the embedded schema
  compatible    it differs, but the embedded schema reads records written
                with it (BACKWARD); 'register' would add a version
  incompatible  the embedded schema cannot read records written with it;
                the field and the reason are printed
  missing       nothing is registered under the subject

The command exits with code 3 when any subject is incompatible or missing.`,
		Example: `  drover schemas check
  drover schemas check raw.sensor --schema-registry-url http://registry:8081`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(args); err != nil {
				return err
			}
			opts, err := dirOptions(o.schemaDir)
			if err != nil {
				return err
			}
			client, err := o.conn.Registry()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			results, err := Check(ctx, client, args, opts...)
			if err != nil {
				return fmt.Errorf("checking schemas at %s: %w", o.conn.SchemaRegistryURL, err)
			}
			if err := writeChecks(cmd.OutOrStdout(), results); err != nil {
				return err
			}
			var bad []string
			for _, r := range results {
				if !r.OK() {
					bad = append(bad, r.Subject+" "+string(r.Status))
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%w: %d of %d subjects need attention: %s", cli.ErrCheckFailed, len(bad), len(results), strings.Join(bad, ", "))
			}
			return nil
		},
	}
	o.registryFlags(cmd)
	return cmd
}

func (o *cmdOptions) listCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the topics that have a schema, their subjects and records",
		Long: `Print one line per topic that has an embedded schema: the topic, its registry
subject (<topic>-value) and the Avro record it carries. It does not contact
the registry.`,
		Example: `  drover schemas list
  drover schemas list | grep Envelope`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "TOPIC\tSUBJECT\tRECORD")
			for _, t := range Topics() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t, Subject(t), RecordName(t))
			}
			return tw.Flush()
		},
	}
}

func (o *cmdOptions) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show TOPIC",
		Short: "Print the embedded Avro schema (avsc) of a topic",
		Long: `Print the Avro schema (avsc JSON, with the documentation of every field) that
drover embeds for TOPIC's values. It does not contact the registry.`,
		Example: `  drover schemas show raw.sensor
  drover schemas show governance.data.products | jq .fields[].name`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validTopics(args); err != nil {
				return err
			}
			src := Source(args[0])
			if !strings.HasSuffix(src, "\n") {
				src += "\n"
			}
			_, err := io.WriteString(cmd.OutOrStdout(), src)
			return err
		},
	}
}

func writeResults(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tID\tVERSION\tSTATUS")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", r.Subject, r.ID, r.Version, r.Status)
	}
	return tw.Flush()
}

func writeChecks(w io.Writer, results []CheckResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tSTATUS\tVERSION\tID\tDETAIL")
	for _, r := range results {
		version, id := "-", "-"
		if r.Status != Missing {
			version, id = fmt.Sprint(r.Version), fmt.Sprint(r.ID)
		}
		detail := ""
		switch {
		case r.Status == Incompatible && r.Field != "":
			detail = fmt.Sprintf("field %q: %s", r.Field, r.Reason)
		case r.Status == Incompatible:
			detail = r.Reason
		case r.Status == Missing:
			detail = "run 'drover schemas register'"
		case r.Status == Compatible:
			detail = "'drover schemas register' adds a version"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Subject, r.Status, version, id, detail)
	}
	return tw.Flush()
}
