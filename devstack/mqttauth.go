package devstack

import (
	"bytes"
	"crypto/subtle"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/drover-iot/drover/devstack/devstage"
)

// BridgePrincipal is the bridge's MQTT user name, and the prefix of every
// bridge client id ("drover-bridge-<host>", bridge.DefaultClientID): in
// every broker configuration drover ships, only this principal may use
// client ids with this prefix.
const BridgePrincipal = devstage.BridgePrincipal

// MQTTOption configures NewMQTT.
type MQTTOption func(*mqttOptions)

type mqttOptions struct {
	reservedPrefix string
	user           string
	password       []byte
	gate           *RegistryGate
	ws             net.Listener // MQTT over WebSockets (WithWebSocket)
}

// RegistryGate switches the broker to the device registry once the
// registry can be read: until Enforce, clients are handled as without it;
// from then on the registry decides every CONNECT, PUBLISH, SUBSCRIBE and
// delivery (RegistryAuth). `drover dev` enforces as soon as its topics and
// schemas are provisioned, before any stage connects.
type RegistryGate struct {
	auth atomic.Pointer[RegistryAuth]
}

// WithRegistryGate lets gate switch the broker to the registry.
func WithRegistryGate(gate *RegistryGate) MQTTOption {
	return func(o *mqttOptions) { o.gate = gate }
}

// Enforce makes h decide every client from now on.
func (g *RegistryGate) Enforce(h *RegistryAuth) { g.auth.Store(h) }

func (g *RegistryGate) current() *RegistryAuth {
	if g == nil {
		return nil
	}
	return g.auth.Load()
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
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect}, []byte{b})
}

// OnConnectAuthenticate refuses a reserved client id without the
// principal's credentials.
func (h *accessHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if r := h.opts.gate.current(); r != nil {
		// The registry checks the bridge's own client ids; the prefix stays
		// the bridge's against every other principal too.
		if h.opts.reservedPrefix != "" && strings.HasPrefix(cl.ID, h.opts.reservedPrefix) &&
			subtle.ConstantTimeCompare(cl.Properties.Username, []byte(h.opts.user)) != 1 {
			h.log.Warn("mqtt: refused a client id reserved for the bridge", "client_id", cl.ID, "username", string(cl.Properties.Username))
			return false
		}
		return r.OnConnectAuthenticate(cl, pk)
	}
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

// OnACLCheck allows every topic (the registry's ACL once enforced).
func (h *accessHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if r := h.opts.gate.current(); r != nil {
		return r.OnACLCheck(cl, topic, write)
	}
	return true
}

// OnDisconnect lets the registry forget the client's principal.
func (h *accessHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if r := h.opts.gate.current(); r != nil {
		r.OnDisconnect(cl, err, expire)
	}
}
