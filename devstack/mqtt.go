package devstack

import (
	"fmt"
	"log/slog"
	"math"
	"net"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// NewMQTT starts the embedded MQTT broker (mochi-mqtt) on l: MQTT 5 and
// 3.1.1, anonymous clients allowed, shared subscriptions
// ($share/{group}/{filter}), and queues sized so that a slow QoS 1
// subscriber does not lose messages: 65535 in-flight messages per client
// (the protocol's packet id limit) and as many pending writes. Sessions
// live in memory: they survive reconnects (clean start off) but not a
// restart of the broker. Close the server with Close.
func NewMQTT(l net.Listener, log *slog.Logger) (*mqtt.Server, error) {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = math.MaxUint16
	caps.ReceiveMaximum = math.MaxUint16
	caps.MaximumClientWritesPending = math.MaxUint16 + 1
	caps.MaximumSessionExpiryInterval = math.MaxUint32
	caps.SharedSubAvailable = 1
	caps.MinimumProtocolVersion = 3
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       log.With("component", "mqtt"),
		InlineClient: true,
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", l)); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	if err := srv.Serve(); err != nil {
		return nil, fmt.Errorf("mqtt: %w", err)
	}
	return srv, nil
}
