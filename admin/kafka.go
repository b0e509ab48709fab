package admin

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// KafkaMetrics returns, per Kafka client of a stage, the option that
// exports franz-go's client metrics (kprom: connections, requests, bytes,
// produced and fetched records and batches, buffered records) on the
// stage's /metrics. One naming scheme for every stage:
//
//	drover_<stage>_kafka_<kprom metric>{client="<role>"}
//
// where <stage> is the command (bridge, process, sink, media, schedule,
// console) and <role> names the client within it (features-consumer,
// sink, media, a schedule job's name). Each client needs its own kprom
// instance (kprom's hooks do not say which client an event belongs to); a
// client's series go when it closes. Roles must be distinct among the
// clients alive at once; a second live client with the same role is not
// exported rather than breaking the process. A client built from another's
// Opts() (which carry the hook) counts into the first one's series.
func (s *Server) KafkaMetrics(stage string) func(role string) kgo.Opt {
	reg := tolerantRegisterer{s.Registry}
	namespace := "drover_" + stage + "_kafka"
	return func(role string) kgo.Opt {
		m := &ownedMetrics{Metrics: kprom.NewMetrics(namespace,
			kprom.Registerer(reg), kprom.Gatherer(s.Registry),
			kprom.WithStaticLabel(prometheus.Labels{"client": role}))}
		return hookOpt{Opt: kgo.WithHooks(m), m: m}
	}
}

// hookOpt is the kgo.Opt of KafkaMetrics, with its hook at hand.
type hookOpt struct {
	kgo.Opt
	m *ownedMetrics
}

// KafkaRunMetrics is KafkaMetrics for roles whose clients come and go (a
// scheduled job's runs, one at a time): all clients of a role feed one set
// of series, registered with the role's first client and kept after it
// closes, so the counters add up over the runs instead of vanishing
// between them. The buffered-records series read the first client.
func (s *Server) KafkaRunMetrics(stage string) func(role string) kgo.Opt {
	newOpt := s.KafkaMetrics(stage)
	var mu sync.Mutex
	opts := map[string]kgo.Opt{}
	return func(role string) kgo.Opt {
		mu.Lock()
		defer mu.Unlock()
		o, ok := opts[role]
		if !ok {
			h := newOpt(role).(hookOpt)
			h.m.kept = true
			o = h
			opts[role] = o
		}
		return o
	}
}

// ownedMetrics is a kprom instance that registers and unregisters its
// series for the first client that carries it only: a client built from
// that client's Opts() shares the hook and would otherwise re-create the
// series on start and remove the owner's on close.
type ownedMetrics struct {
	*kprom.Metrics
	kept  bool // KafkaRunMetrics: registered once, never removed
	mu    sync.Mutex
	owner *kgo.Client
}

// OnNewClient registers the series for the first live client.
func (m *ownedMetrics) OnNewClient(c *kgo.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owner == nil {
		m.owner = c
		m.Metrics.OnNewClient(c)
	}
}

// OnClientClosed removes the series when their owner closes.
func (m *ownedMetrics) OnClientClosed(c *kgo.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.owner == c && !m.kept {
		m.owner = nil
		m.Metrics.OnClientClosed(c)
	}
}

var (
	_ kgo.HookNewClient    = (*ownedMetrics)(nil)
	_ kgo.HookClientClosed = (*ownedMetrics)(nil)
	_ kgo.HookBrokerWrite  = (*ownedMetrics)(nil)
)

// tolerantRegisterer turns a duplicate registration (two live clients with
// one role) into a no-op instead of kprom's panic.
type tolerantRegisterer struct{ prometheus.Registerer }

func (r tolerantRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c) // metrics are not worth a panic
	}
}
