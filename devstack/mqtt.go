package devstack

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// NewMQTT starts the embedded MQTT broker (mochi-mqtt) on l: MQTT 5 and
// 3.1.1, anonymous clients allowed (but see ReserveClientIDs), shared subscriptions
// ($share/{group}/{filter}), and queues sized so that a slow QoS 1
// subscriber does not lose messages: 65535 in-flight messages per client
// (the protocol's packet id limit) and as many pending writes. Sessions
// live in memory: they survive reconnects (clean start off) but not a
// restart of the broker. A QoS 1/2 publish for a subscriber whose
// in-flight store is full waits for room instead of being acknowledged and
// dropped, and shared groups deliver to connected members first (see
// flowControl). ReserveClientIDs binds client ids to a principal. Close the
// server with Close.
func NewMQTT(l net.Listener, log *slog.Logger, opts ...MQTTOption) (*mqtt.Server, error) {
	return newMQTT(l, log, math.MaxUint16, 30*time.Second, opts...)
}

// newMQTT is NewMQTT with the per-client in-flight limit and the longest
// wait for room as parameters (tests use small ones).
func newMQTT(l net.Listener, log *slog.Logger, maxInflight int, maxWait time.Duration, opts ...MQTTOption) (*mqtt.Server, error) {
	var o mqttOptions
	for _, opt := range opts {
		opt(&o)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = uint16(maxInflight)
	caps.ReceiveMaximum = math.MaxUint16
	caps.MaximumClientWritesPending = math.MaxUint16 + 1
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	caps.SharedSubAvailable = 1
	caps.MinimumProtocolVersion = 3
	// Each topic alias a client sets holds a topic name (up to 64 KiB) for
	// the life of the connection: bound them like Mosquitto (10), not
	// mochi's default of 65535 per client.
	caps.TopicAliasMaximum = 10
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log.With("component", "mqtt"),
		InlineClient: true,
	})
	if err := srv.AddHook(&accessHook{opts: o, log: log.With("component", "mqtt")}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := srv.AddHook(newFlowControl(srv, maxInflight, maxWait, log.With("component", "mqtt")), nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := srv.AddHook(&presenceHook{srv: srv, log: log.With("component", "mqtt"), now: time.Now}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", l)); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if o.ws != nil {
		if err := srv.AddListener(newWSListener(o.ws)); err != nil {
			return nil, fmt.Errorf("mqtt: %w", err)
		}
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return srv, nil
}
