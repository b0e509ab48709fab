package command

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/inspect"
	"github.com/drover-iot/drover/registry"
)

const defaultTimeout = 30 * time.Second

// DevicesCommand returns `drover devices` and its subcommands; seen is the
// former `drover devices` (the state.latest listing), kept as `devices seen`.
func DevicesCommand(conn *cli.Conn) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "The device registry: add, list, show, suspend, activate, revoke, rotate, delete, import",
		Long: `The device registry (topic devices.registry) says which devices may send data,
as which tenant, with which credential. A device is TENANT/DEVICE; it connects
with client id and username TENANT/DEVICE and its secret as password, or with a
client certificate signed by its tenant's CA.

Secrets are generated here and shown once: the registry keeps only a salted
hash. 'drover devices seen' lists the devices the state processor has seen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("drover devices: name a subcommand (see 'drover devices --help')")
		},
	}
	seen := inspect.DevicesCommand(conn)
	seen.Use = "seen"
	seen.Short = "List the devices the state processor has seen (state.latest): last seen, online, battery, alerts"
	seen.Example = `  drover devices seen
  drover devices seen --tenant farm-1 --status offline --format json | jq -r .device_id`
	cmd.AddCommand(addCommand(conn), listCommand(conn), showCommand(conn), importCommand(conn), rotateCommand(conn), deleteCommand(conn), seen)
	for _, st := range []struct {
		verb   string
		status registry.Status
		short  string
	}{
		{"suspend", registry.StatusSuspended, "Suspend a device: refused at CONNECT and disconnected; 'activate' undoes it"},
		{"activate", registry.StatusActive, "Activate a suspended device again"},
		{"revoke", registry.StatusRevoked, "Revoke a device for good: refused at CONNECT and disconnected; its messages become dead letters"},
	} {
		cmd.AddCommand(statusCommand(conn, st.verb, st.status, st.short))
	}
	return cmd
}

type addFlags struct {
	typ, secretFile, csr, caKey, certOut, keyOut, format string
	labels, alts                                         map[string]string
	offline, timeout                                     time.Duration
	noSecret, issueCert                                  bool
	push                                                 pushFlags
}

func addCommand(conn *cli.Conn) *cobra.Command {
	var f addFlags
	cmd := &cobra.Command{
		Use:   "add TENANT/DEVICE",
		Short: "Register a device; prints its new secret once",
		Long: `Register a device and print its secret once (the registry stores only a
salted hash). --secret-file uses a secret you supply instead (at least 16
printable characters). With --csr FILE or --issue-cert, the tenant's CA
(--ca-key, the key 'drover tenants add' wrote) signs a client certificate
whose subject CN is TENANT/DEVICE; --issue-cert also generates the device's
key. --no-secret makes a certificate-only device.

With --dynsec-url the secret is also handed to Mosquitto's dynamic security
plugin (the only broker that needs it in plain text).`,
		Example: `  drover devices add farm1/cow-7 --type collar --label herd=north --offline-timeout 2h
  drover devices add farm1/lora-3 --alt-id deveui=70B3D57ED0001234
  drover devices add farm1/gate-1 --no-secret --issue-cert --ca-key farm1-ca.key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(f.run(cmd.Context(), conn, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&f.typ, "type", "", "device type (wildfi also allows its WildFi topics)")
	fs.StringToStringVar(&f.labels, "label", nil, "label KEY=VALUE (repeatable)")
	fs.StringToStringVar(&f.alts, "alt-id", nil, "alternative id KIND=VALUE, e.g. deveui=70B3D57ED0001234 (repeatable)")
	fs.DurationVar(&f.offline, "offline-timeout", 0, "the device's own offline timeout (0 = the offline rule's default)")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the device's secret, instead of a generated one")
	fs.BoolVar(&f.noSecret, "no-secret", false, "certificate only: no secret")
	fs.StringVar(&f.csr, "csr", "", "PEM certificate signing request: sign a client certificate over its key")
	fs.BoolVar(&f.issueCert, "issue-cert", false, "generate the device's key and a client certificate")
	fs.StringVar(&f.caKey, "ca-key", "", "the tenant's CA key (PEM), for --csr and --issue-cert")
	fs.StringVar(&f.certOut, "cert-out", "", "where to write the certificate (default DEVICE.crt)")
	fs.StringVar(&f.keyOut, "key-out", "", "where to write the generated key, mode 0600 (default DEVICE.key)")
	fs.StringVarP(&f.format, "format", "o", "text", "output: text or json")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout, "how long to wait for Kafka")
	f.push.add(fs)
	return cmd
}

