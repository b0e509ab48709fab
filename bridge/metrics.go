package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus collectors.
type metrics struct {
	received       prometheus.Counter
	produced       *prometheus.CounterVec // topic
	deadLetters    *prometheus.CounterVec // stage, reason
	acked          prometheus.Counter
	inflight       prometheus.Gauge
	produceLatency prometheus.Histogram
	connected      prometheus.Gauge
	subscribed     prometheus.Gauge
	connections    prometheus.Counter
	reconnects     prometheus.Counter
	takeovers      prometheus.Counter
	commands       *prometheus.CounterVec
	deltas         *prometheus.CounterVec // result
	statuses       *prometheus.CounterVec // status
	replies        *prometheus.CounterVec // result
	blocked        prometheus.Counter
	connectErrors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "drover", "bridge"
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_received_total",
			Help: "MQTT messages received."}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_produced_total",
			Help: "Records acknowledged by Kafka, per topic (dead letters included under dlq.events)."}, []string{"topic"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Dead letters written, per stage and reason."}, []string{"stage", "reason"}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_acked_total",
			Help: "MQTT messages acknowledged after Kafka acknowledged their records or dead letter."}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "inflight_messages",
			Help: "MQTT messages received and not yet acknowledged."}),
		produceLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "produce_latency_seconds",
			Help:    "Time from MQTT receipt to Kafka acknowledgement of a message's last record.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_connected",
			Help: "1 while the MQTT connection is up."}),
		subscribed: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_subscribed",
			Help: "1 while the shared subscriptions are in place."}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_connections_total",
			Help: "MQTT connections established (the first one included)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_reconnects_total",
			Help: "MQTT connections established after a connection was lost (a steady rise: the broker keeps dropping the bridge)."}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_session_takeovers_total",
			Help: "Times the broker disconnected the bridge because another client connected with its client id (MQTT 5 reason 0x8E): that client may receive the session's messages."}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "commands_total",
			Help: "Downlink commands handled, per result (published, expired, invalid, duplicate)."}, []string{"result"}),
		deltas: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "shadow_deltas_total",
			Help: "Shadow deltas published to devices (devices/{tenant}/{device}/shadow/delta), per result (published, failed)."}, []string{"result"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "command_status_total",
			Help: "Command lifecycle records written to commands.status, per status."}, []string{"status"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "command_replies_total",
			Help: "Device replies to commands, per result (applied, late, duplicate, rejected)."}, []string{"result"}),
		connectErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "mqtt_connect_errors_total",
			Help: "Failed MQTT connection attempts (refused credentials, TLS, network)."}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "inflight_full_total",
			Help: "Times a received message waited because the in-flight bound (receive maximum) was reached."}),
	}
	if reg != nil {
		reg.MustRegister(m.received, m.produced, m.deadLetters, m.acked, m.inflight, m.produceLatency,
			m.connected, m.subscribed, m.connections, m.reconnects, m.takeovers, m.commands, m.deltas, m.statuses, m.replies, m.blocked, m.connectErrors)
	}
	return m
}
