package bridge

import (
	"context"
	"encoding/json"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/autopaho"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
)

// Presence modes of the downlink (Config.Presence, --command-presence).
const (
	// PresenceEvents: a command waits (queued, in Kafka) until its device
	// is connected, as the broker's client-connected events say.
	PresenceEvents = "events"
	// PresenceNone: commands are published at once; a device that is not
	// connected gets them from its broker session, if it has one.
	PresenceNone = "none"
)

// PresenceFilter is the subscription that carries the broker's
// client-connected and client-disconnected events (EMQX's system topics;
// the embedded broker publishes the same).
const PresenceFilter = "$SYS/brokers/+/clients/#"

const presencePrefix = "$SYS/brokers/"

// presence is who is connected, from the broker's events. Safe for
// concurrent use.
type presence struct {
	mu   sync.Mutex
	seen map[string]seen // device key → its last events
	kick chan string     // device keys that just connected or subscribed
}

// seen is what the events said of one device.
type seen struct {
	connected, disconnected, subscribed int64 // ms
	resumed                             bool  // the session resumed with subscriptions (or the broker does not say)
}

// online: connected, not disconnected since, and subscribed (now, or in
// the session it resumed).
func (s seen) online() bool {
	return s.connected > 0 && s.connected >= s.disconnected && (s.resumed || s.subscribed >= s.connected)
}

func newPresence() *presence {
	return &presence{seen: map[string]seen{}, kick: make(chan string, 4096)}
}

// online reports whether the device is connected and subscribed.
func (p *presence) online(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[key].online()
}

// onlineKeys returns the keys of the devices that are online.
func (p *presence) onlineKeys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k, s := range p.seen {
		if s.online() {
			out = append(out, k)
		}
	}
	return out
}

// presenceEvent is the JSON body of EMQX's (and the embedded broker's)
// client events.
type presenceEvent struct {
	ClientID       string `json:"clientid"`
	Username       string `json:"username"`
	ConnectedAt    int64  `json:"connected_at"`
	DisconnectedAt int64  `json:"disconnected_at"`
	SubscribedAt   int64  `json:"subscribed_at"`
	// Subscriptions is the embedded broker's addition: the subscriptions
	// the session resumed with. 0 means the device has yet to subscribe,
	// so its commands wait for its "subscribed" event; absent (EMQX) means
	// send at once.
	Subscriptions *int `json:"subscriptions"`
}

// isPresence reports whether topic is a broker presence event.
func isPresence(topic string) bool { return strings.HasPrefix(topic, presencePrefix) }

// observe records one presence message (topic
// $SYS/brokers/{node}/clients/{clientid}/{connected|disconnected}) and
// reports whether it says a device has just connected. Client ids that are
// not device keys (services, tooling) are ignored.
func (p *presence) observe(topic string, payload []byte) bool {
	rest := strings.TrimPrefix(topic, presencePrefix)
	_, rest, _ = strings.Cut(rest, "/") // node
	rest, ok := strings.CutPrefix(rest, "clients/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return false
	}
	client, event := rest[:i], rest[i+1:]
	var ev presenceEvent
	_ = json.Unmarshal(payload, &ev) // the topic says enough without it
	if ev.ClientID != "" {
		client = ev.ClientID
	}
	if _, _, err := identity.ParseKey(client); err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.seen[client]
	switch event {
	case "connected":
		at := ev.ConnectedAt
		if at <= 0 {
			at = max(t.connected, t.disconnected) + 1
		}
		if at >= t.connected {
			t.connected = at
			t.resumed = ev.Subscriptions == nil || *ev.Subscriptions > 0
		}
	case "disconnected":
		at := ev.DisconnectedAt
		if at <= 0 {
			at = max(t.connected, t.disconnected) + 1
		}
		t.disconnected = max(t.disconnected, at)
	case "subscribed":
		at := ev.SubscribedAt
		if at <= 0 {
			at = max(t.connected, t.disconnected, t.subscribed) + 1
		}
		t.subscribed = max(t.subscribed, at)
	default:
		return false
	}
	p.seen[client] = t
	return t.online()
}

// onPresence handles a presence message (paho's goroutine: it only
// records and signals).
func (b *Bridge) onPresence(topic string, payload []byte) {
	b.log.Debug("presence event", "topic", topic, "payload", string(payload))
	if b.presence.observe(topic, payload) {
		rest := strings.TrimPrefix(topic, presencePrefix)
		_, rest, _ = strings.Cut(rest, "/")
		rest = strings.TrimPrefix(rest, "clients/")
		key := rest[:strings.LastIndexByte(rest, '/')]
		var ev presenceEvent
		if json.Unmarshal(payload, &ev) == nil && ev.ClientID != "" {
			key = ev.ClientID
		}
		select {
		case b.presence.kick <- key:
		default:
			b.log.Warn("downlink: too many connections at once; a device's waiting commands wait for its next connect", "device", key)
		}
	}
}

// runFlusher sends the waiting commands of each device that connects,
// until ctx ends.
func (b *Bridge) runFlusher(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		var key string
		select {
		case <-ctx.Done():
			return
		case key = <-b.presence.kick:
		}
		tenant, device, err := identity.ParseKey(key)
		if err != nil || !b.owns(key) {
			continue // another replica sends to this device
		}
		now := b.cfg.Now()
		open := b.tracker.Open(tenant, device)
		b.log.Debug("downlink: device connected", "device", key, "waiting", len(open))
		for _, c := range open {
			if c.Overdue(now) || c.Name == control.DesiredCommand {
				continue // the expiry loop records it; desired state goes as the delta
			}
			if err := b.send(ctx, cm, c, ""); err != nil {
				return
			}
		}
		if b.cfg.ShadowDeltas {
			if d, ok := b.shadows.get(key); ok {
				if err := b.sendDelta(ctx, cm, key, d); err != nil {
					return
				}
			}
		}
	}
}
