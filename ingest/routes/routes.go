package routes

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

//go:embed routes.yaml
var defaultRoutes []byte

// DefaultYAML returns the embedded default routing table (routes.yaml).
func DefaultYAML() []byte { return bytes.Clone(defaultRoutes) }

// DefaultTenant is the tenant of a route whose topic names none and that
// sets none (WildFi collars), unless the door is given another.
const DefaultTenant = "default"

// Table is a parsed routing table. It is immutable and safe for
// concurrent use.
type Table struct {
	routes []*Route
}

// Route maps an MQTT topic pattern to a decoder and a Kafka topic.
type Route struct {
	Name    string
	Match   string
	Decoder decode.Decoder
	Topic   string // may contain {var}
	Source  string // may contain {var}
	Tenant  string // fixed tenant when Match has no {tenant}
	// Ignore makes the bridge acknowledge matching messages without
	// producing anything (e.g. the downlink's own command topics).
	Ignore bool
	// Reply marks devices' replies to commands: {id} is the command id,
	// and the bridge records the reply on commands.status (see control/).
	Reply bool

	segs []segment
}

type segment struct {
	lit    string   // literal segment, when name == ""
	name   string   // variable name
	values []string // allowed values; nil = any non-empty segment
}

// Error is a problem in a routes file: File, Line (1-based, 0 when
// unknown), Route (name or index) and Field locate it.
type Error struct {
	File  string
	Line  int
	Route string
	Field string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Route != "" {
		fmt.Fprintf(&b, ": route %s", e.Route)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Default returns the embedded default routing table. The table is parsed
// once and shared: a Table is immutable.
func Default() *Table { return defaultTable() }

var defaultTable = sync.OnceValue(func() *Table {
	r, err := Parse("routes.yaml (embedded)", defaultRoutes)
	if err != nil {
		panic(err) // the embedded table is tested
	}
	return r
})

// Load reads and validates a routes file.
func Load(path string) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Err: err}
	}
	return Parse(path, b)
}

type routesFile struct {
	Routes []yaml.Node `yaml:"routes"`
}

type routeYAML struct {
	Name    string `yaml:"name"`
	Match   string `yaml:"match"`
	Decoder string `yaml:"decoder"`
	Topic   string `yaml:"topic"`
	Source  string `yaml:"source"`
	Tenant  string `yaml:"tenant"`
	Ignore  bool   `yaml:"ignore"`
	Reply   bool   `yaml:"reply"`
}

