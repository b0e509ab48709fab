package routes

import (
	"fmt"
	"slices"
	"strings"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
)

// What the rest of drover derives from the table instead of knowing topic
// prefixes itself: subscriptions, sharding, the doors' device channels,
// broker ACL patterns, and the tell-tale of an unknown channel.

// NamesTenant reports whether the route's topic or definition gives the
// tenant (otherwise the default tenant, or the registry, does).
func (r *Route) NamesTenant() bool {
	return r.Tenant != "" || r.varIndex("tenant") >= 0
}

func (r *Route) varIndex(name string) int {
	for i, s := range r.segs {
		if s.name == name {
			return i
		}
	}
	return -1
}

// identityLen is the number of leading segments of r's pattern up to and
// including its last identity variable: {tenant} and {device}, or {edge}
// when there is one (a gateway's topics: its devices' share its identity
// for ACLs and sharding).
func (r *Route) identityLen() int {
	if e := r.varIndex("edge"); e >= 0 {
		return max(r.varIndex("tenant"), e) + 1
	}
	return max(r.varIndex("tenant"), r.varIndex("device")) + 1
}

func identityVar(name string) bool { return name == "tenant" || name == "device" || name == "edge" }

// prefix is r's pattern before its first variable, without the trailing
// slash ("devices" for devices/{tenant}/...; "" when it starts with one).
func (r *Route) prefix() string {
	var lits []string
	for _, s := range r.segs {
		if s.name != "" {
			break
		}
		lits = append(lits, s.lit)
	}
	return strings.Join(lits, "/")
}

