package devstack

import (
	"bytes"
	"crypto/subtle"
	"log/slog"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// BridgePrincipal is the bridge's MQTT user name, and the prefix of every
// bridge client id ("drover-bridge-<host>", bridge.DefaultClientID): in
// every broker configuration drover ships, only this principal may use
// client ids with this prefix.
const BridgePrincipal = "drover-bridge"

// MQTTOption configures NewMQTT.
type MQTTOption func(*mqttOptions)

type mqttOptions struct {
	reservedPrefix string
	user           string
	password       []byte
}

// ReserveClientIDs makes the broker refuse (CONNACK 0x86, bad user name or
// password) any client whose id starts with prefix unless it authenticates
// as user with password. Without it a client that connects with the
// bridge's client id takes the bridge's session over: the broker hands it
// the session's queued QoS 1 messages, it acknowledges them, and they never
// reach Kafka although their publishers got PUBACKs. Other clients stay
// anonymous.
func ReserveClientIDs(prefix, user string, password []byte) MQTTOption {
	return func(o *mqttOptions) {
		o.reservedPrefix, o.user, o.password = prefix, user, password
	}
}

// accessHook is the embedded broker's authentication: every client may
// connect and use every topic, except that client ids under the reserved
// prefix belong to one principal.
type accessHook struct {
	mqtt.HookBase
	opts mqttOptions
	log  *slog.Logger
}

// ID implements mqtt.Hook.
func (h *accessHook) ID() string { return "drover-access" }

// Provides implements mqtt.Hook.
func (h *accessHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

// OnConnectAuthenticate refuses a reserved client id without the
// principal's credentials.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.opts.reservedPrefix == "" || !strings.HasPrefix(cl.ID, h.opts.reservedPrefix) {
		return true
	}
	userOK := subtle.ConstantTimeCompare(cl.Properties.Username, []byte(h.opts.user)) == 1
	passOK := subtle.ConstantTimeCompare(pk.Connect.Password, h.opts.password) == 1
	if userOK && passOK {
		return true
	}
	h.log.Warn("mqtt: refused a client id reserved for the bridge: wrong or missing credentials",
		"client_id", cl.ID, "username", string(cl.Properties.Username), "remote", cl.Net.Remote, "reserved_prefix", h.opts.reservedPrefix)
	return false
}

// OnACLCheck allows every topic.
func (h *accessHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
