package simulate

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the simulator's Prometheus series. With no registerer they
// still count, unexported.
type metrics struct {
	sent      *prometheus.CounterVec
	invalid   *prometheus.CounterVec
	pubErrs   prometheus.Counter
	uploads   *prometheus.CounterVec
	connected prometheus.Gauge
	commands  prometheus.Counter
	deltas    prometheus.Counter

	// The labelled children, resolved once (not per message).
	sentBy    map[string]prometheus.Counter
	invalidBy map[Class]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_simulate_messages_sent_total",
			Help: "Valid simulated messages acknowledged by the MQTT broker, by channel.",
		}, []string{"channel"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_simulate_invalid_sent_total",
			Help: "Malformed simulated messages acknowledged by the MQTT broker, by bad-input class (the bridge's reason code).",
		}, []string{"class"}),
		pubErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_simulate_publish_errors_total",
			Help: "Simulated messages the MQTT broker never acknowledged, after retries.",
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_simulate_media_uploads_total",
			Help: "Media objects put into S3 by the simulator, by result (ok, error).",
		}, []string{"result"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "drover_simulate_mqtt_connections",
			Help: "MQTT connections of the simulator that are up.",
		}),
		deltas: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_simulate_shadow_deltas_applied_total",
			Help: "Shadow deltas the simulated devices applied and reported back (--follow-shadow).",
		}),
		commands: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "drover_simulate_commands_answered_total",
			Help: "Downlink commands the simulated devices replied to (--answer-commands).",
		}),
	}
	m.sentBy = map[string]prometheus.Counter{}
	for _, ch := range channels {
		m.sentBy[ch] = m.sent.WithLabelValues(ch)
	}
	m.invalidBy = map[Class]prometheus.Counter{}
	for _, c := range Classes() {
		m.invalidBy[c] = m.invalid.WithLabelValues(string(c))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.invalid, m.pubErrs, m.uploads, m.connected, m.commands, m.deltas} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("simulate metrics: already registered (one simulator per registry): %w", err)
			}
			return nil, fmt.Errorf("simulate metrics: %w", err)
		}
	}
	return m, nil
}
