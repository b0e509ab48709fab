package alerts

import "github.com/prometheus/client_golang/prometheus"

// metrics of the alerts group. All are prefixed drover_alerts_.
type metrics struct {
	records      *prometheus.CounterVec // topic
	fired        *prometheus.CounterVec // rule, severity
	resolved     *prometheus.CounterVec // rule
	evalErrors   *prometheus.CounterVec // rule, reason
	suppressed   *prometheus.CounterVec // reason: replayed, old
	deadLetters  prometheus.Counter
	ticks        prometheus.Counter
	tickErrors   prometheus.Counter
	sweepSeconds prometheus.Histogram
	sweepDevices prometheus.Gauge
	sweepSkipped prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_alerts_records_total", Help: "Input records consumed (raw.sensor, raw.gps, and the loop topic's offline ticks), by topic.",
		}, []string{"topic"}),
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_alerts_fired_total", Help: "Alerts that started firing, by rule and severity.",
		}, []string{"rule", "severity"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_alerts_resolved_total", Help: "Alerts that resolved, by rule.",
		}, []string{"rule"}),
		evalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_alerts_evaluation_errors_total",
			Help: "Records the rules could not be evaluated on, by rule (empty for the record as a whole) and reason.",
		}, []string{"rule", "reason"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_alerts_suppressed_records_total",
			Help: "Records that updated state without firing or resolving alerts, by reason (replayed, old).",
		}, []string{"reason"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_alerts_dead_letters_total", Help: "Undecodable input records written to dlq.events.",
		}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_alerts_offline_ticks_total", Help: "Offline-check ticks the sweep sent to the loop topic.",
		}),
		tickErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_alerts_offline_tick_errors_total", Help: "Offline-check ticks that could not be produced.",
		}),
		sweepSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "drover_alerts_sweep_duration_seconds", Help: "Time one offline sweep over the local table took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		sweepDevices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_alerts_sweep_devices", Help: "Devices the last offline sweep visited (this instance's partitions).",
		}),
		sweepSkipped: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_alerts_sweep_skipped_partitions", Help: "Partitions the last offline sweep skipped because they were catching up a backlog.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.records, m.fired, m.resolved, m.evalErrors, m.suppressed, m.deadLetters, m.ticks, m.tickErrors, m.sweepSeconds, m.sweepDevices, m.sweepSkipped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
