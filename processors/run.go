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
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/groupkit"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
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
	log.Info("starting processor groups", "groups", groups, "brokers", k.Brokers)
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
