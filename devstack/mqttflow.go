package devstack

import (
	"bytes"
	"log/slog"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// flowControl is a mochi hook that keeps the embedded broker from losing
// QoS 1/2 messages it has already acknowledged.
//
// mochi acknowledges a publisher's message first and then copies it into
// every subscriber's in-flight store; a subscriber with MaximumInflight
// (65535, the packet-id space) messages unacknowledged — a bridge that is
// down or slow, its persistent session filling up — makes mochi drop the
// copy with only a log line and a counter, while the publisher believes it
// delivered. Real brokers queue further (mosquitto's max_queued_messages 0,
// EMQX's max_mqueue_len infinity). This hook gives mochi the behaviour an
// at-least-once pipeline needs instead:
//
//   - OnPublish: a QoS 1/2 message whose topic has a subscriber with no
//     room (for a shared group: every member without room) is held back —
//     the publisher's connection waits, as TCP back-pressure — until room
//     appears. After maxWait it is refused: an MQTT 5 publisher gets PUBACK
//     (or PUBREC) reason 0x97 (quota exceeded) and knows to retry; an MQTT
//     3.1.1 one, which has no negative acknowledgement, is disconnected (its
//     session resends on reconnect). Either way nothing is acknowledged and
//     then dropped, and no publish is left unanswered. A client's own subscription never
//     holds its publishes back (it drains its in-flight messages on the
//     connection that would wait).
//   - OnSelectSubscribers: a shared group's message goes to a connected
//     member with the fewest in-flight messages, not to a random member:
//     upstream mochi picks randomly, also members whose connection is gone,
//     so half of the traffic waited in a killed bridge replica's session
//     while the other replica idled.
type flowControl struct {
	mqtt.HookBase
	srv     *mqtt.Server
	limit   int           // in-flight messages at which a subscriber counts as full
	maxWait time.Duration // longest a publish waits for room
	log     *slog.Logger

	held    atomic.Int64 // publishes that had to wait
	refused atomic.Int64 // publishes refused after maxWait
}

// flowMargin is the room kept below MaximumInflight: concurrent publishers
// pass the check at the same moment and each adds one message.
func flowMargin(maxInflight int) int {
	return max(1, min(4096, maxInflight/16))
}

func newFlowControl(srv *mqtt.Server, maxInflight int, maxWait time.Duration, log *slog.Logger) *flowControl {
	return &flowControl{srv: srv, limit: maxInflight - flowMargin(maxInflight), maxWait: maxWait, log: log}
}

// ID implements mqtt.Hook.
func (h *flowControl) ID() string { return "drover-flow-control" }

// Provides implements mqtt.Hook.
func (h *flowControl) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnSelectSubscribers}, []byte{b})
}

// OnPublish holds a QoS 1/2 publish back while a subscriber has no room.
func (h *flowControl) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return pk, nil
	}
	// Fast path: no client can be full while the whole broker holds fewer
	// in-flight messages than one client's limit.
	if atomic.LoadInt64(&h.srv.Info.Inflight) < int64(h.limit) {
		return pk, nil
	}
	full := h.fullSubscriber(cl, pk.TopicName)
	if full == "" {
		return pk, nil
	}
	h.held.Add(1)
	deadline := time.Now().Add(h.maxWait)
	for full != "" {
		if cl.Closed() || time.Now().After(deadline) {
			h.refused.Add(1)
			h.log.Warn("mqtt: refusing a publish: a subscriber has no room for more in-flight messages",
				"publisher", cl.ID, "topic", pk.TopicName, "subscriber", full, "waited", h.maxWait)
			return pk, packets.ErrQuotaExceeded
		}
		time.Sleep(2 * time.Millisecond)
		full = h.fullSubscriber(cl, pk.TopicName)
	}
	return pk, nil
}

// fullSubscriber returns the id of a subscriber of topic (other than pub)
// without room, or of a shared group all of whose members are without
// room; "" when every subscriber has room.
func (h *flowControl) fullSubscriber(pub *mqtt.Client, topic string) string {
	subs := h.srv.Topics.Subscribers(topic)
	for id := range subs.Subscriptions {
		if id != pub.ID && !h.hasRoom(id) {
			return id
		}
	}
	for group, members := range subs.Shared {
		room := false
		for id := range members {
			if id == pub.ID || h.hasRoom(id) {
				room = true
				break
			}
		}
		if !room && len(members) > 0 {
			return group
		}
	}
	return ""
}

func (h *flowControl) hasRoom(id string) bool {
	cl, ok := h.srv.Clients.Get(id)
	return !ok || cl.State.Inflight.Len() < h.limit
}

// OnSelectSubscribers picks, per shared group, the connected member with
// the fewest in-flight messages (a disconnected one only when no member is
// connected), so a live replica takes the traffic of a dead one.
func (h *flowControl) OnSelectSubscribers(subs *mqtt.Subscribers, _ packets.Packet) *mqtt.Subscribers {
	if len(subs.Shared) == 0 {
		return subs
	}
	if subs.SharedSelected == nil {
		subs.SharedSelected = map[string]packets.Subscription{}
	}
	for _, members := range subs.Shared {
		var (
			bestID   string
			bestSub  packets.Subscription
			bestRank = -1
		)
		for id, sub := range members {
			rank := 0 // unknown client: last resort
			if cl, ok := h.srv.Clients.Get(id); ok {
				rank = 1 << 20 // disconnected: kept for its session
				if !cl.Closed() {
					rank = 2 << 20
				}
				rank -= min(cl.State.Inflight.Len(), 1<<20-1)
			}
			if rank > bestRank {
				bestID, bestSub, bestRank = id, sub, rank
			}
		}
		if bestRank < 0 {
			continue
		}
		if prev, ok := subs.SharedSelected[bestID]; ok {
			bestSub = prev.Merge(bestSub)
		}
		subs.SharedSelected[bestID] = bestSub
	}
	return subs
}
