package dynsec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/registry"
)

// Sync keeps Mosquitto's dynamic security plugin in step with a registry
// view: per device a client (username and client id "tenant/device") with
// exactly one role holding exactly its topics, enabled while the device is
// active, deleted when it is revoked or deleted.
//
// The registry stores only a hash of a device's secret, and dynsec's
// createClient/setClientPassword take only a plaintext password, so a
// password reaches the broker in one of two ways: PushSecret right after
// add or rotate, while the plaintext is in hand (the registry service and
// the CLI call it), or a configuration rendered from the registry's hashes
// (RenderConfig) that Mosquitto loads at start. A client's textdescription
// records which credential it holds (Marker); a client whose credential is
// not the registry's current one is kept disabled (its old secret must not
// keep working after a rotation) and counted in
// drover_registry_dynsec_pending_passwords until one of the two happens.
type Sync struct {
	view   *registry.View
	c      *Client
	log    *slog.Logger
	resync time.Duration
	m      syncMetrics

	recMu   sync.Mutex // one reconciliation at a time
	mu      sync.Mutex
	queue   map[string]bool
	wake    chan struct{}
	pending map[string]bool
	synced  chan struct{}
	once    sync.Once
}

type syncMetrics struct {
	commands *prometheus.CounterVec
	pending  prometheus.Gauge
	errors   prometheus.Counter
}

// NewSync returns a sync from view to the broker behind c; resync is the
// interval of full reconciliations (besides the one at start and the
// per-change ones), 0 for 5 minutes. Its metrics are registered with reg
// when not nil.
func NewSync(view *registry.View, c *Client, resync time.Duration, reg prometheus.Registerer, log *slog.Logger) (*Sync, error) {
	if resync <= 0 {
		resync = 5 * time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Sync{
		view: view, c: c, log: log, resync: resync, queue: map[string]bool{}, wake: make(chan struct{}, 1),
		pending: map[string]bool{}, synced: make(chan struct{}),
		m: syncMetrics{
			commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_registry_dynsec_commands_total", Help: "Dynamic-security commands sent to Mosquitto, by command and result (ok or error)."}, []string{"command", "result"}),
			pending:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "drover_registry_dynsec_pending_passwords", Help: "Active devices whose current secret Mosquitto does not hold (kept disabled): push it with drover devices rotate, or restart Mosquitto with a configuration from drover registry dynsec-config."}),
			errors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_registry_dynsec_sync_errors_total", Help: "Reconciliations with Mosquitto that failed (retried)."}),
		},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.commands, s.m.pending, s.m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("dynsec sync metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Synced is closed after the first full reconciliation succeeded.
func (s *Sync) Synced() <-chan struct{} { return s.synced }

// Check is a readiness check: nil once the first full reconciliation is done.
func (s *Sync) Check(context.Context) error {
	select {
	case <-s.synced:
		return nil
	default:
		return errors.New("dynsec: not yet in step with the registry")
	}
}

// Run subscribes to the view's changes, reconciles everything once the view
// is ready, then each changed device as it changes and everything again
// every resync interval, until ctx is done.
func (s *Sync) Run(ctx context.Context) error {
	cancel := s.view.Subscribe(func(c registry.Change) {
		if c.Tenant == nil {
			s.enqueue(c.Key)
		}
	})
	defer cancel()
	if err := s.view.WaitReady(ctx); err != nil {
		return nil
	}
	full := time.NewTimer(0)
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C:
			if err := s.Full(ctx); err != nil {
				s.m.errors.Inc()
				s.log.Warn("dynsec: full reconciliation failed; retrying", "err", err)
				full.Reset(5 * time.Second)
				continue
			}
			s.once.Do(func() { close(s.synced) })
			full.Reset(s.resync)
		case <-s.wake:
			for _, key := range s.drain() {
				if err := s.Device(ctx, key, ""); err != nil && ctx.Err() == nil {
					s.m.errors.Inc()
					s.log.Warn("dynsec: reconciling a device failed; retrying", "device", key, "err", err)
					s.enqueueLater(ctx, key)
				}
			}
		}
	}
}

func (s *Sync) enqueue(key string) {
	s.mu.Lock()
	s.queue[key] = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Sync) enqueueLater(ctx context.Context, key string) {
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
			s.enqueue(key)
		}
	}()
}

func (s *Sync) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.queue))
	for k := range s.queue {
		keys = append(keys, k)
	}
	clear(s.queue)
	slices.Sort(keys)
	return keys
}

