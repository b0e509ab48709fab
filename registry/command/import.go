package command

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/registry"
)

type importFlags struct {
	dryRun     bool
	secretsOut string
	timeout    time.Duration
	push       pushFlags
}

func importCommand(conn *cli.Conn) *cobra.Command {
	var f importFlags
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Register the devices of a CSV file, all or none (--dry-run checks only)",
		Long: `Register every device of a CSV file (- reads stdin), or none: the file is checked
first — every line's fields, the tenants exist, no device is already
registered or listed twice, no DevEUI or certificate is claimed twice — and
any problem is reported with its line and field, with nothing written.
--dry-run stops after the checks.

The header names the columns, in any order (tenant and device_id required):

  tenant,device_id,type,offline_timeout,secret,cert_fingerprint,label.KEY,alt.KIND

label.herd is a label "herd"; alt.deveui the LoRaWAN DevEUI; cert_fingerprint
the SHA-256 fingerprint of the device's certificate (';'-separated for
several; with no secret the device is certificate-only); secret a secret to
use instead of a generated one. Lines starting with # are comments.

The generated secrets are printed once, as CSV (tenant,device_id,secret), on
stdout or into --secrets-out (created with mode 0600).`,
		Example: `  drover devices import herd.csv --dry-run
  drover devices import herd.csv --secrets-out herd-secrets.csv`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return classify(f.run(cmd.Context(), conn, args[0], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	sessionFlags(fs, conn, &f.timeout)
	fs.BoolVar(&f.dryRun, "dry-run", false, "check the file against the registry; write nothing")
	fs.StringVar(&f.secretsOut, "secrets-out", "", "write the generated secrets to this new file (mode 0600) instead of stdout")
	f.push.add(fs)
	return cmd
}

func (f *importFlags) run(ctx context.Context, conn *cli.Conn, path string, stdin io.Reader, out, errOut io.Writer) error {
	in := stdin
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return cli.Usagef("%w", err)
		}
		defer fh.Close()
		in = fh
	}
	rows, err := registry.ParseCSV(in)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if f.secretsOut != "" && !f.dryRun {
		if _, err := os.Stat(f.secretsOut); err == nil {
			return cli.Usagef("--secrets-out: %s exists; not overwriting it", f.secretsOut)
		}
	}
	s, err := open(ctx, conn, f.timeout)
	if err != nil {
		return err
	}
	defer s.close()
	nds := make([]registry.NewDevice, len(rows))
	for i, r := range rows {
		nds[i] = r.Device
	}
	var push func(key, secret string) error
	if !f.dryRun {
		var closePush func()
		if push, closePush, err = f.push.pusher(ctx, s); err != nil {
			return err
		}
		defer closePush()
	}
	added, err := s.store.AddDevices(ctx, nds, f.dryRun)
	if err != nil {
		return fmt.Errorf("%s: %w", path, registry.Explain(rows, err))
	}
	if f.dryRun {
		fmt.Fprintf(errOut, "%s: %d device(s) would be added; nothing written (--dry-run)\n", path, len(added))
		return nil
	}
	return f.report(path, added, push, out, errOut)
}

// report writes the generated secrets as CSV and says what was done.
func (f *importFlags) report(path string, added []registry.Added, push func(key, secret string) error, out, errOut io.Writer) error {
	w := out
	if f.secretsOut != "" {
		fh, err := os.OpenFile(f.secretsOut, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer fh.Close()
		w = fh
	}
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"tenant", "device_id", "secret"})
	pushed, pending := 0, 0
	for _, a := range added {
		if a.Secret != "" {
			_ = cw.Write([]string{a.Device.Tenant, a.Device.ID, a.Secret})
		}
		switch pushOne(push, a, errOut) {
		case "pushed":
			pushed++
		case "pending":
			pending++
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	fmt.Fprintf(errOut, "%s: %d device(s) added; their generated secrets are shown once", path, len(added))
	if push != nil {
		fmt.Fprintf(errOut, "; mosquitto dynsec: %d pushed, %d pending", pushed, pending)
	}
	fmt.Fprintln(errOut)
	return nil
}
