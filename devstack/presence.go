package devstack

import (
	"encoding/json"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// PresenceNode is the node name in the embedded broker's presence topics.
const PresenceNode = "drover"

// presenceHook announces clients as EMQX does with its client-connected
// and client-disconnected system messages: on
// $SYS/brokers/{node}/clients/{clientid}/connected (and .../disconnected)
// a JSON object with clientid, username, proto_ver and connected_at (or
// disconnected_at), in milliseconds, plus (drover's addition) the number
// of subscriptions the session resumed with; and .../subscribed (with
// subscribed_at) when it subscribes. Unlike EMQX's, the messages are
// retained, so a bridge that subscribes later learns who is connected now
// (it compares the times). The bridge's downlink sends a device's
// waiting commands when it connects (see bridge/README.md).
type presenceHook struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
	now func() time.Time
}

// ID implements mqtt.Hook.
func (h *presenceHook) ID() string { return "drover-presence" }

// Provides says which events the hook handles.
func (h *presenceHook) Provides(b byte) bool {
	return b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect || b == mqtt.OnSubscribed
}

// PresenceTopic returns the topic of a presence event (connected or
// disconnected) of client id on node.
func PresenceTopic(node, clientID, event string) string {
	return "$SYS/brokers/" + node + "/clients/" + clientID + "/" + event
}

// OnSessionEstablished announces the client.
func (h *presenceHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.announce(cl, "connected")
}

// OnSubscribed announces a subscription (retained too): a device that
// subscribes to its commands after connecting with a clean session gets
// the commands the bridge tried to send in between.
func (h *presenceHook) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	h.announce(cl, "subscribed")
}

// OnDisconnect announces that the client left.
func (h *presenceHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.announce(cl, "disconnected")
}

func (h *presenceHook) announce(cl *mqtt.Client, event string) {
	if cl.Net.Inline {
		return
	}
	m := map[string]any{"clientid": cl.ID, "username": string(cl.Properties.Username),
		"proto_ver": cl.Properties.ProtocolVersion, event + "_at": h.now().UnixMilli()}
	if event == "connected" {
		// A drover extension: how many subscriptions the session resumed
		// with. With none, the bridge waits for the client's subscription
		// before it sends (a command published earlier reaches nobody).
		m["subscriptions"] = cl.State.Subscriptions.Len()
	}
	body, _ := json.Marshal(m)
	if err := h.srv.Publish(PresenceTopic(PresenceNode, cl.ID, event), body, true, 0); err != nil {
		h.log.Warn("presence event not published", "client", cl.ID, "event", event, "err", err)
	}
}
