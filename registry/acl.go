package registry

import (
	"strings"

	"github.com/drover-iot/drover/ingest/routes"
)

// ACL is what an MQTT principal may do: the topic filters it may publish to,
// and the filters its subscriptions must stay within (which are also the
// topics it may receive).
type ACL struct {
	Publish   []string
	Subscribe []string
}

// deviceSubscribeChannels are the channels under devices/{tenant}/{id}/ a
// device may subscribe to (the downlink); a new downlink channel is one
// entry here.
var deviceSubscribeChannels = []string{"commands", "shadow"}

// DevicePrefix returns "devices/{tenant}/{id}/", the root of a device's own
// topics (its device channels in the default routes table).
func DevicePrefix(tenant, id string) string {
	t, _ := routes.Default().DeviceTopic(tenant, id, "")
	return t
}

// DeviceACL is the rule every broker enforces for a device: publish only
// under its own topics of every route family of the routes table
// (devices/{its tenant}/{its id}/# with the default table; the families
// whose topics name no tenant, wildfi/{its id}/#, only for a device the
// registry resolves there, a WildFi collar), subscribe only to its own
// devices/{tenant}/{id}/commands/# and .../shadow/# (the desired-state
// delta). Every broker adapter derives its
// configuration from this one function.
func DeviceACL(d *Device) ACL {
	var a ACL
	for _, p := range routes.Default().DevicePatterns() {
		if !strings.Contains(p, "%t") && d.Type != TypeWildFi {
			continue
		}
		a.Publish = append(a.Publish, strings.NewReplacer("%t", d.Tenant, "%d", d.ID).Replace(p))
	}
	base := DevicePrefix(d.Tenant, d.ID)
	for _, ch := range deviceSubscribeChannels {
		a.Subscribe = append(a.Subscribe, base+ch+"/#")
	}
	return a
}

// BridgeACL is the bridge's principal: it reads every topic of the routes
// table (plain or through a shared subscription: devices/#, spBv1.0/# and
// wildfi/# with the default table) and the broker's client-connected events
// ($SYS/brokers/+/clients/#), and publishes the downlink: commands and
// shadow deltas.
func BridgeACL() ACL {
	return ACL{
		Publish:   []string{DevicePrefix("+", "+") + "commands/#", DevicePrefix("+", "+") + "shadow/#"},
		Subscribe: append(routes.Default().Filters(), "$SYS/brokers/+/clients/#"),
	}
}

// CanPublish reports whether topic (a topic name, no wildcards) matches one
// of the publish filters.
func (a ACL) CanPublish(topic string) bool {
	if !validTopic(topic) {
		return false
	}
	for _, f := range a.Publish {
		if MatchTopic(f, topic) {
			return true
		}
	}
	return false
}

// CanSubscribe reports whether every topic filter matches is also matched
// by one of the subscribe filters. A shared subscription
// ($share/{group}/{filter}) is judged by its filter.
func (a ACL) CanSubscribe(filter string) bool {
	if rest, ok := strings.CutPrefix(filter, "$share/"); ok {
		_, f, found := strings.Cut(rest, "/")
		if !found {
			return false
		}
		filter = f
	}
	if !validFilter(filter) {
		return false
	}
	for _, p := range a.Subscribe {
		if Covers(p, filter) {
			return true
		}
	}
	return false
}

// CanReceive reports whether a message on topic may be delivered to the
// principal.
func (a ACL) CanReceive(topic string) bool {
	for _, f := range a.Subscribe {
		if MatchTopic(f, topic) {
			return true
		}
	}
	return false
}

// MatchTopic reports whether the topic filter matches topic, by the MQTT
// rules: '+' matches one level, a final '#' this level and everything below
// (the parent too), and a wildcard in the first level does not match a
// topic starting with '$'.
func MatchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return !fmore
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// Covers reports whether every topic the filter matches is also matched by
// pattern (both valid topic filters).
func Covers(pattern, filter string) bool {
	p, f := strings.Split(pattern, "/"), strings.Split(filter, "/")
	for i, fl := range f {
		if i >= len(p) {
			return false
		}
		pl := p[i]
		// A wildcard in the first level matches no $-topic; a filter whose
		// first level is a $-literal matches only $-topics.
		if i == 0 && strings.HasPrefix(fl, "$") && (pl == "+" || pl == "#") {
			return false
		}
		switch {
		case pl == "#":
			return true
		case fl == "#":
			return false
		case fl == "+":
			if pl != "+" {
				return false
			}
		case pl != "+" && pl != fl:
			return false
		}
	}
	return len(p) == len(f) || (len(p) == len(f)+1 && p[len(p)-1] == "#")
}

// validTopic: a non-empty topic name without wildcards or NUL.
func validTopic(t string) bool {
	return t != "" && !strings.ContainsAny(t, "+#\x00")
}

// validFilter: a non-empty filter whose wildcards fill whole levels, '#'
// only last.
func validFilter(f string) bool {
	if f == "" || strings.Contains(f, "\x00") {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) != 1 {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}
