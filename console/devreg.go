package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
)

// registryWait bounds how long a request waits for the registry view to
// finish its first read of the topic.
const registryWait = 10 * time.Second

// devreg is the console's view of the device registry (devices.registry),
// run only while pages read it: started by the first read, stopped when no
// page has read it for three refresh intervals (or the console closes), so
// an unwatched console reads nothing. A page re-reads when the registry's
// end offsets move in the snapshot, which restarts a stopped view.
type devreg struct {
	s *Server

	mu      sync.Mutex
	view    *registry.View
	done    chan struct{}
	cancel  context.CancelFunc
	lastUse time.Time
	err     error // why the last view stopped by itself
	closed  bool
}

// get returns a ready view, starting one if none runs.
func (r *devreg) get(ctx context.Context) (*registry.View, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("console closed")
	}
	r.lastUse = r.s.cfg.Now()
	if r.view == nil {
		if err := r.start(); err != nil {
			r.mu.Unlock()
			return nil, err
		}
	}
	v, done := r.view, r.done
	r.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, registryWait)
	defer cancel()
	select {
	case <-v.Ready():
		return v, nil
	case <-done:
		r.mu.Lock()
		err := r.err
		r.mu.Unlock()
		return nil, fmt.Errorf("device registry: %w", err)
	case <-wctx.Done():
		return nil, fmt.Errorf("device registry: %s not read within %s", v.Topic(), registryWait)
	}
}

