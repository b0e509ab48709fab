package registry

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// viewMetrics are a View's Prometheus metrics (names drover_registry_*).
type viewMetrics struct {
	records   *prometheus.CounterVec // by result
	devices   *prometheus.GaugeVec   // by status
	result    map[string]prometheus.Counter
	status    map[Status]prometheus.Gauge
	tenants   prometheus.Gauge
	ready     prometheus.Gauge
	restore   prometheus.Gauge
	conflicts prometheus.Counter
}

// Results of applying a registry record (label "result" of
// drover_registry_records_total).
const (
	resultApplied     = "applied"
	resultDeleted     = "deleted"
	resultUndecodable = "undecodable"
	resultInvalid     = "invalid"
)

func newViewMetrics(reg prometheus.Registerer) (*viewMetrics, error) {
	m := &viewMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_registry_records_total",
			Help: "Registry records read by the view, by result: applied, deleted (tombstone), undecodable (not Avro of a known schema; skipped) or invalid (decoded but malformed or key mismatch; skipped).",
		}, []string{"result"}),
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "drover_registry_devices",
			Help: "Devices in the registry view, by status.",
		}, []string{"status"}),
		tenants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_registry_tenants",
			Help: "Tenants in the registry view.",
		}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_registry_view_ready",
			Help: "1 once the registry view has read up to the end offsets it saw at start, else 0.",
		}),
		restore: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_registry_view_restore_seconds",
			Help: "How long the registry view took to become ready.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_registry_index_conflicts_total",
			Help: "Certificate fingerprints or alternative ids claimed by a second device (the newer claim wins; writers refuse this, so a count means a record written around them).",
		}),
	}
	// The children are looked up once: the view counts every record.
	m.status = map[Status]prometheus.Gauge{}
	for _, st := range []Status{StatusActive, StatusSuspended, StatusRevoked} {
		m.status[st] = m.devices.WithLabelValues(string(st))
	}
	m.result = map[string]prometheus.Counter{}
	for _, r := range []string{resultApplied, resultDeleted, resultUndecodable, resultInvalid} {
		m.result[r] = m.records.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.records, m.devices, m.tenants, m.ready, m.restore, m.conflicts} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("registry view: metrics already registered (one view per metrics registry)")
			}
			return nil, err
		}
	}
	return m, nil
}
