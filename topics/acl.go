package topics

import (
	_ "embed"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
	"gopkg.in/yaml.v3"
)

//go:embed acls.yaml
var defaultACLs []byte

// DefaultACLSource is the file name errors from the embedded ACL file carry.
const DefaultACLSource = "acls.yaml"

// ClusterResource is the name of the one CLUSTER resource ACLs name.
const ClusterResource = "kafka-cluster"

// ACL is one Kafka ACL: Principal may (Allow) or may not do Operation on the
// resource Resource/Name (a LITERAL name, or a PREFIXED one), from Host.
type ACL struct {
	Principal string // User:<name>
	Host      string // "*" = any host
	Resource  kmsg.ACLResourceType
	Name      string
	Pattern   kmsg.ACLResourcePatternType
	Operation kmsg.ACLOperation
	Allow     bool
}

// String renders the ACL the way kafka-acls.sh lists it, on one line.
func (a ACL) String() string {
	perm := "DENY"
	if a.Allow {
		perm = "ALLOW"
	}
	return fmt.Sprintf("%s %s %s on %s %s (%s) from %s", a.Principal, perm, a.Operation, a.Resource, a.Name,
		strings.ToLower(a.Pattern.String()), a.Host)
}

// compare orders ACLs by principal, resource type, name, pattern, operation.
func (a ACL) compare(b ACL) int {
	return strings.Compare(a.key(), b.key())
}

func (a ACL) key() string {
	return fmt.Sprintf("%s\x00%03d\x00%s\x00%03d\x00%03d\x00%t\x00%s", a.Principal, a.Resource, a.Name, a.Pattern, a.Operation, a.Allow, a.Host)
}

// Principal is one declared principal: a SASL user and what it may do. The
// topic lists hold names and globs as written; ACLSet.ACLs expands them.
type Principal struct {
	User             string
	UsedBy           []string
	Description      string
	Read             []string
	Write            []string
	Create           []string
	DescribeConfigs  []string
	Groups           []string
	DescribeGroups   []string
	TransactionalIDs []string
	Cluster          []kmsg.ACLOperation
}

// Name returns the ACL principal, User:<user>.
func (p Principal) Name() string { return "User:" + p.User }

// ACLSet is a parsed ACL file checked against a catalogue: the principals
// in file order and the ACLs they expand to.
type ACLSet struct {
	Principals []Principal
	acls       []ACL
}

// ACLs returns every ACL the set declares, sorted, without duplicates.
func (s *ACLSet) ACLs() []ACL { return slices.Clone(s.acls) }

// Managed reports whether the ACL principal p is declared in the set.
func (s *ACLSet) Managed(p string) bool {
	return slices.ContainsFunc(s.Principals, func(q Principal) bool { return q.Name() == p })
}

// Lookup returns the principal of user and whether the set declares it.
func (s *ACLSet) Lookup(user string) (Principal, bool) {
	i := slices.IndexFunc(s.Principals, func(p Principal) bool { return p.User == user })
	if i < 0 {
		return Principal{}, false
	}
	return s.Principals[i], true
}

// UsedByStage reports whether p's used_by names stage (an entry equal to
// it, or starting with it and a blank: "media-backfill (CronJob)").
func (p Principal) UsedByStage(stage string) bool {
	return slices.ContainsFunc(p.UsedBy, func(u string) bool { return u == stage || strings.HasPrefix(u, stage+" ") })
}

// DefaultCatalogueAndACLs returns the embedded catalogue and the embedded
// ACLs checked against it.
func DefaultCatalogueAndACLs() (*Catalogue, *ACLSet, error) {
	cat, err := Default()
	if err != nil {
		return nil, nil, err
	}
	set, err := DefaultACLs(cat)
	return cat, set, err
}

// DefaultACLs returns the ACLs embedded in the binary (acls.yaml), checked
// against cat.
func DefaultACLs(cat *Catalogue) (*ACLSet, error) {
	return ParseACLs(defaultACLs, DefaultACLSource, cat)
}

// LoadACLs reads and parses the ACL file at path against cat.
func LoadACLs(path string, cat *Catalogue) (*ACLSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading ACL file: %w", err)
	}
	return ParseACLs(data, path, cat)
}

// The file as written; entry keeps each list item's line for errors.
type aclFileYAML struct {
	ExternalTopics []struct {
		Name        entry  `yaml:"name"`
		Description string `yaml:"description"`
	} `yaml:"external_topics"`
	Principals []principalYAML `yaml:"principals"`
}