// start runs a new view. Called with r.mu held.
func (r *devreg) start() error {
	opts := append(r.s.cfg.Kafka.Opts(), kgo.WithHooks(r.s.metrics))
	v, err := registry.NewView(opts, r.s.cfg.Serde, registry.WithLogger(r.s.cfg.Log), registry.WithTopic(r.s.cfg.RegistryTopic))
	if err != nil {
		return fmt.Errorf("device registry: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.view, r.done, r.cancel, r.err = v, done, cancel, nil
	go func() {
		err := v.Run(ctx)
		if err == nil && ctx.Err() == nil {
			err = errors.New("the view stopped")
		}
		r.mu.Lock()
		if r.view == v {
			r.view = nil
			if ctx.Err() == nil {
				r.err = err
				r.s.cfg.Log.Warn("console: device registry view stopped", "err", err)
			}
		}
		r.mu.Unlock()
		cancel()
		close(done)
	}()
	go r.idle(ctx, v)
	return nil
}

// idle stops v once no page has read the registry for three refresh
// intervals.
func (r *devreg) idle(ctx context.Context, v *registry.View) {
	t := time.NewTicker(r.s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		if r.view == v && r.s.cfg.Now().Sub(r.lastUse) > 3*r.s.cfg.Refresh {
			r.stopLocked()
		}
		r.mu.Unlock()
	}
}

// stopLocked stops the running view, if any. Called with r.mu held.
func (r *devreg) stopLocked() {
	if r.view != nil {
		r.cancel()
		r.view = nil
	}
}

func (r *devreg) close() {
	r.mu.Lock()
	r.closed = true
	r.stopLocked()
	done := r.done
	r.mu.Unlock()
	if done != nil {
		<-done
	}
}

// RegistryInfo is a device's registry entry as the Devices page shows it.
type RegistryInfo struct {
	// Status is active, suspended or revoked, or unregistered when the
	// registry does not know the device.
	Status string            `json:"status"`
	Type   string            `json:"type,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Unregistered is the status of a device the registry does not know.
const Unregistered = "unregistered"

func registryInfo(v *registry.View, tenant, id string) *RegistryInfo {
	d, ok := v.Device(tenant, id)
	if !ok {
		return &RegistryInfo{Status: Unregistered}
	}
	return &RegistryInfo{Status: string(d.Status), Type: d.Type, Labels: d.Labels}
}

// RegistryDevice is a registered device (never its secret hash: only
// whether it has one).
type RegistryDevice struct {
	Tenant           string            `json:"tenant"`
	DeviceID         string            `json:"device_id"`
	Status           string            `json:"status"`
	Type             string            `json:"type"`
	Labels           map[string]string `json:"labels"`
	AltIDs           map[string]string `json:"alt_ids"`
	OfflineTimeoutMS int64             `json:"offline_timeout_ms"`
	Secret           bool              `json:"secret"`
	Certificates     int               `json:"certificates"`
	Actor            string            `json:"actor"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
	// LastSeen is from device_state (nil: never seen, or no database).
	LastSeen *time.Time `json:"last_seen"`
	Online   bool       `json:"online"`
}

func registryDevice(d *registry.Device) RegistryDevice {
	return RegistryDevice{Tenant: d.Tenant, DeviceID: d.ID, Status: string(d.Status), Type: d.Type,
		Labels: nonNilMap(d.Labels), AltIDs: nonNilMap(d.AltIDs), OfflineTimeoutMS: d.OfflineTimeout.Milliseconds(),
		Secret: d.Secret != nil, Certificates: len(d.CertFingerprints), Actor: d.Actor, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// RegistryTenant is a registered tenant.
type RegistryTenant struct {
	ID        string         `json:"id"`
	CA        bool           `json:"ca"`
	Actor     string         `json:"actor"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	Devices   map[string]int `json:"devices"` // by status
}

// RegistryList is the Registry page: tenants, devices (filtered), counts
// by status, and the devices that send data without being registered.
type RegistryList struct {
	Topic    string           `json:"topic"`
	Tenants  []RegistryTenant `json:"tenants"`
	Devices  []RegistryDevice `json:"devices"`
	Total    int              `json:"total"`
	ByStatus map[string]int   `json:"by_status"`
	// Unregistered are the senders the registry does not know: devices
	// of device_state missing from it (a bridge that observes or does not
	// check the registry lets their data through), and devices whose data
	// the bridge dead-lettered as unknown_device in the last 24 hours (a
	// bridge that enforces it).
	Unregistered []string `json:"unregistered"`
	Problems     []string `json:"problems,omitempty"`
}

// registryMatch: q is found in the key, the type or a label.
func registryMatch(d *registry.Device, q string) bool {
	if q == "" {
		return true
	}
	s := strings.ToLower(d.Key() + " " + d.Type)
	for k, v := range d.Labels {
		s += " " + strings.ToLower(k+"="+v)
	}
	return strings.Contains(s, strings.ToLower(q))
}

func (s *Server) registryList(ctx context.Context, q, status string) (RegistryList, error) {
	out := RegistryList{Topic: s.cfg.RegistryTopic, Tenants: []RegistryTenant{}, Devices: []RegistryDevice{}, ByStatus: map[string]int{}, Unregistered: []string{}}
	v, err := s.devreg.get(ctx)
	if err != nil {
		return out, err
	}
	tenants := map[string]*RegistryTenant{}
	for _, t := range v.Tenants() {
		out.Tenants = append(out.Tenants, RegistryTenant{ID: t.ID, CA: t.CACertPEM != "", Actor: t.Actor, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Devices: map[string]int{}})
	}
	for i := range out.Tenants {
		tenants[out.Tenants[i].ID] = &out.Tenants[i]
	}
	all := v.Devices()
	var seen map[string]Device
	if s.cfg.DB != nil {
		list, err := s.devices.get(ctx, "", func(ctx context.Context) ([]Device, error) { return s.listDevices(ctx, "") })
		if err != nil {
			out.Problems = append(out.Problems, "device_state: "+err.Error())
		} else {
			seen = make(map[string]Device, len(list))
			for _, d := range list {
				seen[d.Tenant+"/"+d.DeviceID] = d
			}
		}
	}
	for _, d := range all {
		out.ByStatus[string(d.Status)]++
		t := tenants[d.Tenant]
		if t == nil { // a device of a tenant without a tenant record
			out.Tenants = append(out.Tenants, RegistryTenant{ID: d.Tenant, Devices: map[string]int{}})
			t = &out.Tenants[len(out.Tenants)-1]
			// appending may move the slice: rebuild the index
			for i := range out.Tenants {
				tenants[out.Tenants[i].ID] = &out.Tenants[i]
			}
		}
		t.Devices[string(d.Status)]++
		if (status != "" && string(d.Status) != status) || !registryMatch(d, q) {
			continue
		}
		out.Total++
		if len(out.Devices) < maxDevices {
			rd := registryDevice(d)
			if sd, ok := seen[d.Key()]; ok {
				last := sd.LastSeen
				rd.LastSeen, rd.Online = &last, sd.Online
			}
			out.Devices = append(out.Devices, rd)
		}
	}
	slices.SortFunc(out.Tenants, func(a, b RegistryTenant) int { return strings.Compare(a.ID, b.ID) })
	unknown := map[string]bool{}
	for key := range seen {
		unknown[key] = true
	}
	if s.cfg.DB != nil {
		rejected, err := s.rejectedSenders(ctx)
		if err != nil {
			out.Problems = append(out.Problems, "dead_letters: "+err.Error())
		}
		for _, key := range rejected {
			unknown[key] = true
		}
	}
	for key := range unknown {
		if _, ok := v.DeviceByKey(key); !ok {
			out.Unregistered = append(out.Unregistered, key)
		}
	}
	slices.Sort(out.Unregistered)
	return out, nil
}

// rejectedSenders are the TENANT/DEVICE keys whose data the bridge
// dead-lettered as unknown_device in the last 24 hours (at most
// maxDevices, newest first).
func (s *Server) rejectedSenders(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, `SELECT tenant || '/' || device_id FROM dead_letters
		WHERE reason = $1 AND tenant IS NOT NULL AND device_id IS NOT NULL AND received_at > now() - interval '24 hours'
		GROUP BY tenant, device_id ORDER BY max(received_at) DESC LIMIT `+fmt.Sprint(maxDevices), string(decode.ReasonUnknownDevice))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (s *Server) serveRegistry(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	status := r.URL.Query().Get("status")
	if status != "" {
		if _, err := registry.ParseStatus(status); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("status: %w", err))
			return
		}
	}
	list, err := s.registryList(r.Context(), q, status)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, list)
}
