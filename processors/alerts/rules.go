package alerts

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Kind is the kind of an alert rule; it is also the kind field of the
// alerts it produces.
type Kind string

// Rule kinds.
const (
	// KindThreshold compares a metric with a threshold; it fires when the
	// condition has held on every reading for For (event time).
	KindThreshold Kind = "threshold"
	// KindRate compares a metric's rate of change, in units per minute
	// between consecutive readings, with a threshold.
	KindRate Kind = "rate"
	// KindGeofence fires when a GPS fix is outside (trigger leave) or inside
	// (trigger enter) a polygon.
	KindGeofence Kind = "geofence"
	// KindBattery is a threshold on the battery metric with low-battery
	// defaults (metric battery, op <, threshold 20, hysteresis 5).
	KindBattery Kind = "battery"
	// KindOffline fires when no live record arrived from a device for After,
	// measured on the wall clock.
	KindOffline Kind = "offline"
)

// Severities of a rule.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Geofence triggers.
const (
	TriggerLeave = "leave"
	TriggerEnter = "enter"
)

// Point is a polygon vertex in WGS84 degrees.
type Point struct {
	Lat, Lon float64
}

// Rule is one validated alert rule. Fields that do not apply to a rule's
// kind are zero. Build rules with ParseRules or LoadRules, which fill in the
// defaults and validate.
type Rule struct {
	Name     string
	Kind     Kind
	Severity string // info, warning (default) or critical
	// Tenants and Devices scope the rule: glob patterns (path.Match syntax)
	// of which one must match the record's tenant, resp. device id. Empty
	// means all.
	Tenants []string
	Devices []string
	// Message is the alert message template; {rule}, {device}, {tenant},
	// {value}, {threshold} and {state} are replaced. Empty = a message built
	// from the rule.
	Message string

	// Threshold, rate and battery.
	Metric     string
	Op         string  // >, >=, < or <=
	Threshold  float64 // rate: units per minute
	For        time.Duration
	Hysteresis float64 // geofence: metres
	Abs        bool    // rate: compare the absolute rate

	// Geofence.
	Polygon []Point
	Trigger string // leave (default) or enter

	// Offline.
	After time.Duration
}

// RuleSet is an immutable, validated set of rules in file order.
type RuleSet struct {
	rules []*Rule
}

// Rules returns the rules in order. The caller must not modify them.
func (s *RuleSet) Rules() []*Rule { return s.rules }

// Len returns the number of rules.
func (s *RuleSet) Len() int { return len(s.rules) }

// Rule returns the rule called name.
func (s *RuleSet) Rule(name string) (*Rule, bool) {
	for _, r := range s.rules {
		if r.Name == name {
			return r, true
		}
	}
	return nil, false
}

// hasKind reports whether any rule is of kind k.
func (s *RuleSet) hasKind(k Kind) bool {
	for _, r := range s.rules {
		if r.Kind == k {
			return true
		}
	}
	return false
}

//go:embed default_rules.yaml
var defaultRulesYAML []byte

// DefaultRulesFile is the name errors in the embedded default rules carry.
const DefaultRulesFile = "default_rules.yaml"

// DefaultRulesYAML returns the embedded default rule file.
func DefaultRulesYAML() []byte { return slices.Clone(defaultRulesYAML) }

// DefaultRules returns the embedded default rule set. It panics only if the
// embedded file is invalid, which a test rules out.
func DefaultRules() *RuleSet {
	s, err := parseFile(DefaultRulesFile, defaultRulesYAML, nil)
	if err != nil {
		panic(err)
	}
	return s
}

// LoadRules reads a rules file and merges it with the default rules (see
// ParseRules). Errors name the file, the rule and the field.
func LoadRules(file string) (*RuleSet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	return ParseRules(file, b)
}

// ParseRules parses a rules file named file (used in errors) and merges it
// with the default rules: a rule named like a default replaces it, a rule
// with "enabled: false" is dropped, and "include_defaults: false" drops all
// defaults. Every problem found is reported (errors.Join of *RuleError).
func ParseRules(file string, data []byte) (*RuleSet, error) {
	defaults := DefaultRules()
	return parseFile(file, data, defaults)
}

// RuleError is one problem in a rules file. Rule is the rule's name (or
// "#N" for the N-th rule, 1-based, when it has none); Field the offending
// field ("" for the file or the rule as a whole).
type RuleError struct {
	File  string
	Line  int
	Rule  string
	Field string
	Msg   string
}

