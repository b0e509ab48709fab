package console

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metrics is the console's own load on the stack (served by `drover
// console` on its admin address, beside its process CPU): the requests it
// sends to Kafka (by API), the queries it runs on the database, the
// requests to the stages, the snapshots and the pages listening.
type metrics struct {
	kafka    *prometheus.CounterVec
	db       prometheus.Counter
	stages   prometheus.Counter
	snapshot prometheus.Counter
	sse      prometheus.Gauge
}

// newMetrics registers the console's metrics on reg (nil: a private
// registry nobody scrapes).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
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
	for _, c := range []prometheus.Collector{m.kafka, m.db, m.stages, m.snapshot, m.sse} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("console metrics: %w", err)
		}
	}
	return m, nil
}

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
