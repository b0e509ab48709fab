// Package service is the `drover registry` process: a registry view kept
// live from Kafka, and on its admin listener the provisioning API
// (registry/api), EMQX's HTTP authentication and authorization
// (registry/emqx), with the loops that keep brokers in step: Mosquitto's
// dynamic security (registry/dynsec) and EMQX kicks. Run composes them;
// registry/command parses the flags.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/api"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/registry/emqx"
	"github.com/drover-iot/drover/schemas"
)

// Config is everything `drover registry` runs with.
type Config struct {
	Kafka []kgo.Opt
	Serde *schemas.Serde
	// Admin serves /metrics, /healthz, /readyz and the endpoints below.
	Admin *admin.Server
	Log   *slog.Logger

	// APITokens enable the provisioning API (empty: not served).
	APITokens map[string]api.Scope
	// CAKeyDir holds tenants' CA keys as TENANT-ca.key, for the API to
	// sign certificates ("" = it signs none).
	CAKeyDir string

	// EMQX serves EMQX's HTTP authentication and authorization, for the
	// devices and Services; EMQXToken, when set, is required of EMQX.
	EMQX      bool
	EMQXToken string
	Services  []registry.Service
	// EMQXAPI, when set, is EMQX's management API for kicking devices.
	EMQXAPI *EMQXAPI

	// Dynsec, when set, keeps Mosquitto's dynamic security in step.
	Dynsec       *dynsec.ClientConfig
	DynsecResync time.Duration
}

// EMQXAPI is EMQX's REST API and an API key.
type EMQXAPI struct {
	URL, Key, Secret string
}

// CAKeyFile is where a tenant's CA key lives in a key directory.
func CAKeyFile(dir, tenant string) string { return filepath.Join(dir, tenant+"-ca.key") }

// Run runs the service until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log
	view, err := registry.NewView(cfg.Kafka, cfg.Serde, registry.WithRegisterer(cfg.Admin.Registry), registry.WithLogger(log))
	if err != nil {
		return err
	}
	producer, err := kgo.NewClient(cfg.Kafka...)
	if err != nil {
		return fmt.Errorf("registry: kafka producer: %w", err)
	}
	defer producer.Close()
	store := registry.NewStore(view, producer, cfg.Serde, registry.WithActor("registry-api"))
	cfg.Admin.AddCheck("registry", view.Check)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return view.Run(gctx) })
	var sync atomic.Pointer[dynsec.Sync]
	if cfg.Dynsec != nil {
		cfg.Admin.AddCheck("dynsec", func(c context.Context) error {
			if s := sync.Load(); s != nil {
				return s.Check(c)
			}
			return errors.New("dynsec: not connected to mosquitto yet")
		})
		g.Go(func() error { return runDynsec(gctx, cfg, view, &sync) })
	}
	if len(cfg.APITokens) > 0 {
		if err := mountAPI(cfg, store, &sync, kafkaShadow{cl: producer, kopts: cfg.Kafka, serde: cfg.Serde}); err != nil {
			return err
		}
	}
	if cfg.EMQX {
		auth, err := registry.NewAuth(view, cfg.Services...)
		if err != nil {
			return err
		}
		h, err := emqx.NewHandler(auth, view, cfg.EMQXToken, cfg.Admin.Registry, log)
		if err != nil {
			return err
		}
		h.Register(cfg.Admin.Handle)
	}
	if cfg.EMQXAPI != nil {
		k, err := emqx.NewKicker(cfg.EMQXAPI.URL, cfg.EMQXAPI.Key, cfg.EMQXAPI.Secret, cfg.Admin.Registry, log)
		if err != nil {
			return err
		}
		g.Go(func() error { return k.Run(gctx, view) })
	}
	if cfg.Admin.Addr() == "" {
		if err := cfg.Admin.Listen(); err != nil {
			return err
		}
	}
	log.Info("registry service", "admin", cfg.Admin.Addr(), "api", len(cfg.APITokens) > 0, "emqx", cfg.EMQX, "dynsec", cfg.Dynsec != nil)
	g.Go(func() error { return cfg.Admin.Run(gctx) })
	return g.Wait()
}

func mountAPI(cfg Config, store *registry.Store, sync *atomic.Pointer[dynsec.Sync], shadow api.Shadow) error {
	opts := api.Options{Tokens: cfg.APITokens, Log: cfg.Log, Shadow: shadow}
	if cfg.CAKeyDir != "" {
		opts.CAKeys = func(tenant string) ([]byte, error) {
			if err := identity.ValidTenant(tenant); err != nil {
				return nil, err
			}
			return os.ReadFile(CAKeyFile(cfg.CAKeyDir, tenant))
		}
	}
	if cfg.Dynsec != nil {
		opts.PushSecret = func(ctx context.Context, key, secret string) error {
			s := sync.Load()
			if s == nil {
				return errors.New("not connected to mosquitto yet")
			}
			return s.PushSecret(ctx, key, secret)
		}
	}
	a, err := api.New(store, opts)
	if err != nil {
		return err
	}
	a.Register(cfg.Admin.Handle)
	return nil
}

// runDynsec connects to Mosquitto (waiting for it as long as it takes) and
// runs the sync.
func runDynsec(ctx context.Context, cfg Config, view *registry.View, sync *atomic.Pointer[dynsec.Sync]) error {
	dc := *cfg.Dynsec
	dc.Log = cfg.Log
	c, err := dynsec.Dial(ctx, dc)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer c.Close()
	s, err := dynsec.NewSync(view, c, cfg.DynsecResync, cfg.Admin.Registry, cfg.Log)
	if err != nil {
		return err
	}
	sync.Store(s)
	return s.Run(ctx)
}