var (
	varRE  = regexp.MustCompile(`^\{([a-z][a-z0-9_]*)(?::([^{}]+))?\}$`)
	tmplRE = regexp.MustCompile(`\{([^{}]*)\}`)
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

// Parse parses and validates a routing table; file names the source
// in errors, which are *Error.
func Parse(file string, b []byte) (*Table, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, &Error{File: file, Line: yamlLine(err), Err: errors.New(cleanYAMLErr(err))}
	}
	if len(doc.Content) == 0 {
		return nil, &Error{File: file, Err: errors.New("file is empty; want a top-level routes: list")}
	}
	var f routesFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, &Error{File: file, Line: yamlLine(err), Err: errors.New(cleanYAMLErr(err))}
	}
	if len(f.Routes) == 0 {
		return nil, &Error{File: file, Line: 1, Field: "routes", Err: errors.New("no routes given")}
	}
	rs := &Table{}
	names := map[string]int{}
	for i := range f.Routes {
		node := &f.Routes[i]
		var ry routeYAML
		if err := node.Decode(&ry); err != nil {
			return nil, &Error{File: file, Line: node.Line, Route: fmt.Sprintf("#%d", i+1), Err: errors.New(cleanYAMLErr(err))}
		}
		if err := strictFields(node); err != nil {
			err.File, err.Route = file, routeLabel(ry.Name, i)
			return nil, err
		}
		line := func(field string) int {
			for j := 0; j+1 < len(node.Content); j += 2 {
				if node.Content[j].Value == field {
					return node.Content[j].Line
				}
			}
			return node.Line
		}
		bad := func(field, format string, args ...any) error {
			return &Error{File: file, Line: line(field), Route: routeLabel(ry.Name, i), Field: field, Err: fmt.Errorf(format, args...)}
		}
		if ry.Name == "" {
			return nil, bad("name", "missing")
		}
		if !nameRE.MatchString(ry.Name) {
			return nil, bad("name", "%q must be lowercase letters, digits, '.', '_' or '-'", ry.Name)
		}
		if prev, dup := names[ry.Name]; dup {
			return nil, bad("name", "duplicate of route #%d", prev+1)
		}
		names[ry.Name] = i
		r := &Route{Name: ry.Name, Match: ry.Match, Topic: ry.Topic, Source: ry.Source, Tenant: ry.Tenant, Ignore: ry.Ignore, Reply: ry.Reply}
		if ry.Match == "" {
			return nil, bad("match", "missing")
		}
		vars := map[string]*segment{}
		for _, s := range strings.Split(ry.Match, "/") {
			switch {
			case s == "":
				return nil, bad("match", "%q has an empty segment", ry.Match)
			case strings.ContainsAny(s, "+#"):
				return nil, bad("match", "%q: MQTT wildcards are not allowed; use {var}", ry.Match)
			case strings.ContainsAny(s, "{}"):
				m := varRE.FindStringSubmatch(s)
				if m == nil {
					return nil, bad("match", "segment %q: want {name} or {name:a|b}", s)
				}
				seg := segment{name: m[1]}
				if m[2] != "" {
					seg.values = strings.Split(m[2], "|")
					if slices.Contains(seg.values, "") {
						return nil, bad("match", "segment %q: empty alternative", s)
					}
				}
				if len(vars) == 8 {
					return nil, bad("match", "more than 8 variables")
				}
				if _, dup := vars[seg.name]; dup {
					return nil, bad("match", "variable {%s} appears twice", seg.name)
				}
				r.segs = append(r.segs, seg)
				vars[seg.name] = &r.segs[len(r.segs)-1]
			default:
				r.segs = append(r.segs, segment{lit: s})
			}
		}
		// Re-point vars at the final slice elements (append may have moved them).
		for j := range r.segs {
			if r.segs[j].name != "" {
				vars[r.segs[j].name] = &r.segs[j]
			}
		}
		if vars["device"] == nil && vars["edge"] == nil {
			return nil, bad("match", "%q has no {device} (or {edge}) segment (identity comes from the topic)", ry.Match)
		}
		if vars["tenant"] != nil && ry.Tenant != "" {
			return nil, bad("tenant", "set, but match already has {tenant}")
		}
		if ry.Tenant != "" {
			if err := identity.ValidTenant(ry.Tenant); err != nil {
				return nil, bad("tenant", "%w", err)
			}
		}
		if ry.Ignore && ry.Reply {
			return nil, bad("reply", "ignore and reply are exclusive")
		}
		if ry.Ignore || ry.Reply {
			flag := map[bool]string{true: "ignore", false: "reply"}[ry.Ignore]
			for _, f := range []struct{ name, v string }{{"decoder", ry.Decoder}, {"topic", ry.Topic}, {"source", ry.Source}} {
				if f.v != "" {
					return nil, bad(f.name, "must be empty when %s is true", flag)
				}
			}
			if ry.Reply && (vars["id"] == nil || vars["tenant"] == nil) {
				return nil, bad("match", "%q: a reply route needs {tenant}, {device} and {id} (the command id)", ry.Match)
			}
			rs.routes = append(rs.routes, r)
			continue
		}
		if ry.Decoder == "" {
			return nil, bad("decoder", "missing (one of %s)", strings.Join(decode.Names(), ", "))
		}
		d, ok := decode.Lookup(ry.Decoder)
		if !ok {
			return nil, bad("decoder", "unknown decoder %q (want one of %s)", ry.Decoder, strings.Join(decode.Names(), ", "))
		}
		r.Decoder = d
		if ry.Topic == "" {
			return nil, bad("topic", "missing")
		}
		if ry.Source == "" {
			r.Source = ry.Name
		}
		for _, f := range []struct{ field, v string }{{"topic", ry.Topic}, {"source", r.Source}} {
			for _, m := range tmplRE.FindAllStringSubmatch(f.v, -1) {
				if vars[m[1]] == nil {
					return nil, bad(f.field, "%q uses {%s}, which match does not define", f.v, m[1])
				}
			}
		}
		// Every topic the route can produce to must have the decoder's schema.
		for _, t := range expand(r.Topic, vars) {
			if strings.Contains(t, "{") {
				continue // unconstrained variable: checked per message
			}
			if err := checkTopic(t, d.Produces); err != nil {
				return nil, bad("topic", "%v", err)
			}
		}
		rs.routes = append(rs.routes, r)
	}
	return rs, nil
}

