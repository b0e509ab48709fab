package doorscmd

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/doors/coap"
	"github.com/drover-iot/drover/ingest/decode"
)

// CoAP defaults.
const (
	DefaultCoAPDTLSAddr  = "127.0.0.1:5684"
	DefaultCoAPAdminAddr = "127.0.0.1:9486"
)

type coapFlags struct {
	coreFlags
	udpAddr, dtlsAddr string
	maxBody           int
	timeout, retry    time.Duration
}

// CoAPCommand returns `drover coap`.
func CoAPCommand(conn *cli.Conn) *cobra.Command {
	var f coapFlags
	cmd := &cobra.Command{
		Use:   "coap",
		Short: "Run the CoAP door: confirmable POSTs over DTLS with pre-shared keys from the registry",
		Long: `coap accepts device payloads as CoAP (RFC 7252) confirmable POSTs to
/devices/{tenant}/{device}/{channel} over DTLS 1.2 with a pre-shared key per
device (PSK identity "tenant/device", the key derived from the device's
registry secret), and hands them to the ingest core like the MQTT bridge. It
answers 2.04 only after Kafka acknowledged, 4.xx with the dead-letter reason,
5.03 with Max-Age when Kafka does not answer within --timeout. Plain UDP
(--udp-addr) carries no identity; drover dev uses it. See doors/coap/README.md.`,
		Example: `  drover coap
  drover coap --dtls-addr :5684`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd.Context(), conn) },
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	f.add(fs, DefaultCoAPAdminAddr)
	fs.StringVar(&f.dtlsAddr, "dtls-addr", DefaultCoAPDTLSAddr, "UDP address of CoAP over DTLS (empty = none)")
	fs.StringVar(&f.udpAddr, "udp-addr", "", "UDP address of plain CoAP, without device identity (empty = none; for development only)")
	fs.IntVar(&f.maxBody, "max-body", decode.DefaultMaxPayload, "bytes of one payload")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long a request waits for Kafka's acknowledgement before 5.03")
	fs.DurationVar(&f.retry, "retry-after", 5*time.Second, "Max-Age of a 5.03")
	return cmd
}

func (f *coapFlags) run(ctx context.Context, conn *cli.Conn) error {
	if err := positive("max-body", int64(f.maxBody)); err != nil {
		return err
	}
	for flag, d := range map[string]time.Duration{"timeout": f.timeout, "retry-after": f.retry} {
		if err := positiveDur(flag, d); err != nil {
			return err
		}
	}
	if f.udpAddr == "" && f.dtlsAddr == "" {
		return cli.Usagef("--dtls-addr and --udp-addr: both empty, nothing to serve")
	}
	c, err := f.open(ctx, conn, "coap")
	if err != nil {
		return err
	}
	s, err := coap.New(coap.Config{UDPAddr: f.udpAddr, DTLSAddr: f.dtlsAddr, Keys: coap.RegistryKeys{Devices: c.view},
		Insecure: f.udpAddr != "", MaxPayload: f.maxBody, Timeout: f.timeout, RetryAfter: f.retry, Log: c.log}, c.Core)
	if err != nil {
		return cli.Usagef("%w", err)
	}
	return c.run(ctx, func(ctx context.Context) error {
		if err := c.view.WaitReady(ctx); err != nil {
			return nil
		}
		c.log.Info("coap door listening", "dtls", f.dtlsAddr, "udp", f.udpAddr)
		return s.Run(ctx)
	})
}