func (f *addFlags) newDevice(arg string) (registry.NewDevice, error) {
	tenant, id, err := parseKey(arg)
	if err != nil {
		return registry.NewDevice{}, err
	}
	nd := registry.NewDevice{Tenant: tenant, ID: id, Type: f.typ, Labels: f.labels, AltIDs: f.alts, OfflineTimeout: f.offline, NoSecret: f.noSecret}
	if f.secretFile != "" {
		if nd.Secret, err = cli.ReadSecretFile("secret-file", f.secretFile); err != nil {
			return nd, err
		}
	}
	switch {
	case f.format != "text" && f.format != "json":
		return nd, cli.Usagef("--format: %q (want text or json)", f.format)
	case f.csr != "" && f.issueCert:
		return nd, cli.Usagef("--csr and --issue-cert: give one")
	case (f.csr != "" || f.issueCert) && f.caKey == "":
		return nd, cli.Usagef("--ca-key: required with --csr or --issue-cert")
	case f.caKey != "" && f.csr == "" && !f.issueCert:
		return nd, cli.Usagef("--ca-key: only with --csr or --issue-cert")
	}
	return nd, nil
}

func (f *addFlags) run(ctx context.Context, conn *cli.Conn, arg string, out, errOut io.Writer) error {
	nd, err := f.newDevice(arg)
	if err != nil {
		return err
	}
	var req *registry.CertRequest
	var caKey []byte
	if f.csr != "" || f.issueCert {
		if caKey, err = os.ReadFile(f.caKey); err != nil {
			return cli.Usagef("--ca-key: %w", err)
		}
		req = &registry.CertRequest{NewKey: f.issueCert}
		if f.csr != "" {
			if req.CSR, err = os.ReadFile(f.csr); err != nil {
				return cli.Usagef("--csr: %w", err)
			}
		}
		if err := f.checkOutputs(nd.ID); err != nil {
			return err
		}
	}
	s, err := open(ctx, conn, f.timeout)
	if err != nil {
		return err
	}
	defer s.close()
	push, closePush, err := f.push.pusher(ctx, s)
	if err != nil {
		return err
	}
	defer closePush()
	var e registry.Enrolled
	if req != nil {
		e, err = s.store.Enrol(ctx, nd, caKey, *req)
	} else {
		e.Added, err = s.store.Add(ctx, nd)
	}
	if err != nil {
		return err
	}
	if err := f.writeCert(e); err != nil {
		return err
	}
	broker := pushOne(push, e.Added, errOut)
	return printAdded(out, f.format, e.Added, broker)
}

// checkOutputs refuses to overwrite a certificate or key file.
func (f *addFlags) checkOutputs(id string) error {
	if f.certOut == "" {
		f.certOut = id + ".crt"
	}
	if f.keyOut == "" {
		f.keyOut = id + ".key"
	}
	for flag, p := range map[string]string{"cert-out": f.certOut, "key-out": f.keyOut} {
		if flag == "key-out" && !f.issueCert {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return cli.Usagef("--%s: %s exists; not overwriting it", flag, p)
		}
	}
	return nil
}

