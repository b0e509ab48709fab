package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// RegistryMode is how a door (and a re-drive) checks a message's
// device against the device registry.
type RegistryMode string

// The registry modes of --registry.
const (
	// RegistryEnforce: a message of an unregistered device is a dead
	// letter unknown_device, one of a suspended or revoked device
	// device_revoked.
	RegistryEnforce RegistryMode = "enforce"
	// RegistryObserve lets every message through, counts what enforce
	// would refuse and marks its records with the header drover.registry.
	RegistryObserve RegistryMode = "observe"
	// RegistryOff checks nothing.
	RegistryOff RegistryMode = "off"
	// RegistryAuto (the flag's default) is enforce when the registry topic
	// exists in Kafka, off when it does not.
	RegistryAuto RegistryMode = "auto"
)

// ParseRegistryMode returns the mode named s.
func ParseRegistryMode(s string) (RegistryMode, error) {
	switch m := RegistryMode(s); m {
	case RegistryEnforce, RegistryObserve, RegistryOff, RegistryAuto:
		return m, nil
	}
	return "", fmt.Errorf("%q: want enforce, observe, off or auto", s)
}

// HeaderRegistry marks, in observe mode, a record whose device enforce mode
// would have refused: its value is the reason (unknown_device or
// device_revoked).
const HeaderRegistry = "drover.registry"

// Admission is the registry check every door makes per message (one
// implementation, shared by the bridge and the dead-letter re-drive): it
// resolves a route's missing tenant (WildFi topics carry none) from the
// registry and admits registered, active devices. A nil *Admission (or
// mode off) admits everything.
type Admission struct {
	view   *registry.View
	mode   RegistryMode
	checks *prometheus.CounterVec // result
	// admitted is checks' "admitted" child, looked up once: a
	// WithLabelValues per message hashes the label and takes the vector's
	// lock on the hottest path of the bridge.
	admitted prometheus.Counter
}

// NewAdmission checks messages against view in mode (enforce or observe;
// off returns nil). reg, if set, receives
// drover_bridge_registry_checks_total{mode,result}.
func NewAdmission(view *registry.View, mode RegistryMode, reg prometheus.Registerer) (*Admission, error) {
	if mode == RegistryOff || mode == "" {
		return nil, nil
	}
	if mode != RegistryEnforce && mode != RegistryObserve {
		return nil, fmt.Errorf("registry mode %q: want enforce, observe or off", mode)
	}
	if view == nil {
		return nil, fmt.Errorf("registry mode %s needs a registry view", mode)
	}
	a := &Admission{view: view, mode: mode,
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "drover", Subsystem: "bridge", Name: "registry_checks_total",
			Help:        "Messages checked against the device registry, per result (admitted, unknown_device, device_revoked); in observe mode nothing is refused.",
			ConstLabels: prometheus.Labels{"mode": string(mode)}}, []string{"result"})}
	for _, r := range []string{"admitted", string(decode.ReasonUnknownDevice), string(decode.ReasonDeviceRevoked)} {
		a.checks.WithLabelValues(r)
	}
	a.admitted = a.checks.WithLabelValues("admitted")
	if reg != nil {
		if err := reg.Register(a.checks); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// OpenAdmission builds the registry check of mode over topic (""
// = topics.DevicesRegistry) with a new registry view; mode auto (or "")
// is enforce when the topic exists in Kafka and off (a nil *Admission)
// when it does not. The view's metrics go to reg. Run the view with
// a.View().Run, or use StartAdmission.
func OpenAdmission(ctx context.Context, kopts []kgo.Opt, serde *schemas.Serde, mode RegistryMode, topic string, log *slog.Logger, reg prometheus.Registerer) (*Admission, error) {
	if topic == "" {
		topic = topics.DevicesRegistry
	}
	if log == nil {
		log = slog.Default()
	}
	if mode == "" || mode == RegistryAuto {
		exists, err := registry.TopicExists(ctx, kopts, topic)
		if err != nil {
			return nil, fmt.Errorf("registry auto: cannot tell whether %s exists: %w", topic, err)
		}
		mode = RegistryOff
		if exists {
			mode = RegistryEnforce
		}
		log.Info("device registry check", "mode", mode, "topic", topic, "topic_exists", exists)
	}
	if mode == RegistryOff {
		return nil, nil
	}
	opts := []registry.ViewOption{registry.WithTopic(topic), registry.WithLogger(log)}
	if reg != nil {
		opts = append(opts, registry.WithRegisterer(reg))
	}
	view, err := registry.NewView(kopts, serde, opts...)
	if err != nil {
		return nil, err
	}
	return NewAdmission(view, mode, reg)
}

// StartAdmission is OpenAdmission plus running the view until ctx ends and
// waiting (bounded by ctx) until it is restored: for short-lived commands
// (a re-drive).
func StartAdmission(ctx context.Context, kopts []kgo.Opt, serde *schemas.Serde, mode RegistryMode, topic string, log *slog.Logger) (*Admission, error) {
	a, err := OpenAdmission(ctx, kopts, serde, mode, topic, log, nil)
	if err != nil || a == nil {
		return a, err
	}
	go func() {
		if err := a.view.Run(ctx); err != nil {
			log.Error("device registry view stopped", "err", err)
		}
	}()
	if err := a.view.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("device registry %s not restored: %w", a.view.Topic(), err)
	}
	return a, nil
}

// Mode returns the admission's mode (off for nil).
func (a *Admission) Mode() RegistryMode {
	if a == nil {
		return RegistryOff
	}
	return a.mode
}

// View returns the registry view (nil for nil).
func (a *Admission) View() *registry.View {
	if a == nil {
		return nil
	}
	return a.view
}

// Ready is closed once the registry view is restored (at once for nil).
func (a *Admission) Ready() <-chan struct{} {
	if a == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return a.view.Ready()
}

// Check admits m's device. It fills m.Tenant from the registry when the
// route's topic names no tenant (WildFi). In enforce mode a refused device
// is a *decode.Error (stage route, reason unknown_device or
// device_revoked); in observe mode the error is nil and flag is that
// reason, for the HeaderRegistry header. d is the device when registered.
func (a *Admission) Check(m *routes.Match) (d *registry.Device, flag decode.Reason, err error) {
	if a == nil || m.Device == "" {
		return nil, "", nil
	}
	var aerr error
	if m.Route != nil && !m.Route.NamesTenant() {
		// No tenant in the topic: the registry says whose device it is.
		if wd, ok := a.view.DeviceByAltID(registry.TypeWildFi, m.Device); ok {
			m.Tenant = wd.Tenant
			d, aerr = a.view.Admit(wd.Tenant, wd.ID)
		} else {
			aerr = registry.ErrUnknownDevice
		}
	} else {
		d, aerr = a.view.Admit(m.Tenant, m.Device)
	}
	if aerr == nil {
		a.admitted.Inc()
		return d, "", nil
	}
	var de *decode.Error
	switch {
	case errors.Is(aerr, registry.ErrDeviceInactive):
		de = &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonDeviceRevoked,
			Message: fmt.Sprintf("device %s is %s in the registry", identity.Key(m.Tenant, m.Device), d.Status)}
	default:
		de = &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownDevice,
			Message: fmt.Sprintf("device %s is not in the registry", identity.Key(m.Tenant, m.Device))}
	}
	a.checks.WithLabelValues(string(de.Reason)).Inc()
	if a.mode == RegistryObserve {
		return d, de.Reason, nil
	}
	return d, de.Reason, de
}
