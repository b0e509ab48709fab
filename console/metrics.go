package console

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metrics is the console's own load on the stack, served on its /metrics:
// the requests it sends to Kafka (by API), the queries it runs on the
// database, the requests to the stages, the pages listening, and its
// process CPU.
type metrics struct {
	reg      *prometheus.Registry
	kafka    *prometheus.CounterVec
	db       prometheus.Counter
	stages   prometheus.Counter
	snapshot prometheus.Counter
	sse      prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		kafka: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_console_kafka_requests_total",
			Help: "Requests the console sent to Kafka brokers, by request type."}, []string{"request"}),
		db: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_console_db_queries_total",
			Help: "Queries the console ran on the database."}),
		stages: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_console_stage_requests_total",
			Help: "Requests the console sent to the stages' /readyz and /metrics."}),
		snapshot: prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_console_snapshots_total",
			Help: "Pipeline snapshots computed (one per refresh interval while a page listens)."}),
		sse: prometheus.NewGauge(prometheus.GaugeOpts{Name: "drover_console_event_streams",
			Help: "Pages listening to the snapshot stream now."}),
	}
	m.reg.MustRegister(m.kafka, m.db, m.stages, m.snapshot, m.sse,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// OnBrokerWrite counts every request written to a broker (kgo hook).
func (m *metrics) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil {
		m.kafka.WithLabelValues(kmsg.NameForKey(key)).Inc()
	}
}

var _ kgo.HookBrokerWrite = (*metrics)(nil)

// query and queryRow run a statement on the database and count it.
func (s *Server) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	s.metrics.db.Inc()
	return s.cfg.DB.Query(ctx, sql, args...)
}

func (s *Server) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	s.metrics.db.Inc()
	return s.cfg.DB.QueryRow(ctx, sql, args...)
}
