package doorscmd

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/lorawan"
)

// HTTP defaults.
const (
	DefaultHTTPAddr      = "127.0.0.1:9484"
	DefaultHTTPAdminAddr = "127.0.0.1:9485"
)

type httpFlags struct {
	coreFlags
	addr                  string
	tlsCert, tlsKey       string
	clientCerts           bool
	maxInFlight, maxItems int
	maxBody, maxBatch     int64
	timeout, retry, drain time.Duration
	chirpstackTok, ttsTok string
	dedupTTL              time.Duration
	dedupMax              int
}

// HTTPCommand returns `drover http`.
func HTTPCommand(conn *cli.Conn) *cobra.Command {
	var f httpFlags
	cmd := &cobra.Command{
		Use:   "http",
		Short: "Run the HTTP door: devices POST readings, LoRaWAN network servers post webhooks",
		Long: `http accepts device payloads over HTTP/1.1 and HTTP/2 and hands them to the
ingest core, which decodes, validates, routes and dead-letters them exactly as
the MQTT bridge does:

  POST /v1/devices/{tenant}/{device}/{channel}      one payload (or ?batch=true, or NDJSON)
  POST /v1/lorawan/chirpstack?event=up|join|status  ChirpStack v4 HTTP integration (--chirpstack-token-file)
  POST /v1/lorawan/tts                              The Things Stack v3 webhook (--tts-token-file)

Devices authenticate with "Authorization: Bearer <secret>" (their registry
secret) or a client certificate the registry lists (--client-certs with TLS).
A request is answered 202 only after Kafka acknowledged its records; 400 with
the dead-letter reason; 401/403; 413; 503 with Retry-After when
--max-in-flight requests wait or Kafka does not answer within --timeout. On
SIGTERM it stops accepting and drains for up to --drain. See
doors/httpapi/README.md.`,
		Example: `  drover http
  drover http --listen-addr :8443 --tls-cert door.pem --tls-key door.key --client-certs
  curl -H "Authorization: Bearer $SECRET" -d '{"metric":"t","value":21.5}' \
    http://127.0.0.1:9484/v1/devices/farm1/cow-7/sensor`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd.Context(), conn) },
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	f.add(fs, DefaultHTTPAdminAddr)
	fs.StringVar(&f.addr, "listen-addr", DefaultHTTPAddr, "address of the door (loopback unless asked)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM server certificate: serve HTTPS (h2 by ALPN); without it HTTP/1.1 and h2c")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM key of --tls-cert")
	fs.BoolVar(&f.clientCerts, "client-certs", false, "accept device client certificates (their fingerprints must be in the registry)")
	fs.IntVar(&f.maxInFlight, "max-in-flight", 256, "requests waiting for Kafka at once; one more is answered 503")
	fs.IntVar(&f.maxItems, "max-items", 1000, "items in one batch")
	fs.Int64Var(&f.maxBody, "max-body", decode.DefaultMaxPayload, "bytes of one payload")
	fs.Int64Var(&f.maxBatch, "max-batch", 4<<20, "bytes of one batch request")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long a request waits for Kafka's acknowledgement before 503")
	fs.DurationVar(&f.retry, "retry-after", 5*time.Second, "Retry-After of a 503")
	fs.DurationVar(&f.drain, "drain", 30*time.Second, "how long shutdown waits for the requests in flight")
	fs.StringVar(&f.chirpstackTok, "chirpstack-token-file", "", "file holding the bearer token ChirpStack's HTTP integration sends (empty = no ChirpStack webhook)")
	fs.StringVar(&f.ttsTok, "tts-token-file", "", "file holding the bearer token The Things Stack's webhook sends (empty = no TTS webhook)")
	fs.DurationVar(&f.dedupTTL, "lorawan-dedup-ttl", 10*time.Minute, "how long a LoRaWAN uplink frame is remembered, so a copy from another gateway or server is one record")
	fs.IntVar(&f.dedupMax, "lorawan-dedup-max", 100_000, "frames remembered at most")
	return cmd
}

func (f *httpFlags) config() (httpapi.Config, []httpapi.Option, error) {
	var cfg httpapi.Config
	for flag, v := range map[string]int64{"max-in-flight": int64(f.maxInFlight), "max-items": int64(f.maxItems), "max-body": f.maxBody,
		"max-batch": f.maxBatch, "lorawan-dedup-max": int64(f.dedupMax)} {
		if err := positive(flag, v); err != nil {
			return cfg, nil, err
		}
	}
	for flag, d := range map[string]time.Duration{"timeout": f.timeout, "retry-after": f.retry, "drain": f.drain, "lorawan-dedup-ttl": f.dedupTTL} {
		if err := positiveDur(flag, d); err != nil {
			return cfg, nil, err
		}
	}
	if f.maxBatch < f.maxBody {
		return cfg, nil, cli.Usagef("--max-batch: %d is below --max-body %d", f.maxBatch, f.maxBody)
	}
	tlsCfg, err := serverTLS(f.tlsCert, f.tlsKey, f.clientCerts)
	if err != nil {
		return cfg, nil, err
	}
	cfg = httpapi.Config{Addr: f.addr, TLS: tlsCfg, MaxBody: f.maxBody, MaxBatch: f.maxBatch, MaxItems: f.maxItems,
		MaxInFlight: f.maxInFlight, Timeout: f.timeout, RetryAfter: f.retry, Drain: f.drain}
	tokens := map[lorawan.Network]string{}
	for flag, p := range map[string]struct {
		file string
		n    lorawan.Network
	}{"chirpstack-token-file": {f.chirpstackTok, lorawan.ChirpStack}, "tts-token-file": {f.ttsTok, lorawan.TTS}} {
		tok, err := cli.ReadSecretFile(flag, p.file)
		if err != nil {
			return cfg, nil, err
		}
		if p.file != "" && len(tok) < 16 {
			return cfg, nil, cli.Usagef("--%s: the token is %d characters long; use at least 16", flag, len(tok))
		}
		if tok != "" {
			tokens[p.n] = tok
		}
	}
	var opts []httpapi.Option
	if len(tokens) > 0 {
		opts = append(opts, httpapi.WithLoRaWAN(httpapi.LoRaWAN{Tokens: tokens, Dedup: lorawan.NewDedup(f.dedupTTL, f.dedupMax)}))
	}
	return cfg, opts, nil
}

func (f *httpFlags) run(ctx context.Context, conn *cli.Conn) error {
	cfg, opts, err := f.config()
	if err != nil {
		return err
	}
	c, err := f.open(ctx, conn, "http")
	if err != nil {
		return err
	}
	cfg.Log, cfg.Registerer = c.log, c.admin.Registry
	s, err := httpapi.New(cfg, c.view, c.Core, opts...)
	if err != nil {
		return err
	}
	return c.run(ctx, func(ctx context.Context) error {
		// Devices are refused (401) until the view has the registry.
		if err := c.view.WaitReady(ctx); err != nil {
			return nil
		}
		c.log.Info("http door listening", "addr", f.addr)
		return s.Run(ctx)
	})
}
