package features

import "github.com/prometheus/client_golang/prometheus"

// metrics are the features group's Prometheus metrics.
type metrics struct {
	records     *prometheus.CounterVec // topic
	bad         *prometheus.CounterVec // topic
	lateUpdates *prometheus.CounterVec // window
	lateDropped *prometheus.CounterVec // window
	future      prometheus.Counter
	emitted     *prometheus.CounterVec // reason
	duplicates  *prometheus.CounterVec // topic
	ticks       prometheus.Counter
	tickVisited prometheus.Counter
	deadLetters prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_records_total", Help: "Input records processed by the features group, by topic.",
		}, []string{"topic"}),
		bad: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_bad_records_total", Help: "Input records that could not be decoded (skipped; they stay in the input topic), by topic.",
		}, []string{"topic"}),
		lateUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_late_updates_total", Help: "Late records within the allowed lateness that updated (and re-emitted) an emitted window, by window size.",
		}, []string{"window"}),
		lateDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_late_dropped_total", Help: "Records later than the allowed lateness, dropped from a window of this size (still in raw.* and the database).",
		}, []string{"window"}),
		future: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_features_future_dropped_total", Help: "Records whose event time is further ahead of the wall clock than --max-future, dropped.",
		}),
		emitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_emitted_total", Help: "Feature records emitted, by reason: watermark (event time passed the window end), late (re-emission after a late update), idle (closed by the wall clock).",
		}, []string{"reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_features_duplicates_skipped_total", Help: "Redelivered input records (offset already applied to the device's state) skipped, by topic.",
		}, []string{"topic"}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_features_ticks_total", Help: "Wall-clock ticks run over the group table.",
		}),
		tickVisited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_features_tick_visited_total", Help: "Device entries visited by wall-clock ticks.",
		}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_features_dead_letters_total", Help: "Undecodable input records written to dlq.events (only with dead letters on; off by default, the alerts group writes them).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.bad, m.lateUpdates, m.lateDropped, m.future, m.emitted, m.duplicates, m.ticks, m.tickVisited, m.deadLetters)
	}
	return m
}
