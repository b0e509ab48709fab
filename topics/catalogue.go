package topics

import (
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed catalogue.yaml
var defaultCatalogue []byte

// DefaultSource is the file name errors from the embedded catalogue carry.
const DefaultSource = "catalogue.yaml"

// Config keys the catalogue checks (and the reconciler compares) specially.
const (
	CleanupPolicy     = "cleanup.policy"
	RetentionMs       = "retention.ms"
	MinInsyncReplicas = "min.insync.replicas"
)

// Value formats of a catalogue topic (the format field).
const (
	// FormatAvro (the default) marks a topic whose values are Avro in the
	// Confluent wire format, with a schema registered under <topic>-value.
	FormatAvro = "avro"
	// FormatGoka marks a processor group's internal topic (a goka group
	// table "<group>-table" or loop "<group>-loop"): its values are written
	// and read only by that group, with the group's own codec, and have no
	// registered schema.
	FormatGoka = "goka"
)

// maxNameLen is Kafka's limit on a topic name's length.
const maxNameLen = 249

// Topic is one catalogue entry: what a topic should look like on the cluster.
type Topic struct {
	Name        string
	Partitions  int32
	Replication int16
	// Configs are the topic configs the catalogue manages; keys it does not
	// name keep the broker default and are never touched.
	Configs     map[string]string
	Description string
	// Format is the value format: FormatAvro (the default) or FormatGoka
	// for a processor group's internal topic.
	Format string
}

// Internal reports whether the topic is a processor group's internal
// topic (FormatGoka): no schema, not for other consumers.
func (t Topic) Internal() bool { return t.Format == FormatGoka }

// Catalogue is the list of topics drover manages, in file order. Load it
// with Default, Load or Parse; a loaded catalogue is valid. A Catalogue is
// not modified by its methods and is safe for concurrent reads.
type Catalogue struct {
	Topics []Topic
}

// CatalogueError is a problem in a catalogue file. File, Line, Topic and
// Field say where (each may be empty or 0 when it does not apply), Msg what.
type CatalogueError struct {
	File  string
	Line  int
	Topic string
	Field string
	Msg   string
}

// Error returns one line: `file:line: topic "name": field: msg`.
func (e *CatalogueError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Topic != "" {
		fmt.Fprintf(&b, "topic %q: ", e.Topic)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Default returns the catalogue embedded in the binary (catalogue.yaml).
func Default() (*Catalogue, error) {
	return Parse(defaultCatalogue, DefaultSource)
}

// Load reads and parses the catalogue file at path.
func Load(path string) (*Catalogue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading topic catalogue: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a catalogue; source names the input in errors.
// Decoding is strict: unknown fields, duplicate keys or names, invalid names,
// counts and well-known config values are a *CatalogueError naming the line,
// the entry and the field.
func Parse(data []byte, source string) (*Catalogue, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(source, err)
	}
	p := parser{file: source}
	cat, err := p.document(&doc)
	if err != nil {
		return nil, err
	}
	// Belt and braces: the walk above already rejects unknown fields with
	// positions; a strict decode guards against the two drifting apart.
	if err := strictDecode(data, source); err != nil {
		return nil, err
	}
	return cat, nil
}

// Names returns the topic names in catalogue order.
func (c *Catalogue) Names() []string {
	names := make([]string, len(c.Topics))
	for i, t := range c.Topics {
		names[i] = t.Name
	}
	return names
}

// SchemaTopics returns, in catalogue order, the names of the topics whose
// values are Avro in the Confluent wire format (every topic but the
// internal ones): each must have a registered schema.
func (c *Catalogue) SchemaTopics() []string {
	var names []string
	for _, t := range c.Topics {
		if !t.Internal() {
			names = append(names, t.Name)
		}
	}
	return names
}

// Lookup returns the topic called name and whether the catalogue has it.
func (c *Catalogue) Lookup(name string) (Topic, bool) {
	for _, t := range c.Topics {
		if t.Name == name {
			return t.clone(), true
		}
	}
	return Topic{}, false
}

// WithReplicationCap returns a copy of c in which no topic's replication
// exceeds n and min.insync.replicas is at most the resulting replication.
// n ≤ 0 means no cap (a plain copy). Use n = 1 for a single-broker cluster.
func (c *Catalogue) WithReplicationCap(n int16) *Catalogue {
	out := &Catalogue{Topics: make([]Topic, len(c.Topics))}
	for i, t := range c.Topics {
		t = t.clone()
		if n > 0 && t.Replication > n {
			t.Replication = n
		}
		if v, ok := t.Configs[MinInsyncReplicas]; ok {
			if m, err := strconv.ParseInt(v, 10, 64); err == nil && m > int64(t.Replication) {
				t.Configs[MinInsyncReplicas] = strconv.Itoa(int(t.Replication))
			}
		}
		out.Topics[i] = t
	}
	return out
}

func (t Topic) clone() Topic {
	t.Configs = maps.Clone(t.Configs)
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	return t
}

// configKind says how a topic config value is checked.
type configKind int

const (
	kindString configKind = iota
	kindInt               // integer ≥ 0
	kindLong              // integer ≥ -1 (-1 = unlimited)
	kindBool
	kindRatio // decimal in [0, 1]
)

// topicConfigs are Kafka's topic-level configs (Kafka 3.x/4.x). A key not
// listed is a typo until proven otherwise; add it here when Kafka grows one.
var topicConfigs = map[string]configKind{
	CleanupPolicy:                             kindString, // checked specially
	"compression.type":                        kindString,
	"compression.gzip.level":                  kindInt,
	"compression.lz4.level":                   kindInt,
	"compression.zstd.level":                  kindLong,
	"delete.retention.ms":                     kindInt,
	"file.delete.delay.ms":                    kindInt,
	"flush.messages":                          kindInt,
	"flush.ms":                                kindInt,
	"follower.replication.throttled.replicas": kindString,
	"index.interval.bytes":                    kindInt,
	"leader.replication.throttled.replicas":   kindString,
	"local.retention.bytes":                   kindLong,
	"local.retention.ms":                      kindLong,
	"max.compaction.lag.ms":                   kindInt,
	"max.message.bytes":                       kindInt,
	"message.downconversion.enable":           kindBool,
	"message.format.version":                  kindString,
	"message.timestamp.after.max.ms":          kindInt,
	"message.timestamp.before.max.ms":         kindInt,
	"message.timestamp.difference.max.ms":     kindInt,
	"message.timestamp.type":                  kindString,
	"min.cleanable.dirty.ratio":               kindRatio,
	"min.compaction.lag.ms":                   kindInt,
	MinInsyncReplicas:                         kindInt, // checked specially
	"preallocate":                             kindBool,
	"remote.log.copy.disable":                 kindBool,
	"remote.log.delete.on.disable":            kindBool,
	"remote.storage.enable":                   kindBool,
	"retention.bytes":                         kindLong,
	RetentionMs:                               kindLong,
	"segment.bytes":                           kindInt,
	"segment.index.bytes":                     kindInt,
	"segment.jitter.ms":                       kindInt,
	"segment.ms":                              kindInt,
	"unclean.leader.election.enable":          kindBool,
}

// parser walks the YAML node tree so every error can name its line.
type parser struct {
	file string
}

func (p *parser) errAt(n *yaml.Node, topic, field, format string, args ...any) *CatalogueError {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &CatalogueError{File: p.file, Line: line, Topic: topic, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// resolve follows aliases (configs: *raw) to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return "a scalar"
	}
	return "something else"
}

// mapping returns the key/value pairs of a mapping node, rejecting
// duplicate keys (yaml.v3 accepts them in a node tree).
func (p *parser) mapping(n *yaml.Node, topic, field string) ([][2]*yaml.Node, error) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, p.errAt(n, topic, field, "must be a mapping, got %s", kindName(n))
	}
	seen := map[string]int{}
	var pairs [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, p.errAt(k, topic, field, "keys must be plain strings")
		}
		if first, dup := seen[k.Value]; dup {
			return nil, p.errAt(k, topic, join(field, k.Value), "duplicate key (first at line %d)", first)
		}
		seen[k.Value] = k.Line
		pairs = append(pairs, [2]*yaml.Node{k, v})
	}
	return pairs, nil
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func (p *parser) document(doc *yaml.Node) (*Catalogue, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &CatalogueError{File: p.file, Msg: "empty catalogue: want a top-level 'topics' list"}
	}
	pairs, err := p.mapping(doc.Content[0], "", "")
	if err != nil {
		return nil, err
	}
	var list *yaml.Node
	for _, kv := range pairs {
		if kv[0].Value != "topics" {
			return nil, p.errAt(kv[0], "", kv[0].Value, "unknown field (the top level has only 'topics')")
		}
		list = resolve(kv[1])
	}
	if list == nil {
		return nil, p.errAt(doc.Content[0], "", "topics", "missing: want a list of topics")
	}
	if list.Kind != yaml.SequenceNode {
		return nil, p.errAt(list, "", "topics", "must be a list, got %s", kindName(list))
	}
	if len(list.Content) == 0 {
		return nil, p.errAt(list, "", "topics", "empty list")
	}
	cat := &Catalogue{}
	names := map[string]int{}    // name → line
	norms := map[string]string{} // '.'→'_' normalised → name
	for i, item := range list.Content {
		t, err := p.topic(item, i)
		if err != nil {
			return nil, err
		}
		line := resolve(item).Line
		if first, dup := names[t.Name]; dup {
			return nil, p.errAt(item, t.Name, "name", "duplicate topic name (first at line %d)", first)
		}
		norm := strings.ReplaceAll(t.Name, ".", "_")
		if other, clash := norms[norm]; clash {
			return nil, p.errAt(item, t.Name, "name", "collides with %q: Kafka treats '.' and '_' alike in metric names and refuses both", other)
		}
		names[t.Name], norms[norm] = line, t.Name
		cat.Topics = append(cat.Topics, t)
	}
	return cat, nil
}