// Filters returns the MQTT topic filters that cover every route that is
// not ignored: each route's literal prefix followed by /# (# for a route
// that starts with a variable), without filters another one covers. The
// MQTT bridge subscribes to these, the broker's ACL grants them.
func (rs *Table) Filters() []string {
	var out []string
	for _, r := range rs.routes {
		if r.Ignore {
			continue
		}
		f := "#"
		if p := r.prefix(); p != "" {
			f = p + "/#"
		}
		out = append(out, f)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	var kept []string
	for _, f := range out {
		covered := slices.ContainsFunc(out, func(g string) bool {
			return g != f && (g == "#" || strings.HasPrefix(f, strings.TrimSuffix(g, "#")))
		})
		if !covered {
			kept = append(kept, f)
		}
	}
	return kept
}

// DevicePatterns returns, per route family that is not ignored, the topic
// pattern of one device's topics as an MQTT filter with %t for the tenant
// and %d for the device or edge (devices/%t/%d/#, spBv1.0/%t/+/%d/#,
// wildfi/%d/#): what a broker ACL grants a device. Routes with a fixed or
// default tenant give only %d.
func (rs *Table) DevicePatterns() []string {
	var out []string
	for _, r := range rs.routes {
		if r.Ignore {
			continue
		}
		var parts []string
		for _, s := range r.segs[:r.identityLen()] {
			switch s.name {
			case "":
				parts = append(parts, s.lit)
			case "tenant":
				parts = append(parts, "%t")
			case "device", "edge":
				parts = append(parts, "%d")
			default:
				parts = append(parts, "+")
			}
		}
		out = append(out, strings.Join(parts, "/")+"/#")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ShardKey returns the part of an MQTT topic that names its device: its
// literal prefix and identity segments, up to the device (or edge)
// segment, of the first route whose literal prefix it has
// (devices/{tenant}/{device}, wildfi/{device}, spBv1.0/{tenant}/{edge}),
// so that one device's messages, whatever the channel, share a key. A
// topic no route's prefix fits is its own key.
func (rs *Table) ShardKey(topic string) string {
	for _, r := range rs.routes {
		p := r.prefix()
		if p != "" && (len(topic) <= len(p) || topic[len(p)] != '/' || !strings.HasPrefix(topic, p)) {
			continue
		}
		n := r.identityLen()
		end, skip := len(topic), false
		for i, seen := 0, 0; i < len(topic); i++ {
			if topic[i] == '/' {
				if seen++; seen == n {
					end = i
					break
				}
			}
		}
		for _, s := range r.segs[:n] {
			skip = skip || s.name != "" && !identityVar(s.name)
		}
		if !skip {
			return topic[:end] // no allocation in the common case
		}
		parts := strings.SplitN(topic[:end], "/", n)
		key := parts[:0]
		for i, s := range r.segs[:min(n, len(parts))] {
			if s.name == "" || identityVar(s.name) {
				key = append(key, parts[i])
			}
		}
		return strings.Join(key, "/")
	}
	return topic
}

// DeviceTopic returns the topic a device channel of a door other than
// MQTT (HTTP, CoAP) stands for: the first route family whose pattern
// starts with literals, then {tenant} and {device}, filled in with tenant,
// device and channel (devices/{tenant}/{device}/{channel} with the default
// table). ok is false when no route names both.
func (rs *Table) DeviceTopic(tenant, device, channel string) (topic string, ok bool) {
	for _, r := range rs.routes {
		t, d := r.varIndex("tenant"), r.varIndex("device")
		if t < 0 || d != t+1 || slices.ContainsFunc(r.segs[:t], func(s segment) bool { return s.name != "" }) {
			continue
		}
		var b strings.Builder
		for _, s := range r.segs[:t] {
			b.WriteString(s.lit + "/")
		}
		return b.String() + tenant + "/" + device + "/" + channel, true
	}
	return "", false
}

// unrouted is the refusal of a topic no route matches. A topic whose
// leading segments fit a route's pattern up to its device segment is a
// device's topic with a channel no route knows (unknown_channel, with the
// identity kept for the dead letter); anything else is unknown_topic.
func (rs *Table) unrouted(mqttTopic string, parts []string, defaultTenant string) (Match, error) {
	for _, r := range rs.routes {
		k := r.identityLen()
		if len(parts) <= k || !r.fits(parts[:k]) {
			continue
		}
		m := Match{Tenant: r.Tenant}
		if m.Tenant == "" {
			m.Tenant = defaultTenant
		}
		edge := ""
		for i, s := range r.segs[:k] {
			switch s.name {
			case "tenant":
				m.Tenant = parts[i]
			case "device":
				m.Device = parts[i]
			case "edge":
				edge = parts[i]
			}
		}
		m.Device = EdgeDevice(edge, m.Device)
		if err := validateIdentity(&m, mqttTopic); err != nil {
			return m, err
		}
		return m, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel,
			Message: fmt.Sprintf("no route for channel %q of device %s", strings.Join(parts[k:], "/"), identity.Key(m.Tenant, m.Device))}
	}
	return Match{}, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownTopic,
		Message: fmt.Sprintf("no route matches MQTT topic %q", mqttTopic)}
}

// fits reports whether parts fit r's leading segments: literals equal,
// variables any (constrained ones one of their values; identity
// variables are checked by validateIdentity, so an empty one fits).
func (r *Route) fits(parts []string) bool {
	for i, p := range parts {
		s := r.segs[i]
		switch {
		case s.name == "":
			if p != s.lit {
				return false
			}
		case s.values != nil && !slices.Contains(s.values, p):
			return false
		}
	}
	return true
}

// Family reduces a topic to its route family by replacing the identity
// segments of the first route whose leading segments it fits with +
// (devices/+/+/sensor, wildfi/+/imu), so that counts group by channel, not
// by device. A topic no route fits stays as it is.
func (rs *Table) Family(topic string) string {
	parts := strings.Split(topic, "/")
	for _, r := range rs.routes {
		k := r.identityLen()
		if len(parts) < k || !r.fits(parts[:k]) {
			continue
		}
		for i, s := range r.segs[:k] {
			if identityVar(s.name) {
				parts[i] = "+"
			}
		}
		return strings.Join(parts, "/")
	}
	return topic
}
