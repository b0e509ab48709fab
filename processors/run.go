package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/apps"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Group names accepted by --groups.
const (
	GroupFeatures = "features"
	GroupAlerts   = "alerts"
	GroupState    = "state"
)

// AllGroups are the groups run by default, in start order.
var AllGroups = []string{GroupFeatures, GroupAlerts, GroupState}

// ErrUnknownGroup marks a group name that is not one of AllGroups.
var ErrUnknownGroup = errors.New("unknown group")

// Options configure Run. Zero fields take the groups' defaults.
type Options struct {
	// Groups to run (default AllGroups); duplicates are ignored.
	Groups []string
	// Features, State configure those groups; their Clock, Registerer and
	// Log are filled in by Run when nil.
	Features features.Config
	State    state.Config
	// Alerts are extra options for the alerts group (rules, horizon, ...).
	Alerts []alerts.Option
	// AlertCheckInterval is the alerts group's offline sweep interval
	// (0 = its default).
	AlertCheckInterval time.Duration
	// Clock is the wall clock for every group (default the system clock).
	Clock groupkit.Clock
	// KafkaOpts reach the cluster with franz-go, for GET /devices/{id} of
	// devices on partitions this instance does not own (nil = 404 then).
	KafkaOpts []kgo.Opt
	// Devices is the device registry's view (nil = none): the alerts
	// group's offline rules take each device's own offline timeout from it.
	// The caller runs it (OpenDevices).
	Devices *registry.View
	// Apps are stream apps to run beside the groups, each its own goka
	// group app-NAME (nil = none); AppsSerde (PrepareApps) knows their
	// target topics' schema.
	Apps      []*apps.App
	AppsSerde *schemas.Serde
	// MaxRestarts is how often a failed group is restarted in a row before
	// Run gives up and returns its error (0 = always restart).
	MaxRestarts int
}

// ParseGroups splits and checks a --groups value.
func ParseGroups(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, g := range strings.Split(item, ",") {
			g = strings.TrimSpace(strings.ToLower(g))
			if g == "" {
				continue
			}
			if !slices.Contains(AllGroups, g) {
				return nil, fmt.Errorf("%w %q (want %s)", ErrUnknownGroup, g, strings.Join(AllGroups, ", "))
			}
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none given (want some of %s)", ErrUnknownGroup, strings.Join(AllGroups, ", "))
	}
	return out, nil
}

// runner is one group ready to run.
type runner struct {
	name  string
	run   func(ctx context.Context) error
	ready func(ctx context.Context) error
}

// Run runs the chosen groups against the cluster k until ctx is done or a
// group fails (then the others are stopped too). adm (may be nil) gets the
// metrics, one readiness check per group and, with the state group, the
// GET /devices/{id} handler; Run does not serve adm, the caller does.
// It returns nil after a clean stop.
func Run(ctx context.Context, k groupkit.Kafka, serde *schemas.Serde, o Options, adm *admin.Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	groups := o.Groups
	if len(groups) == 0 {
		groups = AllGroups
	}
	groups, err := ParseGroups(groups)
	if err != nil {
		return err
	}
	if o.Clock == nil {
		o.Clock = groupkit.SystemClock{}
	}
	k.Log = log
	if adm != nil && k.ClientOpt == nil {
		// franz-go's client metrics of every group's clients (consumer,
		// table consumer, producer, topic manager) on /metrics.
		k.ClientOpt = adm.KafkaMetrics("process")
	}
	var runners []runner
	for _, g := range groups {
		switch g {
		case GroupFeatures:
			cfg := o.Features
			fill(&cfg.Clock, &cfg.Log, o.Clock, log.With("group", g))
			if cfg.Registerer == nil && adm != nil {
				cfg.Registerer = adm.Registry
			}
			p, err := features.New(serde, cfg)
			if err != nil {
				return err
			}
			runners = append(runners, runner{g, func(ctx context.Context) error { return p.Run(ctx, k) }, p.Ready})
		case GroupState:
			cfg := o.State
			fill(&cfg.Clock, &cfg.Log, o.Clock, log.With("group", g))
			if cfg.Registerer == nil && adm != nil {
				cfg.Registerer = adm.Registry
			}
			p, err := state.New(serde, cfg)
			if err != nil {
				return err
			}
			if adm != nil {
				adm.Handle(state.DevicesPattern, p.Handler(o.KafkaOpts))
			}
			runners = append(runners, runner{g, func(ctx context.Context) error { return p.Run(ctx, k) }, p.Ready})
		case GroupAlerts:
			aopts := []alerts.Option{
				alerts.WithSerde(serde),
				alerts.WithClock(o.Clock),
				alerts.WithLogger(log.With("group", g)),
				alerts.WithKafka(k),
			}
			if o.Devices != nil {
				aopts = append(aopts, alerts.WithOfflineTimeouts(o.Devices.OfflineTimeout))
			}
			if o.AlertCheckInterval > 0 {
				aopts = append(aopts, alerts.WithCheckInterval(o.AlertCheckInterval))
			}
			if adm != nil {
				aopts = append(aopts, alerts.WithRegisterer(adm.Registry))
			}
			p, err := alerts.NewProcessor(k.Brokers, append(aopts, o.Alerts...)...)
			if err != nil {
				return err
			}
			runners = append(runners, runner{g, p.Run, p.Ready})
		}
	}
	var revocations *apps.Revocations
	for _, a := range o.Apps {
		if o.AppsSerde == nil {
			return errors.New("processors: apps need Options.AppsSerde (PrepareApps)")
		}
		cfg := apps.Config{Log: log.With("group", a.Group()), Clock: o.Clock}
		if adm != nil {
			cfg.Registerer = adm.Registry
		}
		if a.Share != nil {
			if revocations == nil {
				revocations = apps.NewRevocations(k.KgoOpts, o.AppsSerde, log.With("component", "revocations"))
				runners = append(runners, runner{"app-revocations", revocations.Run, func(context.Context) error {
					if !revocations.Caught() {
						return errors.New("reading the revocations of " + topics.ThirdPartySharing)
					}
					return nil
				}})
			}
			cfg.Revocations = revocations
		}
		if a.Join != nil && a.Join.Link != "" {
			if o.Devices == nil {
				return fmt.Errorf("processors: app %s: join.link %s needs the device registry, and %s does not exist (register devices first: drover devices)", a.Name, a.Join.Link, topics.DevicesRegistry)
			}
			cfg.Labels = o.Devices
		}
		p := apps.New(a, o.AppsSerde, cfg)
		runners = append(runners, runner{a.Group(), func(ctx context.Context) error { return p.Run(ctx, k) }, p.Ready})
	}
	if adm != nil {
		for _, r := range runners {
			adm.AddCheck("group "+r.name, r.ready)
		}
	}
	var restarts *prometheus.CounterVec
	if adm != nil {
		restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_process_group_restarts_total",
			Help: "Processor groups restarted after they failed (e.g. the Kafka cluster restarted), by group."}, []string{"group"})
		if err := adm.Registry.Register(restarts); err != nil {
			return fmt.Errorf("processors: metrics: %w", err)
		}
	}
	log.Info("starting processor groups", "groups", groups, "apps", len(o.Apps), "brokers", k.Brokers)
	eg, ectx := errgroup.WithContext(ctx)
	for _, r := range runners {
		eg.Go(func() error {
			err := runRestarting(ectx, r, o.MaxRestarts, log, func() {
				if restarts != nil {
					restarts.WithLabelValues(r.name).Inc()
				}
			})
			if err != nil {
				log.Error("processor group failed", "group", r.name, "err", err)
				return fmt.Errorf("group %s: %w", r.name, err)
			}
			log.Info("processor group stopped", "group", r.name)
			return nil
		})
	}
	return eg.Wait()
}