func (p *parser) topic(item *yaml.Node, index int) (Topic, error) {
	item = resolve(item)
	if item.Kind != yaml.MappingNode {
		return Topic{}, p.errAt(item, "", fmt.Sprintf("topics[%d]", index), "must be a mapping, got %s", kindName(item))
	}
	// Find the name first so every later error can carry it.
	var t Topic
	var nameNode *yaml.Node
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value == "name" {
			nameNode = resolve(item.Content[i+1])
		}
	}
	if nameNode == nil {
		return Topic{}, p.errAt(item, "", fmt.Sprintf("topics[%d].name", index), "missing")
	}
	if nameNode.Kind != yaml.ScalarNode || nameNode.Tag == "!!null" {
		return Topic{}, p.errAt(nameNode, "", fmt.Sprintf("topics[%d].name", index), "must be a string, got %s", kindName(nameNode))
	}
	t.Name = nameNode.Value
	if err := validName(t.Name); err != nil {
		return Topic{}, p.errAt(nameNode, t.Name, "name", "%v", err)
	}

	pairs, err := p.mapping(item, t.Name, "")
	if err != nil {
		return Topic{}, err
	}
	var havePartitions, haveReplication bool
	for _, kv := range pairs {
		k, v := kv[0], resolve(kv[1])
		switch k.Value {
		case "name":
		case "partitions":
			n, err := p.integer(v, t.Name, "partitions", 1, 1<<31-1)
			if err != nil {
				return Topic{}, err
			}
			t.Partitions, havePartitions = int32(n), true
		case "replication":
			n, err := p.integer(v, t.Name, "replication", 1, 1<<15-1)
			if err != nil {
				return Topic{}, err
			}
			t.Replication, haveReplication = int16(n), true
		case "description":
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return Topic{}, p.errAt(v, t.Name, "description", "must be a string, got %s", kindName(v))
			}
			t.Description = strings.TrimSpace(v.Value)
		case "format":
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return Topic{}, p.errAt(v, t.Name, "format", "must be a string, got %s", kindName(v))
			}
			switch v.Value {
			case FormatAvro, FormatGoka:
				t.Format = v.Value
			default:
				return Topic{}, p.errAt(v, t.Name, "format", "must be %q or %q, got %q", FormatAvro, FormatGoka, v.Value)
			}
		case "configs":
			cfgs, err := p.configs(v, t.Name)
			if err != nil {
				return Topic{}, err
			}
			t.Configs = cfgs
		default:
			return Topic{}, p.errAt(k, t.Name, k.Value, "unknown field (want name, partitions, replication, description, format, configs)")
		}
	}
	switch {
	case !havePartitions:
		return Topic{}, p.errAt(item, t.Name, "partitions", "missing")
	case !haveReplication:
		return Topic{}, p.errAt(item, t.Name, "replication", "missing")
	case t.Description == "":
		return Topic{}, p.errAt(item, t.Name, "description", "missing: say what the topic carries")
	}
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	if t.Format == "" {
		t.Format = FormatAvro
	}
	// Cross-field check: min.insync.replicas against replication.
	if v, ok := t.Configs[MinInsyncReplicas]; ok {
		m, _ := strconv.ParseInt(v, 10, 64)
		if m > int64(t.Replication) {
			return Topic{}, p.errAt(p.configNode(item, MinInsyncReplicas), t.Name, "configs."+MinInsyncReplicas,
				"must be ≤ replication (%d), got %d", t.Replication, m)
		}
	}
	return t, nil
}

