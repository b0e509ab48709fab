package sparkplug

import (
	"strings"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
)

// Namespace is the first topic level of Sparkplug B.
const Namespace = "spBv1.0"

// MessageType is the third topic level: what a message is.
type MessageType string

// The message types drover reads. Commands (NCMD, DCMD) go to edge nodes and
// STATE is a host application's own; a door does not subscribe to them.
const (
	NBIRTH MessageType = "NBIRTH"
	NDATA  MessageType = "NDATA"
	NDEATH MessageType = "NDEATH"
	DBIRTH MessageType = "DBIRTH"
	DDATA  MessageType = "DDATA"
	DDEATH MessageType = "DDEATH"
	NCMD   MessageType = "NCMD"
)

// Device reports whether t is a device-level message (DBIRTH, DDATA, DDEATH).
func (t MessageType) Device() bool { return t == DBIRTH || t == DDATA || t == DDEATH }

func (t MessageType) known() bool {
	switch t {
	case NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH:
		return true
	}
	return false
}

// Topic is a parsed Sparkplug B topic.
type Topic struct {
	Group  string
	Type   MessageType
	Edge   string
	Device string // "" for node messages
}

// String returns the topic as published.
func (t Topic) String() string {
	s := Namespace + "/" + t.Group + "/" + string(t.Type) + "/" + t.Edge
	if t.Device != "" {
		s += "/" + t.Device
	}
	return s
}

// Tenant returns the tenant of the topic: the Sparkplug group.
func (t Topic) Tenant() string { return t.Group }

// DeviceID returns the drover device id of the topic: the edge node id for
// node messages, "{edge}:{device}" for device messages.
func (t Topic) DeviceID() string { return DeviceID(t.Edge, t.Device) }

// DeviceID returns the drover device id of a Sparkplug edge node (device
// "") or of a device behind it.
func DeviceID(edge, device string) string {
	if device == "" {
		return edge
	}
	return edge + ":" + device
}

// Filter is the MQTT subscription that receives every message drover reads.
const Filter = Namespace + "/+/+/#"

// ParseTopic parses a Sparkplug B topic of a message type drover reads. It
// returns a *decode.Error with ReasonInvalidTopic (stage route) when the
// topic is not one, and with decode.ReasonBadIdentity when the group, edge
// node or device id is outside the identity alphabet.
func ParseTopic(s string) (Topic, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != Namespace {
		return Topic{}, routeErr(ReasonInvalidTopic, "topic %q is not %s/{group}/{type}/{edge}[/{device}]", s, Namespace)
	}
	t := Topic{Group: parts[1], Type: MessageType(parts[2]), Edge: parts[3]}
	if len(parts) == 5 {
		t.Device = parts[4]
	}
	if !t.Type.known() {
		return Topic{}, routeErr(ReasonInvalidTopic, "topic %q: message type %q is not one of NBIRTH, NDATA, NDEATH, DBIRTH, DDATA, DDEATH", s, parts[2])
	}
	if t.Type.Device() != (t.Device != "") {
		return Topic{}, routeErr(ReasonInvalidTopic, "topic %q: %s messages %s a device id level", s, t.Type, map[bool]string{true: "need", false: "have no"}[t.Type.Device()])
	}
	err := identity.Validate(t.Tenant(), t.DeviceID())
	if err == nil {
		err = identity.ValidDevice(t.Edge) // each half on its own: "gw:-x" is not a device
	}
	if err == nil && t.Device != "" {
		err = identity.ValidDevice(t.Device)
	}
	if err != nil {
		return Topic{}, routeErr(decode.ReasonBadIdentity, "topic %q: %v", s, err)
	}
	return t, nil
}