func (f *addFlags) writeCert(e registry.Enrolled) error {
	if e.CertPEM == nil {
		return nil
	}
	if e.KeyPEM != nil {
		if err := writeNew(f.keyOut, e.KeyPEM, 0o600); err != nil {
			return err
		}
	}
	return writeNew(f.certOut, e.CertPEM, 0o644)
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// pushOne hands a new secret to Mosquitto when a pusher is configured and
// says how it went.
func pushOne(push func(key, secret string) error, a registry.Added, errOut io.Writer) string {
	if push == nil || a.Secret == "" {
		return ""
	}
	if err := push(a.Device.Key(), a.Secret); err != nil {
		fmt.Fprintf(errOut, "drover devices: %s is registered, but Mosquitto did not take its secret (%v): it is refused there until 'drover devices rotate %s --dynsec-url ...' succeeds\n", a.Device.Key(), err, a.Device.Key())
		return "pending"
	}
	return "pushed"
}

func printAdded(out io.Writer, format string, a registry.Added, broker string) error {
	if format == "json" {
		return json.NewEncoder(out).Encode(struct {
			Device *registry.Device `json:"device"`
			Secret string           `json:"secret,omitempty"`
			Broker string           `json:"dynsec,omitempty"`
		}{a.Device, a.Secret, broker})
	}
	fmt.Fprintf(out, "%s %s\n", a.Device.Key(), a.Device.Status)
	if a.Secret != "" {
		fmt.Fprintf(out, "secret: %s\n(shown once: only its hash is kept; the device connects with client id and username %s and this secret as password)\n", a.Secret, a.Device.Key())
	}
	for _, fp := range a.Device.CertFingerprints {
		fmt.Fprintf(out, "certificate: sha256 %s\n", fp)
	}
	if broker != "" {
		fmt.Fprintf(out, "mosquitto dynsec: %s\n", broker)
	}
	return nil
}

func statusCommand(conn *cli.Conn, verb string, to registry.Status, short string) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     verb + " TENANT/DEVICE",
		Short:   short,
		Example: "  drover devices " + verb + " farm1/cow-7",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(withDevice(cmd.Context(), conn, timeout, args[0], func(ctx context.Context, s *session, tenant, id string) error {
				d, err := s.store.SetStatus(ctx, tenant, id, to)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", d.Key(), d.Status)
				return nil
			}))
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	return cmd
}

func sessionFlags(fs *pflag.FlagSet, conn *cli.Conn, timeout *time.Duration) {
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.DurationVar(timeout, "timeout", defaultTimeout, "how long to wait for Kafka")
}

// withDevice parses TENANT/DEVICE, opens a session and runs fn.
func withDevice(ctx context.Context, conn *cli.Conn, timeout time.Duration, arg string, fn func(context.Context, *session, string, string) error) error {
	tenant, id, err := parseKey(arg)
	if err != nil {
		return err
	}
	s, err := open(ctx, conn, timeout)
	if err != nil {
		return err
	}
	defer s.close()
	return fn(ctx, s, tenant, id)
}

func rotateCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	var push pushFlags
	var format string
	cmd := &cobra.Command{
		Use:   "rotate TENANT/DEVICE",
		Short: "Give a device a new secret (printed once); the old one stops working",
		Long: `Generate a new secret for a device and print it once. Wherever the registry is
enforced the old secret stops working at once; Mosquitto's dynamic security
holds the new one after --dynsec-url (or the registry service's API) hands it
over, and keeps the device disabled until then.`,
		Example: `  drover devices rotate farm1/cow-7 --dynsec-url tcp://127.0.0.1:1883 --dynsec-password-file dynsec-admin.pass`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return cli.Usagef("--format: %q (want text or json)", format)
			}
			return classify(withDevice(cmd.Context(), conn, timeout, args[0], func(ctx context.Context, s *session, tenant, id string) error {
				p, closePush, err := push.pusher(ctx, s)
				if err != nil {
					return err
				}
				defer closePush()
				a, err := s.store.Rotate(ctx, tenant, id)
				if err != nil {
					return err
				}
				return printAdded(cmd.OutOrStdout(), format, a, pushOne(p, a, cmd.ErrOrStderr()))
			}))
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	push.add(cmd.Flags())
	cmd.Flags().StringVarP(&format, "format", "o", "text", "output: text or json")
	return cmd
}

func deleteCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "delete TENANT/DEVICE",
		Short:   "Forget a revoked device (revoke it first)",
		Example: "  drover devices revoke farm1/cow-7 && drover devices delete farm1/cow-7",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(withDevice(cmd.Context(), conn, timeout, args[0], func(ctx context.Context, s *session, tenant, id string) error {
				if err := s.store.Delete(ctx, tenant, id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", args[0])
				return nil
			}))
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	return cmd
}

func showCommand(conn *cli.Conn) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:     "show TENANT/DEVICE",
		Short:   "Print a device's registry entry as JSON (never its secret or hash)",
		Example: "  drover devices show farm1/cow-7",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(withDevice(cmd.Context(), conn, timeout, args[0], func(_ context.Context, s *session, tenant, id string) error {
				d, ok := s.view.Device(tenant, id)
				if !ok {
					return registry.Errorf(registry.ErrNotFound, "device %s is not registered", args[0])
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(d)
			}))
		},
	}
	sessionFlags(cmd.Flags(), conn, &timeout)
	return cmd
}

// labelString renders labels as k=v,k=v sorted by key.
func labelString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sortStrings(parts)
	return strings.Join(parts, ",")
}
