// Package doorscmd holds the commands of the doors other than MQTT:
// `drover http` (package doors/httpapi) and `drover coap` (doors/coap).
// Each opens the ingest core (Kafka producer, schema registry, the device
// registry's view, the routes table) and serves its door with an admin
// server beside it (/metrics, /healthz, /readyz).
package doorscmd

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
)

// core is an open ingest core and what it runs on.
type core struct {
	*ingest.Core
	view     *registry.View
	producer *kgo.Client
	admin    *admin.Server
	log      *slog.Logger
}

type coreFlags struct {
	routesFile string
	adminAddr  string
}

func (f *coreFlags) add(fs *pflag.FlagSet, adminAddr string) {
	fs.StringVar(&f.routesFile, "routes", "", "routes file (YAML), as `drover bridge --routes` (default: the embedded routes)")
	admin.AddFlag(fs, &f.adminAddr, adminAddr)
}

// open connects the core: Kafka (idempotent producer, acks from all
// in-sync replicas), the schema registry, and the registry view (the
// admin server's /readyz waits for it).
//
// stage (http, coap) names the door's kprom series on /metrics:
// drover_<stage>_kafka_*{client="producer"|"registry"}.
//
// --routes ("" = routes.Default()) is the MQTT bridge's table: every door
// routes a channel as MQTT routes devices/{tenant}/{device}/{channel}.
func (f *coreFlags) open(ctx context.Context, conn *cli.Conn, stage string) (*core, error) {
	table, err := loadRoutes(f.routesFile)
	if err != nil {
		return nil, cli.Usagef("--routes: %w", err)
	}
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return nil, err
	}
	serde, err := schemas.ConnSerde(conn)
	if err != nil {
		return nil, err
	}
	log := conn.Logger()
	c := &core{log: log, admin: admin.New(f.adminAddr, log)}
	if err := c.admin.Listen(); err != nil {
		return nil, cli.Usagef("--admin-addr: %w", err)
	}
	km := c.admin.KafkaMetrics(stage)
	if c.view, err = registry.NewView(append(slices.Clip(kopts), km("registry")), serde, registry.WithLogger(log), registry.WithRegisterer(c.admin.Registry)); err != nil {
		return nil, err
	}
	c.admin.AddCheck("registry", c.view.Check)
	if c.producer, err = kgo.NewClient(append(slices.Clip(kopts), kgo.ProducerLinger(ingest.ProducerLinger), km("producer"))...); err != nil {
		return nil, err
	}
	c.Core, err = ingest.NewCore(ingest.Config{Kafka: c.producer, Serde: serde, Routes: table, Registry: c.view, Log: log})
	if err != nil {
		c.producer.Close()
		return nil, err
	}
	return c, nil
}

// run runs the view and the admin server beside serve, and closes the
// producer (flushing what is buffered) when serve returned.
func (c *core) run(ctx context.Context, serve func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- c.view.Run(ctx) }()
	go func() { errc <- c.admin.Run(ctx) }()
	err := serve(ctx)
	cancel()
	for range 2 {
		if e := <-errc; e != nil && err == nil && ctx.Err() == nil {
			err = e
		}
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if ferr := c.producer.Flush(fctx); ferr != nil {
		c.log.Warn("flushing the producer", "err", ferr)
	}
	c.producer.Close()
	return err
}

func serverTLS(certFile, keyFile string, clientCerts bool) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		if clientCerts {
			return nil, cli.Usagef("--client-certs: needs --tls-cert and --tls-key (client certificates need TLS)")
		}
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, cli.Usagef("--tls-cert and --tls-key: give both")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, cli.Usagef("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCerts {
		cfg.ClientAuth = tls.RequestClientCert
	}
	return cfg, nil
}

func positive(flag string, v int64) error {
	if v <= 0 {
		return cli.Usagef("--%s: %d, want a positive number", flag, v)
	}
	return nil
}

func positiveDur(flag string, d time.Duration) error {
	if d <= 0 {
		return cli.Usagef("--%s: %s, want a positive duration", flag, d)
	}
	return nil
}

// loadRoutes is the routes table of --routes ("" = routes.Default()).
func loadRoutes(file string) (*routes.Table, error) {
	if file == "" {
		return routes.Default(), nil
	}
	return routes.Load(file)
}
