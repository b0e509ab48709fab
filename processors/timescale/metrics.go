package timescale

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the sink's Prometheus series (namespace drover_sink).
type metrics struct {
	rows       *prometheus.CounterVec // table
	records    *prometheus.CounterVec // topic, outcome
	batchSize  prometheus.Histogram   // records per committed batch
	batchTime  prometheus.Histogram   // seconds per database write
	endToEnd   prometheus.Histogram   // record timestamp → offset commit
	lag        *prometheus.GaugeVec   // topic, partition
	errors     *prometheus.CounterVec // kind: write, commit, decode
	dbUp       prometheus.Gauge       // 1 when the last database operation succeeded
	maintained *prometheus.CounterVec // action: partition_created, partition_dropped, view_refreshed
	// refreshSeconds times the incremental rollup refreshes.
	refreshSeconds prometheus.Histogram
	// duplicates counts records that met their natural key: table,
	// outcome (skipped, dead_letter).
	duplicates *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "drover", Subsystem: "sink", Name: "rows_written_total",
			Help: "Rows inserted or updated per table (duplicates that wrote nothing are not counted).",
		}, []string{"table"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "drover", Subsystem: "sink", Name: "records_total",
			Help: "Kafka records committed, by topic and outcome (row, dead_letter, tombstone, skipped: a device state without an event time or a registry tenant entry).",
		}, []string{"topic", "outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "drover", Subsystem: "sink", Name: "batch_records",
			Help:    "Records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "drover", Subsystem: "sink", Name: "batch_write_seconds",
			Help:    "Time to write one batch (staging COPY, merge, commit).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "drover", Subsystem: "sink", Name: "end_to_end_seconds",
			Help:    "From the Kafka record timestamp to the commit of its offset.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "drover", Subsystem: "sink", Name: "consumer_lag_records",
			Help: "Records behind the partition's high watermark after the last commit.",
		}, []string{"topic", "partition"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "drover", Subsystem: "sink", Name: "errors_total",
			Help: "Failures by kind (write, commit, decode, maintenance); writes and decodes are retried.",
		}, []string{"kind"}),
		dbUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "drover", Subsystem: "sink", Name: "database_up",
			Help: "1 when the last database operation succeeded, 0 while it fails.",
		}),
		maintained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "drover", Subsystem: "sink", Name: "maintenance_total",
			Help: "Maintenance actions: partition_created, partition_dropped, view_refreshed.",
		}, []string{"action"}),
		refreshSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "drover", Subsystem: "sink", Name: "rollup_refresh_seconds",
			Help:    "Time to merge the rows written since the last refresh into the rollups.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "drover", Subsystem: "sink", Name: "duplicates_total",
			Help: "Records whose natural key was already stored or met earlier in their batch, by table and outcome: " +
				"skipped (the same record again, or an older version: nothing to write) or dead_letter (different content: " +
				"stored in dead_letters as duplicate_timestamp or duplicate_key).",
		}, []string{"table", "outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.records, m.batchSize, m.batchTime, m.endToEnd, m.lag, m.errors, m.dbUp, m.maintained, m.refreshSeconds, m.duplicates)
	}
	for _, t := range Tables {
		m.rows.WithLabelValues(t)
		m.duplicates.WithLabelValues(t, "skipped")
		m.duplicates.WithLabelValues(t, "dead_letter")
	}
	return m
}