// Restart back-off of a failed group: it starts at restartMin, doubles up
// to restartMax, and starts over after a run that lasted restartStable.
const (
	restartMin    = time.Second
	restartMax    = 30 * time.Second
	restartStable = time.Minute
)

// runRestarting runs r until ctx is done. When the group fails (a broker
// restart ends goka's consumer-group session with EOF or a timeout) it is
// rebuilt and started again after a back-off, so a Kafka blip does not
// take the whole process down; its /readyz check fails meanwhile. After
// maxRestarts failures in a row without a stable run (0 = no limit) the
// error is returned.
func runRestarting(ctx context.Context, r runner, maxRestarts int, log *slog.Logger, restarted func()) error {
	backoff, failures := restartMin, 0
	for {
		began := time.Now()
		err := r.run(ctx)
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return nil
		}
		if err == nil {
			err = errors.New("stopped on its own")
		}
		if time.Since(began) >= restartStable {
			backoff, failures = restartMin, 0
		}
		failures++
		if maxRestarts > 0 && failures > maxRestarts {
			return fmt.Errorf("%w (after %d restarts)", err, maxRestarts)
		}
		log.Warn("processor group failed; restarting it", "group", r.name, "err", err, "in", backoff, "attempt", failures)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		restarted()
		backoff = min(2*backoff, restartMax)
	}
}

func fill(clock *groupkit.Clock, l **slog.Logger, c groupkit.Clock, log *slog.Logger) {
	if *clock == nil {
		*clock = c
	}
	if *l == nil {
		*l = log
	}
}

// OpenDevices returns a view of the device registry for Options.Devices
// when the registry topic exists, nil when it does not. Run it
// (View.Run) beside the groups; until it has read the registry, devices
// take their rules' offline timeouts.
func OpenDevices(ctx context.Context, kopts []kgo.Opt, serde *schemas.Serde, log *slog.Logger, reg prometheus.Registerer) (*registry.View, error) {
	ok, err := registry.TopicExists(ctx, kopts, topics.DevicesRegistry)
	if err != nil || !ok {
		return nil, err
	}
	opts := []registry.ViewOption{registry.WithLogger(log)}
	if reg != nil {
		opts = append(opts, registry.WithRegisterer(reg))
	}
	return registry.NewView(kopts, serde, opts...)
}

// PrepareApps creates each app's target topic from the catalogue's
// derived-stream rules (apps.TemplateTopic, replication capped at
// replicationCap) when missing, registers its value schema with the
// BACKWARD check, and returns the Serde for Options.AppsSerde.
func PrepareApps(ctx context.Context, kopts []kgo.Opt, reg *sr.Client, as []*apps.App, replicationCap int16) (*schemas.Serde, error) {
	cat, err := topics.Default()
	if err != nil {
		return nil, err
	}
	cat = cat.WithReplicationCap(replicationCap)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("apps: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, a := range as {
		if err := apps.EnsureTarget(ctx, adm, reg, cat, a); err != nil {
			return nil, err
		}
	}
	return apps.NewSerde(reg, as)
}
