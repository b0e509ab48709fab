package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

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
	log.Info("starting processor groups", "groups", groups, "brokers", k.Brokers)
	eg, ectx := errgroup.WithContext(ctx)
	for _, r := range runners {
		eg.Go(func() error {
			err := r.run(ectx)
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("processor group failed", "group", r.name, "err", err)
				return fmt.Errorf("group %s: %w", r.name, err)
			}
			log.Info("processor group stopped", "group", r.name)
			return nil
		})
	}
	return eg.Wait()
}

func fill(clock *groupkit.Clock, l **slog.Logger, c groupkit.Clock, log *slog.Logger) {
	if *clock == nil {
		*clock = c
	}
	if *l == nil {
		*l = log
	}
}
