package httpapi

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/ingest"
)

type metrics struct {
	requests *prometheus.CounterVec
	items    *prometheus.CounterVec
	inflight prometheus.Gauge
	shed     prometheus.Counter
	dups     prometheus.Counter
	ignored  prometheus.Counter

	// The children of requests and items already used: a series appears
	// once counted, as with WithLabelValues, without hashing its label on
	// every item.
	byCode sync.Map // int → prometheus.Counter
	byKind sync.Map // ingest.Kind → prometheus.Counter
}

func (m *metrics) request(code int) {
	if c, ok := m.byCode.Load(code); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.requests.WithLabelValues(strconv.Itoa(code))
	m.byCode.Store(code, c)
	c.Inc()
}

func (m *metrics) item(k ingest.Kind) { m.itemsOf(k, 1) }

// itemsOf counts n items of kind k.
func (m *metrics) itemsOf(k ingest.Kind, n int) {
	if c, ok := m.byKind.Load(k); ok {
		c.(prometheus.Counter).Add(float64(n))
		return
	}
	c := m.items.WithLabelValues(kindName[k])
	m.byKind.Store(k, c)
	c.Add(float64(n))
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_http_requests_total", Help: "HTTP door answers by status code."}, []string{"code"}),
		items:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_http_items_total", Help: "Messages (single or batch items) by outcome."}, []string{"outcome"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "drover_http_in_flight", Help: "Requests waiting for Kafka's acknowledgement."}),
		shed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_http_shed_total", Help: "Requests answered 503 because the in-flight bound was reached."}),
		dups:     prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_http_lorawan_duplicates_total", Help: "LoRaWAN uplinks dropped as copies of a frame already acknowledged."}),
		ignored:  prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_http_lorawan_ignored_total", Help: "LoRaWAN webhook events that carry no record (ack, txack, log, ...)."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.items, m.inflight, m.shed, m.dups, m.ignored} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