func (e *RuleError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Rule != "" {
		if strings.HasPrefix(e.Rule, "#") {
			fmt.Fprintf(&b, ": rule %s", e.Rule)
		} else {
			fmt.Fprintf(&b, ": rule %q", e.Rule)
		}
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// ErrNoRules means a rules file leaves no rule enabled.
var ErrNoRules = errors.New("no rules enabled")

var ruleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// fields allowed on every rule, and per kind.
var (
	commonFields = []string{"name", "kind", "severity", "tenants", "devices", "message", "enabled"}
	kindFields   = map[Kind][]string{
		KindThreshold: {"metric", "op", "threshold", "for", "hysteresis"},
		KindRate:      {"metric", "op", "threshold", "for", "hysteresis", "abs"},
		KindBattery:   {"metric", "op", "threshold", "for", "hysteresis"},
		KindGeofence:  {"polygon", "trigger", "for", "hysteresis"},
		KindOffline:   {"after"},
	}
)

func kindNames() string {
	ks := make([]string, 0, len(kindFields))
	for k := range kindFields {
		ks = append(ks, string(k))
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// ruleDoc is a rule as written in YAML; pointers tell absent from zero.
type ruleDoc struct {
	Name       string      `yaml:"name"`
	Kind       string      `yaml:"kind"`
	Severity   string      `yaml:"severity"`
	Tenants    []string    `yaml:"tenants"`
	Devices    []string    `yaml:"devices"`
	Message    string      `yaml:"message"`
	Enabled    *bool       `yaml:"enabled"`
	Metric     *string     `yaml:"metric"`
	Op         *string     `yaml:"op"`
	Threshold  *float64    `yaml:"threshold"`
	For        *string     `yaml:"for"`
	Hysteresis *float64    `yaml:"hysteresis"`
	Abs        bool        `yaml:"abs"`
	Polygon    [][]float64 `yaml:"polygon"`
	Trigger    *string     `yaml:"trigger"`
	After      *string     `yaml:"after"`
}

// parseFile parses data; defaults (may be nil) are merged under it.
func parseFile(file string, data []byte, defaults *RuleSet) (*RuleSet, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &RuleError{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var errs []error
	fail := func(line int, rule, field, format string, args ...any) {
		errs = append(errs, &RuleError{File: file, Line: line, Rule: rule, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	includeDefaults := true
	var ruleNodes []*yaml.Node
	if len(root.Content) > 0 {
		doc := root.Content[0]
		if doc.Kind != yaml.MappingNode {
			return nil, &RuleError{File: file, Line: doc.Line, Msg: "want a mapping with a rules list at the top"}
		}
		for i := 0; i+1 < len(doc.Content); i += 2 {
			k, v := doc.Content[i], doc.Content[i+1]
			switch k.Value {
			case "rules":
				if v.Kind != yaml.SequenceNode {
					fail(v.Line, "", "rules", "want a list of rules")
					continue
				}
				ruleNodes = v.Content
			case "include_defaults":
				if err := v.Decode(&includeDefaults); err != nil {
					fail(v.Line, "", "include_defaults", "want true or false")
				}
			default:
				fail(k.Line, "", k.Value, "unknown field (want rules, include_defaults)")
			}
		}
	}

	var rules []*Rule
	disabled := map[string]bool{}
	seen := map[string]int{}
	for i, n := range ruleNodes {
		label := fmt.Sprintf("#%d", i+1)
		if n.Kind != yaml.MappingNode {
			fail(n.Line, label, "", "want a mapping")
			continue
		}
		// Find the name and kind first, so every error names the rule.
		var kind string
		for j := 0; j+1 < len(n.Content); j += 2 {
			switch n.Content[j].Value {
			case "name":
				if s := strings.TrimSpace(n.Content[j+1].Value); s != "" {
					label = s
				}
			case "kind":
				kind = n.Content[j+1].Value
			}
		}
		allowed, kindOK := kindFields[Kind(kind)]
		nerr := len(errs)
		for j := 0; j+1 < len(n.Content); j += 2 {
			k := n.Content[j]
			if slices.Contains(commonFields, k.Value) || (kindOK && slices.Contains(allowed, k.Value)) {
				continue
			}
			if !kindOK {
				if kindAllows(k.Value) {
					continue // reported with the kind
				}
				fail(k.Line, label, k.Value, "unknown field")
				continue
			}
			if kindAllows(k.Value) {
				fail(k.Line, label, k.Value, "not allowed for kind %s (allowed: %s)", kind, strings.Join(allowed, ", "))
			} else {
				fail(k.Line, label, k.Value, "unknown field")
			}
		}
		var d ruleDoc
		if err := n.Decode(&d); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				fail(n.Line, label, "", "%s", err)
				continue
			}
			for _, e := range te.Errors {
				line, field, msg := typeErrorField(n, e)
				fail(line, label, field, "%s", msg)
			}
			continue
		}
		if len(errs) > nerr {
			continue
		}
		if d.Enabled != nil && !*d.Enabled {
			// A disabled rule needs only its name (e.g. to switch off a default).
			name := strings.TrimSpace(d.Name)
			if name == "" {
				fail(n.Line, label, "name", "required")
				continue
			}
			if prev, dup := seen[name]; dup {
				fail(n.Line, name, "name", "duplicate rule name (first defined at line %d)", prev)
				continue
			}
			seen[name] = n.Line
			disabled[name] = true
			continue
		}
		r, rerrs := buildRule(file, n.Line, label, &d)
		errs = append(errs, rerrs...)
		if r == nil {
			continue
		}
		if prev, dup := seen[r.Name]; dup {
			fail(n.Line, r.Name, "name", "duplicate rule name (first defined at line %d)", prev)
			continue
		}
		seen[r.Name] = n.Line
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	var merged []*Rule
	if defaults != nil && includeDefaults {
		for _, dr := range defaults.rules {
			if _, overridden := seen[dr.Name]; overridden || disabled[dr.Name] {
				continue
			}
			merged = append(merged, dr)
		}
	}
	merged = append(merged, rules...)
	if len(merged) == 0 {
		return nil, &RuleError{File: file, Msg: ErrNoRules.Error()}
	}
	return &RuleSet{rules: merged}, nil
}

// typeErrorField turns one of yaml's "line N: cannot unmarshal ..." messages
// about rule node n into the line, the field at that line and the message.
func typeErrorField(n *yaml.Node, e string) (line int, field, msg string) {
	msg = e
	var rest string
	if _, err := fmt.Sscanf(e, "line %d:", &line); err == nil {
		if _, after, ok := strings.Cut(e, ": "); ok {
			rest = after
		}
	}
	if rest == "" {
		return n.Line, "", msg
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if v.Line == line || (v.Line <= line && line <= lastLine(v)) {
			return line, k.Value, rest
		}
	}
	return line, "", rest
}

func lastLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, lastLine(c))
	}
	return l
}

func kindAllows(field string) bool {
	for _, fs := range kindFields {
		if slices.Contains(fs, field) {
			return true
		}
	}
	return false
}

// buildRule validates d and fills in defaults.
func buildRule(file string, line int, label string, d *ruleDoc) (*Rule, []error) {
	var errs []error
	fail := func(field, format string, args ...any) {
		errs = append(errs, &RuleError{File: file, Line: line, Rule: label, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	r := &Rule{
		Name:     strings.TrimSpace(d.Name),
		Kind:     Kind(d.Kind),
		Severity: d.Severity,
		Tenants:  d.Tenants,
		Devices:  d.Devices,
		Message:  d.Message,
		Abs:      d.Abs,
	}
	switch {
	case r.Name == "":
		fail("name", "required")
	case !ruleNameRE.MatchString(r.Name):
		fail("name", "%q is not a valid name (lowercase letters, digits, '-', '_', '.'; at most 64)", r.Name)
	}
	if d.Kind == "" {
		fail("kind", "required (one of %s)", kindNames())
		return nil, errs
	}
	if _, ok := kindFields[r.Kind]; !ok {
		fail("kind", "unknown kind %q (want one of %s)", d.Kind, kindNames())
		return nil, errs
	}
	switch r.Severity {
	case "":
		r.Severity = SeverityWarning
	case SeverityInfo, SeverityWarning, SeverityCritical:
	default:
		fail("severity", "unknown severity %q (want info, warning or critical)", r.Severity)
	}
	for _, p := range r.Tenants {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			fail("tenants", "bad pattern %q", p)
		}
	}
	for _, p := range r.Devices {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			fail("devices", "bad pattern %q", p)
		}
	}
	dur := func(field string, s *string) time.Duration {
		if s == nil {
			return 0
		}
		v, err := time.ParseDuration(*s)
		if err != nil {
			fail(field, "bad duration %q (e.g. 90s, 10m, 1h30m)", *s)
			return 0
		}
		if v < 0 {
			fail(field, "must not be negative")
		}
		return v
	}
	finite := func(field string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			fail(field, "must be a finite number")
		}
	}

	switch r.Kind {
	case KindThreshold, KindRate, KindBattery:
		switch {
		case d.Metric != nil:
			r.Metric = strings.TrimSpace(*d.Metric)
		case r.Kind == KindBattery:
			r.Metric = "battery"
		}
		if r.Metric == "" {
			fail("metric", "required for kind %s", r.Kind)
		}
		switch {
		case d.Op != nil:
			r.Op = *d.Op
		case r.Kind == KindBattery:
			r.Op = "<"
		default:
			r.Op = ">"
		}
		if !slices.Contains([]string{">", ">=", "<", "<="}, r.Op) {
			fail("op", "unknown operator %q (want >, >=, < or <=)", r.Op)
		}
		switch {
		case d.Threshold != nil:
			r.Threshold = *d.Threshold
			finite("threshold", r.Threshold)
		case r.Kind == KindBattery:
			r.Threshold = 20
		default:
			fail("threshold", "required for kind %s", r.Kind)
		}
		switch {
		case d.Hysteresis != nil:
			r.Hysteresis = *d.Hysteresis
		case r.Kind == KindBattery:
			r.Hysteresis = 5
		}
		r.For = dur("for", d.For)
	case KindGeofence:
		if len(d.Polygon) < 3 {
			fail("polygon", "required for kind geofence: at least 3 [lat, lon] points")
		}
		for i, p := range d.Polygon {
			if len(p) != 2 {
				fail("polygon", "point %d: want [lat, lon]", i+1)
				continue
			}
			if !(p[0] >= -90 && p[0] <= 90) || !(p[1] >= -180 && p[1] <= 180) {
				fail("polygon", "point %d: [%g, %g] is not a [lat, lon] in degrees", i+1, p[0], p[1])
				continue
			}
			r.Polygon = append(r.Polygon, Point{Lat: p[0], Lon: p[1]})
		}
		r.Trigger = TriggerLeave
		if d.Trigger != nil {
			r.Trigger = *d.Trigger
		}
		if r.Trigger != TriggerLeave && r.Trigger != TriggerEnter {
			fail("trigger", "unknown trigger %q (want leave or enter)", r.Trigger)
		}
		if d.Hysteresis != nil {
			r.Hysteresis = *d.Hysteresis
		}
		r.For = dur("for", d.For)
	case KindOffline:
		if d.After == nil {
			fail("after", "required for kind offline (e.g. 30m)")
		} else if r.After = dur("after", d.After); r.After == 0 && len(errs) == 0 {
			fail("after", "must be positive")
		}
	}
	if r.Hysteresis < 0 || math.IsNaN(r.Hysteresis) || math.IsInf(r.Hysteresis, 0) {
		fail("hysteresis", "must be a finite number ≥ 0")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

// applies reports whether r's scope covers the tenant and device.
func (r *Rule) applies(tenant, device string) bool {
	return matchAny(r.Tenants, tenant) && matchAny(r.Devices, device)
}

func matchAny(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// holds reports whether value meets the firing condition.
func (r *Rule) holds(v float64) bool {
	switch r.Op {
	case ">":
		return v > r.Threshold
	case ">=":
		return v >= r.Threshold
	case "<":
		return v < r.Threshold
	default:
		return v <= r.Threshold
	}
}

// clears reports whether value is beyond the hysteresis band, so an active
// alert resolves: for > and >= the value must fall below threshold −
// hysteresis (or to it, with hysteresis 0 and >), for < and <= rise above
// threshold + hysteresis.
func (r *Rule) clears(v float64) bool {
	switch r.Op {
	case ">", ">=":
		if r.Hysteresis == 0 {
			return !r.holds(v)
		}
		return v < r.Threshold-r.Hysteresis
	default:
		if r.Hysteresis == 0 {
			return !r.holds(v)
		}
		return v > r.Threshold+r.Hysteresis
	}
}

// resolveLevel is the value an active alert resolves beyond.
func (r *Rule) resolveLevel() float64 {
	if r.Op == ">" || r.Op == ">=" {
		return r.Threshold - r.Hysteresis
	}
	return r.Threshold + r.Hysteresis
}