// configNode finds the value node of configs.<key> in a topic entry, for its line.
func (p *parser) configNode(item *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Value != "configs" {
			continue
		}
		c := resolve(item.Content[i+1])
		for j := 0; j+1 < len(c.Content); j += 2 {
			if c.Content[j].Value == key {
				// Point at the use (the alias line) when configs is an alias.
				if item.Content[i+1].Kind == yaml.AliasNode {
					return item.Content[i+1]
				}
				return c.Content[j+1]
			}
		}
	}
	return item
}

func (p *parser) integer(v *yaml.Node, topic, field string, lo, hi int64) (int64, error) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
		return 0, p.errAt(v, topic, field, "must be an integer, got %s", describe(v))
	}
	n, err := strconv.ParseInt(v.Value, 0, 64)
	if err != nil {
		return 0, p.errAt(v, topic, field, "must be an integer, got %q", v.Value)
	}
	if n < lo {
		return 0, p.errAt(v, topic, field, "must be ≥ %d, got %d", lo, n)
	}
	if n > hi {
		return 0, p.errAt(v, topic, field, "must be ≤ %d, got %d", hi, n)
	}
	return n, nil
}

func describe(v *yaml.Node) string {
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		return strconv.Quote(v.Value)
	}
	return kindName(v)
}