// PushSecret hands dynsec the plaintext secret of the device with key
// (right after add or rotate, the only moments it exists) and brings the
// device's client and role in step. The secret is not kept. A reconciliation
// racing it from another process (a command refused because the client or
// role was just created) is met by trying again on the new state.
func (s *Sync) PushSecret(ctx context.Context, key, secret string) error {
	if secret == "" {
		return errors.New("dynsec: PushSecret without a secret")
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.Device(ctx, key, secret); err == nil {
			return nil
		}
		var ce *CommandError
		if !errors.As(err, &ce) {
			return err
		}
	}
	return err
}

// Device reconciles one device (key "tenant/device") with the view, setting
// its password to secret when secret is not empty.
func (s *Sync) Device(ctx context.Context, key, secret string) error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	rs, err := s.c.Do(ctx, Command{"command": "getClient", "username": key}, Command{"command": "getRole", "rolename": RoleName(key)})
	if err != nil {
		return err
	}
	cur, err := decodeClient(rs[0])
	if err != nil {
		return err
	}
	role, err := decodeRole(rs[1])
	if err != nil {
		return err
	}
	d, _ := s.view.DeviceByKey(key)
	return s.send(ctx, s.plan(key, d, cur, role, secret))
}

// Full reconciles every device: the registry's, and drover's clients and
// roles in dynsec that the registry no longer has.
func (s *Sync) Full(ctx context.Context) error {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if _, err := s.c.One(ctx, Command{"command": "setDefaultACLAccess", "acls": []map[string]any{
		{"acltype": "publishClientSend", "allow": false}, {"acltype": "subscribe", "allow": false},
	}}); err != nil {
		return err
	}
	clients, roles, err := s.list(ctx)
	if err != nil {
		return err
	}
	var cmds []Command
	seen := map[string]bool{}
	for _, d := range s.view.Devices() {
		key := d.Key()
		seen[key] = true
		cmds = append(cmds, s.plan(key, d, clients[key], roles[RoleName(key)], "")...)
	}
	for key, c := range clients {
		if c.TextName == DeviceTextName && !seen[key] {
			cmds = append(cmds, s.plan(key, nil, c, roles[RoleName(key)], "")...)
		}
	}
	for name, r := range roles {
		if key, ok := strings.CutPrefix(name, RolePrefix); ok && !seen[key] && clients[key] == nil {
			cmds = append(cmds, s.plan(key, nil, nil, r, "")...)
		}
	}
	return s.send(ctx, cmds)
}

// list returns every client and role dynsec has, by name.
func (s *Sync) list(ctx context.Context) (map[string]*ClientState, map[string]*RoleState, error) {
	rs, err := s.c.Do(ctx, Command{"command": "listClients", "verbose": true}, Command{"command": "listRoles", "verbose": true})
	if err != nil {
		return nil, nil, err
	}
	var cl struct {
		Clients []*ClientState `json:"clients"`
	}
	var rl struct {
		Roles []*RoleState `json:"roles"`
	}
	for i, into := range []any{&cl, &rl} {
		if err := rs[i].Err(); err != nil {
			return nil, nil, err
		}
		if err := json.Unmarshal(rs[i].Data, into); err != nil {
			return nil, nil, fmt.Errorf("dynsec %s: %w", rs[i].Command, err)
		}
	}
	clients := make(map[string]*ClientState, len(cl.Clients))
	for _, c := range cl.Clients {
		clients[c.Username] = c
	}
	roles := make(map[string]*RoleState, len(rl.Roles))
	for _, r := range rl.Roles {
		roles[r.Rolename] = r
	}
	return clients, roles, nil
}

// send sends cmds in messages of at most 100 commands; a command the
// plugin refuses is logged and counted, and the first such error returned
// (the next reconciliation retries).
func (s *Sync) send(ctx context.Context, cmds []Command) error {
	var first error
	for len(cmds) > 0 {
		n := min(len(cmds), 100)
		rs, err := s.c.Do(ctx, cmds[:n]...)
		if err != nil {
			return err
		}
		for i, r := range rs {
			name, _ := cmds[i]["command"].(string)
			if err := r.Err(); err != nil {
				s.m.commands.WithLabelValues(name, "error").Inc()
				s.log.Warn("dynsec: command refused", "command", name, "username", cmds[i]["username"], "rolename", cmds[i]["rolename"], "err", r.Error)
				if first == nil {
					first = err
				}
				continue
			}
			s.m.commands.WithLabelValues(name, "ok").Inc()
		}
		cmds = cmds[n:]
	}
	return first
}

func (s *Sync) setPending(key string, pending bool) {
	s.mu.Lock()
	if pending {
		s.pending[key] = true
	} else {
		delete(s.pending, key)
	}
	n := len(s.pending)
	s.mu.Unlock()
	s.m.pending.Set(float64(n))
}

// Pending returns the keys of active devices whose secret Mosquitto does
// not hold, sorted.
func (s *Sync) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.pending))
	for k := range s.pending {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
