package command

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
)

// TenantsCommand returns `drover tenants`.
func TenantsCommand(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Tenants of the device registry and their CAs: add, list, ca",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("drover tenants: name a subcommand (see 'drover tenants --help')")
		},
	}
	cmd.AddCommand(tenantAddCommand(conn), tenantListCommand(conn), tenantCACommand(conn))
	return cmd
}

type tenantAddFlags struct {
	keyOut, caCert, caKey string
	noCA                  bool
	timeout               time.Duration
}

func tenantAddCommand(conn *cli.Conn) *cobra.Command {
	var f tenantAddFlags
	cmd := &cobra.Command{
		Use:   "add TENANT",
		Short: "Register a tenant and create its CA (the key goes to a file, mode 0600)",
		Long: `Register a tenant. By default a CA is created for it (ECDSA P-256, 10 years):
its certificate is published in the registry, where brokers and doors read it,
and its key is written to --ca-key-out (default TENANT-ca.key, mode 0600,
never overwritten) — keep it offline or in a secret store; 'drover devices add
--csr/--issue-cert' and the registry service's --ca-key-dir need it.
--ca-cert and --ca-key publish an existing CA instead; --no-ca registers a
tenant whose devices use secrets only.`,
		Example: `  drover tenants add farm1
  drover tenants add farm2 --ca-cert farm2-ca.pem --ca-key farm2-ca.key
  drover tenants add lab --no-ca`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(f.run(cmd.Context(), conn, args[0], cmd.OutOrStdout()))
		},
	}
	fs := cmd.Flags()
	sessionFlags(fs, conn, &f.timeout)
	fs.StringVar(&f.keyOut, "ca-key-out", "", "where to write the new CA's key (default TENANT-ca.key)")
	fs.StringVar(&f.caCert, "ca-cert", "", "publish this existing CA certificate (PEM) instead of creating one")
	fs.StringVar(&f.caKey, "ca-key", "", "the existing CA's key (PEM), checked against --ca-cert")
	fs.BoolVar(&f.noCA, "no-ca", false, "no CA: the tenant's devices use secrets only")
	return cmd
}

func (f *tenantAddFlags) caPEM(tenant string) (cert, key []byte, err error) {
	switch {
	case f.noCA && (f.caCert != "" || f.caKey != "" || f.keyOut != ""):
		return nil, nil, cli.Usagef("--no-ca: not with --ca-cert, --ca-key or --ca-key-out")
	case f.noCA:
		return nil, nil, nil
	case (f.caCert == "") != (f.caKey == ""):
		return nil, nil, cli.Usagef("--ca-cert and --ca-key: give both or neither")
	case f.caCert != "":
		if cert, err = os.ReadFile(f.caCert); err != nil {
			return nil, nil, cli.Usagef("--ca-cert: %w", err)
		}
		if key, err = os.ReadFile(f.caKey); err != nil {
			return nil, nil, cli.Usagef("--ca-key: %w", err)
		}
		if _, err := registry.LoadCA(tenant, cert, key); err != nil {
			return nil, nil, cli.Usagef("--ca-cert/--ca-key: %w", err)
		}
		return cert, nil, nil
	}
	if f.keyOut == "" {
		f.keyOut = tenant + "-ca.key"
	}
	if _, err := os.Stat(f.keyOut); err == nil {
		return nil, nil, cli.Usagef("--ca-key-out: %s exists; not overwriting it", f.keyOut)
	}
	return registry.NewCA(tenant, time.Now())
}

func (f *tenantAddFlags) run(ctx context.Context, conn *cli.Conn, tenant string, out io.Writer) error {
	if err := identity.ValidTenant(tenant); err != nil {
		return cli.Usagef("%w", err)
	}
	cert, key, err := f.caPEM(tenant)
	if err != nil {
		return err
	}
	s, err := open(ctx, conn, f.timeout)
	if err != nil {
		return err
	}
	defer s.close()
	if _, ok := s.view.Tenant(tenant); ok {
		return registry.Errorf(registry.ErrExists, "tenant %s already exists", tenant)
	}
	if key != nil {
		// The key first: a tenant must never be published with a CA whose
		// key was lost.
		if err := writeNew(f.keyOut, key, 0o600); err != nil {
			return fmt.Errorf("--ca-key-out: %w", err)
		}
	}
	t, err := s.store.AddTenant(ctx, tenant, string(cert))
	if err != nil {
		if key != nil {
			_ = os.Remove(f.keyOut)
		}
		return err
	}
	fmt.Fprintf(out, "tenant %s added\n", t.ID)
	if key != nil {
		fmt.Fprintf(out, "CA key written to %s (mode 0600): keep it safe; its certificate is in the registry ('drover tenants ca %s')\n", f.keyOut, t.ID)
	}
	return nil
}

func tenantListCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	var fmtFlag string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the tenants, their device counts and CAs",
		Example: "  drover tenants list",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			f, err := format(fmtFlag, out)
			if err != nil {
				return err
			}
			s, err := open(cmd.Context(), conn, timeout)
			if err != nil {
				return err
			}
			defer s.close()
			return writeTenants(out, f, s.view)
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	cmd.Flags().StringVarP(&fmtFlag, "format", "o", "", "output: table or json (default table on a terminal, json otherwise)")
	return cmd
}

func writeTenants(out io.Writer, format string, v *registry.View) error {
	counts := map[string]int{}
	for _, d := range v.Devices() {
		counts[d.Tenant]++
	}
	if format == "json" {
		enc := json.NewEncoder(out)
		for _, t := range v.Tenants() {
			var m map[string]any
			b, err := json.Marshal(t)
			if err == nil {
				err = json.Unmarshal(b, &m)
			}
			if err != nil {
				return err
			}
			m["devices"] = counts[t.ID]
			if err := enc.Encode(m); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tDEVICES\tCA\tCA EXPIRES\tCREATED")
	for _, t := range v.Tenants() {
		ca, expires := "-", "-"
		if c, err := t.CACert(); err == nil && c != nil {
			ca, expires = c.Subject.CommonName, c.NotAfter.UTC().Format(time.DateOnly)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", t.ID, counts[t.ID], ca, expires, t.CreatedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func tenantCACommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ca [TENANT...]",
		Short: "Print tenants' CA certificates (all by default) as one PEM bundle, for a broker's cafile",
		Example: `  drover tenants ca > /etc/mosquitto/certs/tenant-cas.pem
  drover tenants ca farm1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open(cmd.Context(), conn, timeout)
			if err != nil {
				return err
			}
			defer s.close()
			var ts []*registry.Tenant
			for _, id := range args {
				t, ok := s.view.Tenant(id)
				if !ok {
					return registry.Errorf(registry.ErrNotFound, "tenant %s is not registered", id)
				}
				ts = append(ts, t)
			}
			if len(args) == 0 {
				ts = s.view.Tenants()
			}
			for _, t := range ts {
				if t.CACertPEM != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "# tenant %s\n%s", t.ID, t.CACertPEM)
				}
			}
			return nil
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	return cmd
}