type principalYAML struct {
	User             entry   `yaml:"user"`
	UsedBy           []entry `yaml:"used_by"`
	Description      string  `yaml:"description"`
	Read             []entry `yaml:"read"`
	Write            []entry `yaml:"write"`
	Create           []entry `yaml:"create"`
	DescribeConfigs  []entry `yaml:"describe_configs"`
	Groups           []entry `yaml:"groups"`
	DescribeGroups   []entry `yaml:"describe_groups"`
	TransactionalIDs []entry `yaml:"transactional_ids"`
	Cluster          []entry `yaml:"cluster"`
}

// entry is a scalar with the line it was on.
type entry struct {
	Value string
	Line  int
}

func (e *entry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return fmt.Errorf("line %d: want a string, got %s", n.Line, kindName(n))
	}
	e.Value, e.Line = strings.TrimSpace(n.Value), n.Line
	return nil
}

// ParseACLs decodes an ACL file strictly (unknown fields and duplicate
// keys are errors) and checks it against cat: every topic name or glob
// must match a catalogue topic or a declared external topic, users must be
// unique, cluster operations are limited to what a stage may hold. Errors
// are *CatalogueError values naming the file, line and field.
func ParseACLs(data []byte, source string, cat *Catalogue) (*ACLSet, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	var f aclFileYAML
	if err := dec.Decode(&f); err != nil {
		return nil, yamlError(source, err)
	}
	p := aclParser{file: source, topics: cat.Names()}
	for i, x := range f.ExternalTopics {
		if err := validName(x.Name.Value); err != nil {
			return nil, p.errAt(x.Name.Line, fmt.Sprintf("external_topics[%d].name", i), "%v", err)
		}
		if strings.TrimSpace(x.Description) == "" {
			return nil, p.errAt(x.Name.Line, fmt.Sprintf("external_topics[%d].description", i), "missing: say what the topic is")
		}
		p.topics = append(p.topics, x.Name.Value)
	}
	if len(f.Principals) == 0 {
		return nil, &CatalogueError{File: source, Field: "principals", Msg: "missing or empty: want a list of principals"}
	}
	set := &ACLSet{}
	for i, py := range f.Principals {
		pr, err := p.principal(i, py)
		if err != nil {
			return nil, err
		}
		if set.Managed(pr.Name()) {
			return nil, p.errAt(py.User.Line, fmt.Sprintf("principals[%d].user", i), "duplicate user %q", pr.User)
		}
		set.Principals = append(set.Principals, pr)
	}
	set.acls = expand(set.Principals)
	return set, nil
}

type aclParser struct {
	file   string
	topics []string // catalogue and external topic names
}