func (p *parser) configs(n *yaml.Node, topic string) (map[string]string, error) {
	pairs, err := p.mapping(n, topic, "configs")
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v := kv[0], resolve(kv[1])
		field := "configs." + k.Value
		kind, known := topicConfigs[k.Value]
		if !known {
			return nil, p.errAt(k, topic, field, "unknown topic config%s", suggest(k.Value))
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, p.errAt(v, topic, field, "must be a scalar value, got %s", kindName(v))
		}
		val := strings.TrimSpace(v.Value)
		if msg := checkConfig(k.Value, kind, val); msg != "" {
			return nil, p.errAt(v, topic, field, "%s, got %q", msg, val)
		}
		out[k.Value] = val
	}
	return out, nil
}

// checkConfig returns why val is not a valid value for config key, or "".
func checkConfig(key string, kind configKind, val string) string {
	switch key {
	case CleanupPolicy:
		switch normPolicy(val) {
		case "delete", "compact", "compact,delete":
			return ""
		}
		return `must be "delete", "compact" or "compact,delete"`
	case RetentionMs:
		if n, err := strconv.ParseInt(val, 10, 64); err != nil || n < -1 {
			return "must be an integer ≥ -1 (milliseconds, -1 = keep forever)"
		}
		return ""
	case MinInsyncReplicas:
		if n, err := strconv.ParseInt(val, 10, 32); err != nil || n < 1 {
			return "must be an integer ≥ 1"
		}
		return ""
	}
	switch kind {
	case kindInt:
		if n, err := strconv.ParseInt(val, 10, 64); err != nil || n < 0 {
			return "must be an integer ≥ 0"
		}
	case kindLong:
		if n, err := strconv.ParseInt(val, 10, 64); err != nil || n < -1 {
			return "must be an integer ≥ -1"
		}
	case kindBool:
		if val != "true" && val != "false" {
			return "must be true or false"
		}
	case kindRatio:
		if f, err := strconv.ParseFloat(val, 64); err != nil || f < 0 || f > 1 {
			return "must be a number between 0 and 1"
		}
	}
	return ""
}

// normPolicy sorts a cleanup.policy list so "delete,compact" equals
// "compact,delete" (Kafka treats it as a set).
func normPolicy(v string) string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	slices.Sort(parts)
	parts = slices.Compact(parts)
	return strings.Join(parts, ",")
}

// suggest returns ` (did you mean "x"?)` for a near miss of a known config.
func suggest(key string) string {
	best, bestD := "", 3
	for k := range topicConfigs {
		if d := distance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validName checks Kafka's rules for topic names.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid topic name", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("longer than %d characters (%d)", maxNameLen, len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid character %q in %q (allowed: a-z A-Z 0-9 . _ -)", r, name)
		}
	}
	return nil
}

// The strict decode: the same document into typed structs with
// KnownFields(true).
type fileYAML struct {
	Topics []topicYAML `yaml:"topics"`
}

type topicYAML struct {
	Name        string            `yaml:"name"`
	Partitions  int32             `yaml:"partitions"`
	Replication int16             `yaml:"replication"`
	Description string            `yaml:"description"`
	Format      string            `yaml:"format"`
	Configs     map[string]string `yaml:"configs"`
}

func strictDecode(data []byte, source string) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var f fileYAML
	if err := dec.Decode(&f); err != nil {
		return yamlError(source, err)
	}
	return nil
}

// yamlError turns a yaml.v3 error ("yaml: line 3: ..." or a multi-line
// *yaml.TypeError) into a one-line *CatalogueError.
func yamlError(source string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, tail
			}
		}
	}
	return &CatalogueError{File: source, Line: line, Msg: msg}
}