func routeLabel(name string, i int) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("#%d", i+1)
}

// strictFields rejects unknown keys in a route mapping.
func strictFields(node *yaml.Node) *Error {
	if node.Kind != yaml.MappingNode {
		return &Error{Line: node.Line, Err: errors.New("route must be a mapping")}
	}
	known := []string{"name", "match", "decoder", "topic", "source", "tenant", "ignore", "reply"}
	seen := map[string]bool{}
	for j := 0; j+1 < len(node.Content); j += 2 {
		k := node.Content[j]
		if !slices.Contains(known, k.Value) {
			return &Error{Line: k.Line, Field: k.Value, Err: fmt.Errorf("unknown field (want %s)", strings.Join(known, ", "))}
		}
		if seen[k.Value] {
			return &Error{Line: k.Line, Field: k.Value, Err: errors.New("given twice")}
		}
		seen[k.Value] = true
	}
	return nil
}

var yamlLineRE = regexp.MustCompile(`line (\d+)`)

func yamlLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscanf(m[1], "%d", &n)
	return n
}

func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return strings.TrimPrefix(s, "unmarshal errors:\n  ")
}

// expand returns every string tmpl can become with the constrained values
// of vars; unconstrained variables stay as {name}.
func expand(tmpl string, vars map[string]*segment) []string {
	out := []string{tmpl}
	for _, m := range tmplRE.FindAllStringSubmatch(tmpl, -1) {
		seg := vars[m[1]]
		if seg == nil || seg.values == nil {
			continue
		}
		var next []string
		for _, o := range out {
			for _, v := range seg.values {
				next = append(next, strings.ReplaceAll(o, m[0], v))
			}
		}
		out = next
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var recordOf = map[decode.Kind]string{
	decode.KindSensor: topics.RawSensor,
	decode.KindGPS:    topics.RawGPS,
	decode.KindMedia:  topics.RawImage2D,
}

// checkTopic checks that topic's schema is the record kind produces.
func checkTopic(topic string, kind decode.Kind) error {
	got := schemas.RecordName(topic)
	if got == "" {
		return fmt.Errorf("topic %q has no schema", topic)
	}
	if want := schemas.RecordName(recordOf[kind]); got != want {
		return fmt.Errorf("topic %q carries %s, but the decoder produces %s", topic, got, want)
	}
	return nil
}

// Topics returns every concrete Kafka topic the routes produce to (routes
// with unconstrained variables in their topic contribute nothing).
func (rs *Table) Topics() []string {
	var out []string
	for _, r := range rs.routes {
		if r.Ignore || r.Reply {
			continue
		}
		vars := map[string]*segment{}
		for i := range r.segs {
			if r.segs[i].name != "" {
				vars[r.segs[i].name] = &r.segs[i]
			}
		}
		for _, t := range expand(r.Topic, vars) {
			if !strings.Contains(t, "{") {
				out = append(out, t)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// All returns the routes in match order.
func (rs *Table) All() []*Route { return slices.Clone(rs.routes) }

// EdgeDevice is the device id of a topic with an {edge} segment (a
// gateway, such as a Sparkplug B edge node): the edge id for the edge's
// own messages (device ""), "{edge}:{device}" for a device behind it,
// whose id is only unique within its edge. Without an edge it is device.
func EdgeDevice(edge, device string) string {
	switch {
	case edge == "":
		return device
	case device == "":
		return edge
	}
	return edge + ":" + device
}

// Match is the result of routing one MQTT topic.
type Match struct {
	Route  *Route
	Tenant string
	Device string
	Kind   string // value of {kind}, if the pattern has one
	ID     string // value of {id} (a reply route's command id)
	Topic  string // Kafka topic
	Source string
}

// Route finds the first route matching the MQTT topic. defaultTenant is
// used when the route has no {tenant} and no fixed tenant. On failure it
// returns a *decode.Error of stage route (with the identity it could tell,
// for the dead letter).
func (rs *Table) Route(mqttTopic, defaultTenant string) (Match, error) {
	var vals [8]string
	parts := strings.Split(mqttTopic, "/")
outer:
	for _, r := range rs.routes {
		if len(r.segs) != len(parts) {
			continue
		}
		n := 0
		for i, s := range r.segs {
			p := parts[i]
			if s.name == "" {
				if p != s.lit {
					continue outer
				}
				continue
			}
			if p == "" || (s.values != nil && !slices.Contains(s.values, p)) {
				continue outer
			}
			if n < len(vals) {
				vals[n] = p
			}
			n++
		}
		m := Match{Route: r, Tenant: r.Tenant}
		if m.Tenant == "" {
			m.Tenant = defaultTenant
		}
		topic, source := r.Topic, r.Source
		edge := ""
		n = 0
		for _, s := range r.segs {
			if s.name == "" {
				continue
			}
			v := vals[n]
			n++
			switch s.name {
			case "tenant":
				m.Tenant = v
			case "device":
				m.Device = v
			case "kind":
				m.Kind = v
			case "edge":
				edge = v
			case "id":
				m.ID = v
			}
			if strings.Contains(topic, "{") {
				topic = strings.ReplaceAll(topic, "{"+s.name+"}", v)
			}
			if strings.Contains(source, "{") {
				source = strings.ReplaceAll(source, "{"+s.name+"}", v)
			}
		}
		m.Topic, m.Source = topic, source
		m.Device = EdgeDevice(edge, m.Device)
		if r.Ignore {
			return m, nil
		}
		if err := validateIdentity(&m, mqttTopic); err != nil {
			return m, err
		}
		if r.Reply {
			return m, nil
		}
		if err := checkTopic(topic, r.Decoder.Produces); err != nil {
			return m, &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonUnknownChannel,
				Message: fmt.Sprintf("route %s: %v", r.Name, err)}
		}
		return m, nil
	}
	return rs.unrouted(mqttTopic, parts, defaultTenant)
}

// validateIdentity checks m's tenant and device against the identity
// alphabet. On failure it clears the part that is not well-formed, so that
// the dead letter (its tenant and device_id, Kafka key and headers, and so
// the database row) never carries it; the MQTT topic, kept as the dead
// letter's source, still shows what came.
func validateIdentity(m *Match, mqttTopic string) error {
	err := identity.Validate(m.Tenant, m.Device)
	if err == nil {
		return nil
	}
	m.DropInvalidIDs()
	return &decode.Error{Stage: decode.StageRoute, Reason: decode.ReasonBadIdentity,
		Message: fmt.Sprintf("MQTT topic %q: %v", clipTopic(mqttTopic), err)}
}

// DropInvalidIDs clears m's tenant or device when it is not a well-formed
// id.
func (m *Match) DropInvalidIDs() {
	if identity.ValidTenant(m.Tenant) != nil {
		m.Tenant = ""
	}
	if identity.ValidDevice(m.Device) != nil {
		m.Device = ""
	}
}

// clipTopic shortens a topic for a message (the dead letter keeps it
// whole as its source).
func clipTopic(s string) string {
	if len(s) > 200 {
		return strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}