func (p *aclParser) errAt(line int, field, format string, args ...any) *CatalogueError {
	return &CatalogueError{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (p *aclParser) principal(i int, py principalYAML) (Principal, error) {
	field := fmt.Sprintf("principals[%d]", i)
	if py.User.Value == "" {
		return Principal{}, p.errAt(py.User.Line, field+".user", "missing")
	}
	if err := validName(py.User.Value); err != nil {
		return Principal{}, p.errAt(py.User.Line, field+".user", "%v", err)
	}
	pr := Principal{User: py.User.Value, Description: strings.TrimSpace(py.Description)}
	field = fmt.Sprintf("principal %q", pr.User)
	if pr.Description == "" {
		return Principal{}, p.errAt(py.User.Line, field+": description", "missing: say what the principal does")
	}
	if len(py.UsedBy) == 0 {
		return Principal{}, p.errAt(py.User.Line, field+": used_by", "missing: name the stages that log in as this user")
	}
	for _, u := range py.UsedBy {
		pr.UsedBy = append(pr.UsedBy, u.Value)
	}
	var err error
	for _, l := range []struct {
		name string
		in   []entry
		out  *[]string
	}{
		{"read", py.Read, &pr.Read}, {"write", py.Write, &pr.Write}, {"create", py.Create, &pr.Create},
		{"describe_configs", py.DescribeConfigs, &pr.DescribeConfigs},
	} {
		if *l.out, err = p.topicList(field+": "+l.name, l.in); err != nil {
			return Principal{}, err
		}
	}
	for _, l := range []struct {
		name string
		in   []entry
		out  *[]string
	}{
		{"groups", py.Groups, &pr.Groups}, {"describe_groups", py.DescribeGroups, &pr.DescribeGroups},
		{"transactional_ids", py.TransactionalIDs, &pr.TransactionalIDs},
	} {
		if *l.out, err = p.nameList(field+": "+l.name, l.in); err != nil {
			return Principal{}, err
		}
	}
	if pr.Cluster, err = p.clusterOps(field+": cluster", py.Cluster); err != nil {
		return Principal{}, err
	}
	return pr, nil
}

// topicList expands names and globs to the catalogue (and external) topics
// they match, in catalogue order; a pattern matching nothing is an error.
func (p *aclParser) topicList(field string, in []entry) ([]string, error) {
	var out []string
	for _, e := range in {
		if _, err := path.Match(e.Value, ""); err != nil || e.Value == "" {
			return nil, p.errAt(e.Line, field, "%q is not a topic name or glob", e.Value)
		}
		n := 0
		for _, t := range p.topics {
			if ok, _ := path.Match(e.Value, t); ok {
				n++
				if !slices.Contains(out, t) {
					out = append(out, t)
				}
			}
		}
		if n == 0 {
			return nil, p.errAt(e.Line, field, "%q matches no catalogue topic (declare topics outside the catalogue under external_topics)", e.Value)
		}
	}
	return out, nil
}

// nameList checks group and transactional id names: Kafka's topic-name
// characters, an optional trailing * (a PREFIXED ACL), or * alone.
func (p *aclParser) nameList(field string, in []entry) ([]string, error) {
	var out []string
	for _, e := range in {
		name := strings.TrimSuffix(e.Value, "*")
		if e.Value != "*" {
			if err := validName(name); err != nil {
				return nil, p.errAt(e.Line, field, "%q: %v (a trailing * makes a prefix)", e.Value, err)
			}
		}
		if slices.Contains(out, e.Value) {
			return nil, p.errAt(e.Line, field, "%q listed twice", e.Value)
		}
		out = append(out, e.Value)
	}
	return out, nil
}

// stageClusterOps are the cluster operations a principal may be granted;
// the others (Alter: change ACLs; AlterConfigs; ClusterAction; All) are
// the super user's.
var stageClusterOps = []kmsg.ACLOperation{kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationDescribe, kmsg.ACLOperationDescribeConfigs}

func (p *aclParser) clusterOps(field string, in []entry) ([]kmsg.ACLOperation, error) {
	var out []kmsg.ACLOperation
	for _, e := range in {
		op, err := kmsg.ParseACLOperation(e.Value)
		if err != nil || !slices.Contains(stageClusterOps, op) {
			return nil, p.errAt(e.Line, field, "%q: want IdempotentWrite, Describe or DescribeConfigs (the rest is the super user's)", e.Value)
		}
		out = append(out, op)
	}
	return out, nil
}

// expand turns the principals into ACLs, sorted and without duplicates.
func expand(ps []Principal) []ACL {
	var out []ACL
	for _, p := range ps {
		add := func(rt kmsg.ACLResourceType, names []string, op kmsg.ACLOperation) {
			for _, n := range names {
				out = append(out, newACL(p.Name(), rt, n, op))
			}
		}
		add(kmsg.ACLResourceTypeTopic, p.Read, kmsg.ACLOperationRead)
		add(kmsg.ACLResourceTypeTopic, p.Write, kmsg.ACLOperationWrite)
		add(kmsg.ACLResourceTypeTopic, p.Create, kmsg.ACLOperationCreate)
		add(kmsg.ACLResourceTypeTopic, p.DescribeConfigs, kmsg.ACLOperationDescribeConfigs)
		add(kmsg.ACLResourceTypeGroup, p.Groups, kmsg.ACLOperationRead)
		add(kmsg.ACLResourceTypeGroup, p.DescribeGroups, kmsg.ACLOperationDescribe)
		add(kmsg.ACLResourceTypeTransactionalId, p.TransactionalIDs, kmsg.ACLOperationWrite)
		for _, op := range p.Cluster {
			out = append(out, newACL(p.Name(), kmsg.ACLResourceTypeCluster, ClusterResource, op))
		}
	}
	slices.SortFunc(out, ACL.compare)
	return slices.CompactFunc(out, func(a, b ACL) bool { return a == b })
}

// newACL is an ALLOW from any host; a name ending in * (other than * alone)
// is a PREFIXED pattern on the name before it.
func newACL(principal string, rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation) ACL {
	a := ACL{Principal: principal, Host: "*", Resource: rt, Name: name, Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true}
	if rt != kmsg.ACLResourceTypeTopic && len(name) > 1 && strings.HasSuffix(name, "*") {
		a.Name, a.Pattern = strings.TrimSuffix(name, "*"), kmsg.ACLResourcePatternTypePrefixed
	}
	return a
}
