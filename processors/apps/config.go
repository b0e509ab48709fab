package apps

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/query"
	"github.com/drover-iot/drover/schemas"
)

// TargetPrefix starts every app target topic's name: the sink stores the
// topics with this prefix in app_records, and the catalogue's derived-stream
// rules apply to them (see EnsureTarget).
const TargetPrefix = "apps."

// ErrBadApps is wrapped by every error of Load and Parse.
var ErrBadApps = errors.New("bad apps file")

// ConfigError is a problem in an apps file, at File:Line:Column (Column 0
// when unknown), in App (empty outside an app) and Field (e.g. "query").
type ConfigError struct {
	File         string
	Line, Column int
	App, Field   string
	Msg          string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.App != "" {
		fmt.Fprintf(&b, "app %s: ", e.App)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrBadApps.
func (e *ConfigError) Unwrap() error { return ErrBadApps }

// App is one checked stream app.
type App struct {
	Name string
	// Topics are the source topics; Tenant (empty = every tenant) and
	// Devices (a path.Match pattern on the device id, empty = all) narrow
	// them.
	Topics  []string
	Tenant  string
	Devices string
	// Query is the parsed statement and QueryText its source.
	Query     *query.Select
	QueryText string
	// Target is the output topic (TargetPrefix...).
	Target string
	// Share is set for a cross-tenant app.
	Share *Share
	// Window is set for GROUP BY device, TUMBLE(size).
	Window *Window
	// Join is set for a time-series join of the two source topics.
	Join *Join
	// Lateness is the allowed lateness of a window or join app: how far
	// behind its newest event time a record may arrive and still count.
	Lateness time.Duration
	// Line is where the app starts in its file.
	Line int
}

// Share is a cross-tenant app's receiving tenant and agreement.
type Share struct {
	Tenant    string
	Agreement string
}

// Group is the app's goka group name.
func (a *App) Group() string { return "app-" + a.Name }

// OwnerTenant is the tenant whose rows the app's output becomes for a
// source record of tenant src: the receiving tenant of a share, else src.
func (a *App) OwnerTenant(src string) string {
	if a.Share != nil {
		return a.Share.Tenant
	}
	return src
}

type fileYAML struct {
	Apps []appYAML `yaml:"apps"`
}

type appYAML struct {
	Name   string     `yaml:"name"`
	Source sourceYAML `yaml:"source"`
	Query  string     `yaml:"query"`
	Target string     `yaml:"target"`
	Share  *shareYAML `yaml:"share"`
	Join   *joinYAML  `yaml:"join"`
	// Lateness is the allowed lateness of a window or join app (a
	// duration; default DefaultWindowLateness or DefaultJoinLateness).
	Lateness string `yaml:"lateness"`
}

type joinYAML struct {
	Right       string   `yaml:"right"`
	Link        string   `yaml:"link"`
	Tolerance   string   `yaml:"tolerance"`
	Lateness    string   `yaml:"lateness"`
	Interpolate []string `yaml:"interpolate"`
	Buffer      int      `yaml:"buffer"`
}

type sourceYAML struct {
	Topics  []string `yaml:"topics"`
	Tenant  string   `yaml:"tenant"`
	Devices string   `yaml:"devices"`
}

type shareYAML struct {
	Tenant    string `yaml:"tenant"`
	Agreement string `yaml:"agreement"`
}

// Load reads and checks an apps file.
func Load(file string) ([]*App, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadApps, err)
	}
	return Parse(file, b)
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	topicRE  = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	tenantRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
	yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)
	// labelKeyRE is the registry's label key alphabet.
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// Parse checks the apps file data (named file in errors). Every problem
// is a *ConfigError; several are joined.
func Parse(file string, data []byte) ([]*App, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErr(file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f fileYAML
	if err := dec.Decode(&f); err != nil {
		return nil, yamlErr(file, err)
	}
	items := appNodes(&root)
	if len(f.Apps) == 0 || len(items) != len(f.Apps) {
		return nil, &ConfigError{File: file, Line: 1, Msg: "no apps: want a top-level list `apps:`"}
	}
	var apps []*App
	var errs []error
	for i, y := range f.Apps {
		a, err := check(file, lines(data), items[i], y)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range apps {
			if o.Name == a.Name {
				errs = append(errs, &ConfigError{File: file, Line: a.Line, App: a.Name, Field: "name", Msg: fmt.Sprintf("duplicate app name (first at line %d)", o.Line)})
			}
			if o.Target == a.Target {
				errs = append(errs, &ConfigError{File: file, Line: a.Line, App: a.Name, Field: "target", Msg: fmt.Sprintf("%s is the target of app %s too", a.Target, o.Name)})
			}
		}
		apps = append(apps, a)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return apps, nil
}

// yamlErr turns yaml.v3's errors ("line 5: field x not found in type ...")
// into ConfigErrors.
func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			return &ConfigError{File: file, Line: n, Msg: m[2]}
		}
		return &ConfigError{File: file, Msg: msg}
	}
	var errs []error
	for _, e := range te.Errors {
		ce := &ConfigError{File: file, Msg: e}
		if m := yamlLine.FindStringSubmatch(e); m != nil {
			ce.Line, _ = strconv.Atoi(m[1])
			ce.Msg = m[2]
			if f, _, ok := strings.Cut(strings.TrimPrefix(ce.Msg, "field "), " not found in type"); ok && strings.HasPrefix(ce.Msg, "field ") {
				ce.Field, ce.Msg = f, "unknown field"
			}
		}
		errs = append(errs, ce)
	}
	return errors.Join(errs...)
}

// appNodes returns the mapping node of each app.
func appNodes(root *yaml.Node) []*yaml.Node {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "apps" && m.Content[i+1].Kind == yaml.SequenceNode {
			return m.Content[i+1].Content
		}
	}
	return nil
}

// child returns the value node of key in mapping n (nil when absent).
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func lines(data []byte) []string { return strings.Split(string(data), "\n") }

func check(file string, src []string, n *yaml.Node, y appYAML) (*App, error) {
	a := &App{Name: y.Name, Topics: y.Source.Topics, Tenant: y.Source.Tenant, Devices: y.Source.Devices, Target: y.Target, QueryText: y.Query, Line: n.Line}
	bad := func(field string, at *yaml.Node, format string, args ...any) error {
		e := &ConfigError{File: file, Line: n.Line, App: y.Name, Field: field, Msg: fmt.Sprintf(format, args...)}
		if at != nil {
			e.Line, e.Column = at.Line, at.Column
		}
		return e
	}
	src0 := child(n, "source")
	switch {
	case y.Name == "":
		return nil, bad("name", nil, "missing (every app needs a name)")
	case !nameRE.MatchString(y.Name):
		return nil, bad("name", child(n, "name"), "%q: want lowercase letters, digits and '-' (at most 63)", y.Name)
	case len(y.Source.Topics) == 0:
		return nil, bad("source.topics", src0, "missing: name the topics the app reads")
	case y.Source.Tenant != "" && !tenantRE.MatchString(y.Source.Tenant):
		return nil, bad("source.tenant", child(src0, "tenant"), "%q is no tenant id", y.Source.Tenant)
	case y.Query == "":
		return nil, bad("query", nil, "missing: a SELECT statement")
	case y.Target == "":
		return nil, bad("target", nil, "missing: the output topic (%s...)", TargetPrefix)
	case !strings.HasPrefix(y.Target, TargetPrefix) || !topicRE.MatchString(y.Target) || len(y.Target) == len(TargetPrefix):
		return nil, bad("target", child(n, "target"), "%q: want a topic name starting with %q", y.Target, TargetPrefix)
	}
	if y.Source.Devices != "" {
		if _, err := path.Match(y.Source.Devices, ""); err != nil {
			return nil, bad("source.devices", child(src0, "devices"), "%q: %v", y.Source.Devices, err)
		}
	}
	var recs []*avro.RecordSchema
	for i, t := range y.Source.Topics {
		rs, ok := topicSchema(t)
		if !ok {
			return nil, bad("source.topics", child(src0, "topics").Content[i], "%s has no record schema in drover's catalogue", t)
		}
		if t == y.Target {
			return nil, bad("target", child(n, "target"), "%s is also a source", t)
		}
		recs = append(recs, rs)
	}
	if y.Share != nil {
		sh := child(n, "share")
		switch {
		case y.Share.Tenant == "" || !tenantRE.MatchString(y.Share.Tenant):
			return nil, bad("share.tenant", sh, "missing or not a tenant id: the receiving tenant")
		case y.Share.Agreement == "":
			return nil, bad("share.agreement", sh, "missing: the sharing agreement id")
		case y.Source.Tenant == "":
			return nil, bad("source.tenant", src0, "a share needs the source tenant (whose data is shared)")
		case y.Share.Tenant == y.Source.Tenant:
			return nil, bad("share.tenant", child(sh, "tenant"), "%s is the source tenant: a share crosses tenants", y.Share.Tenant)
		}
		a.Share = &Share{Tenant: y.Share.Tenant, Agreement: y.Share.Agreement}
	}
	q, err := query.ParseSelect(y.Query)
	qn := child(n, "query")
	if err != nil {
		var qe *query.Error
		if errors.As(err, &qe) {
			line, col := filePos(src, qn, qe.Pos)
			return nil, &ConfigError{File: file, Line: line, Column: col, App: y.Name, Field: "query", Msg: qe.Msg}
		}
		return nil, bad("query", qn, "%v", err)
	}
	at := func(p query.Pos) *yaml.Node {
		l, c := filePos(src, qn, p)
		return &yaml.Node{Line: l, Column: c}
	}
	if q.From != "*" && q.From != y.Name && !slices.Contains(y.Source.Topics, q.From) {
		return nil, bad("query", at(q.FromPos), "FROM %s: want one of the source topics (%s), the app name or *", q.From, strings.Join(y.Source.Topics, ", "))
	}
	if len(q.GroupBy) > 0 {
		w, err := windowOf(q)
		if err != nil {
			return nil, bad("query", at(err.pos), "%s", err.msg)
		}
		a.Window = w
		a.Lateness = DefaultWindowLateness
	}
	if y.Join != nil {
		if len(q.GroupBy) > 0 {
			return nil, bad("query", at(q.GroupBy[0].Pos), "a join cannot have GROUP BY: it writes record pairs, not values to aggregate (window one side in an app of its own)")
		}
		j, err := joinOf(y, q, child(n, "join"), at)
		if err != nil {
			return nil, err.config(file, y.Name)
		}
		a.Join = j
		a.Lateness = j.Lateness
	}
	if y.Lateness != "" {
		ln := child(n, "lateness")
		v, err := time.ParseDuration(y.Lateness)
		switch {
		case a.Window == nil && a.Join == nil:
			return nil, bad("lateness", ln, "only a window (GROUP BY) or a join has an allowed lateness")
		case err != nil || v < 0:
			return nil, bad("lateness", ln, "%q: want a duration such as 30s", y.Lateness)
		case y.Join != nil && y.Join.Lateness != "":
			return nil, bad("lateness", ln, "set either lateness or join.lateness, not both")
		}
		a.Lateness = v
		if a.Join != nil {
			a.Join.Lateness = v
		}
	}
	var exprs []*query.Expr
	for _, it := range q.Items {
		if !it.Star {
			exprs = append(exprs, it.Expr)
		}
	}
	if q.Where != nil {
		exprs = append(exprs, q.Where)
	}
	for _, e := range exprs {
		for _, r := range e.FieldRefs() {
			if err := query.CheckPath(r.Path, y.Source.Topics, recs); err != nil {
				return nil, bad("query", at(r.Pos), "field %s: %v", strings.Join(r.Path, "."), err)
			}
		}
	}
	a.Query = q
	return a, nil
}

func topicSchema(t string) (*avro.RecordSchema, bool) {
	s, ok := schemas.ForTopic(t)
	if !ok {
		return nil, false
	}
	rs, ok := s.(*avro.RecordSchema)
	return rs, ok
}

// filePos maps a position inside the query text to the file: a block
// scalar (| or >) starts on the line after its key, indented; a plain or
// quoted scalar starts at its node.
func filePos(src []string, n *yaml.Node, p query.Pos) (line, col int) {
	if n == nil {
		return 0, 0
	}
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		line = n.Line + p.Line
		indent := 0
		if line-1 < len(src) {
			l := src[line-1]
			indent = len(l) - len(strings.TrimLeft(l, " "))
		}
		return line, indent + p.Col
	}
	if p.Line > 1 {
		return n.Line + p.Line - 1, p.Col
	}
	col = n.Column + p.Col - 1
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		col++
	}
	return n.Line, col
}

// Window is an app's GROUP BY device, TUMBLE(Size): every SELECT item but
// the key fields (Aggregated) is aggregated per device in tumbling
// event-time windows by the features engine.
type Window struct {
	Size       time.Duration
	Aggregated []query.Item
}

// keyFields are SELECT items a windowed app passes as the window's key.
var keyFields = []string{"device_id", "tenant"}

type posError struct {
	pos query.Pos
	msg string
}

func windowOf(q *query.Select) (*Window, *posError) {
	g := q.GroupBy
	if len(g) != 2 || len(g[0].Path) != 1 || (g[0].Path[0] != "device" && g[0].Path[0] != "device_id") || g[1].Func != "tumble" {
		return nil, &posError{g[0].Pos, "GROUP BY supports device, TUMBLE(size) (windows per device, by the features engine)"}
	}
	if len(g[1].Args) != 1 {
		return nil, &posError{g[1].Pos, "TUMBLE takes one window size, e.g. TUMBLE(1m)"}
	}
	size, err := time.ParseDuration(g[1].Args[0])
	if err != nil || size < time.Second || size%time.Second != 0 {
		return nil, &posError{g[1].Pos, fmt.Sprintf("TUMBLE(%s): want a whole number of seconds, at least 1s (e.g. 1m)", g[1].Args[0])}
	}
	w := &Window{Size: size}
	for _, it := range q.Items {
		if it.Star {
			return nil, &posError{it.Pos, "SELECT * has no meaning with GROUP BY: name the values to aggregate"}
		}
		if slices.Contains(keyFields, it.Name) && len(it.Expr.Fields()) == 1 {
			continue
		}
		w.Aggregated = append(w.Aggregated, it)
	}
	if len(w.Aggregated) == 0 {
		return nil, &posError{q.Items[0].Pos, "GROUP BY needs a value to aggregate (e.g. SELECT device_id, value AS celsius)"}
	}
	return w, nil
}

// Join is a time-series join: each record of Left meets the Right record
// of the same key nearest in event time within Tolerance (or the two
// bracketing it, interpolated, for the Interpolate fields).
type Join struct {
	Left, Right string
	// Link, when set, is the device registry label whose value the two
	// sides meet by (devices with the same value of it are joined), instead
	// of the record key. For a share the right side is the source tenant's
	// records and the left side the receiving tenant's.
	Link        string
	Tolerance   time.Duration
	Lateness    time.Duration
	Interpolate []string
	// Buffer bounds the right records (and the waiting left records) kept
	// per key.
	Buffer int
}

// Join defaults, and the windows' default allowed lateness (the features
// group's).
const (
	DefaultJoinTolerance  = 30 * time.Second
	DefaultJoinLateness   = time.Minute
	DefaultJoinBuffer     = 64
	DefaultWindowLateness = features.DefaultLateness
)

// joinError is a problem of a join: field and position for ConfigError.
type joinError struct {
	field string
	at    *yaml.Node
	msg   string
}

func (e *joinError) config(file, app string) *ConfigError {
	ce := &ConfigError{File: file, App: app, Field: e.field, Msg: e.msg}
	if e.at != nil {
		ce.Line, ce.Column = e.at.Line, e.at.Column
	}
	return ce
}

func joinOf(y appYAML, q *query.Select, jn *yaml.Node, at func(query.Pos) *yaml.Node) (*Join, *joinError) {
	j := &Join{Right: y.Join.Right, Tolerance: DefaultJoinTolerance, Lateness: DefaultJoinLateness, Buffer: DefaultJoinBuffer, Interpolate: y.Join.Interpolate}
	bad := func(field string, n *yaml.Node, format string, args ...any) *joinError {
		if n == nil {
			n = jn
		}
		return &joinError{field: field, at: n, msg: fmt.Sprintf(format, args...)}
	}
	if len(y.Source.Topics) != 2 || !slices.Contains(y.Source.Topics, j.Right) || y.Source.Topics[0] == y.Source.Topics[1] {
		return nil, bad("join", nil, "a join reads two source topics and names one of them as right (source.topics %v, right %q)", y.Source.Topics, j.Right)
	}
	for _, t := range y.Source.Topics {
		if t != j.Right {
			j.Left = t
		}
	}
	for _, d := range []struct {
		name string
		text string
		dst  *time.Duration
	}{{"tolerance", y.Join.Tolerance, &j.Tolerance}, {"lateness", y.Join.Lateness, &j.Lateness}} {
		if d.text == "" {
			continue
		}
		v, err := time.ParseDuration(d.text)
		if err != nil || v < 0 {
			return nil, bad("join."+d.name, child(jn, d.name), "%s %q: want a duration such as 30s", d.name, d.text)
		}
		*d.dst = v
	}
	if y.Join.Buffer < 0 || y.Join.Buffer > 100000 {
		return nil, bad("join.buffer", child(jn, "buffer"), "buffer %d: want 1..100000 records per key", y.Join.Buffer)
	}
	if y.Join.Buffer > 0 {
		j.Buffer = y.Join.Buffer
	}
	for _, it := range q.Items {
		if !it.Star || len(q.Items) > 1 {
			// The output is {left, right, delta_ms, interpolated}: whole
			// records of two schemas, which a projection would have to
			// name by side; point at the item.
			p := it.Pos
			if it.Star {
				p = q.Items[1].Pos
			}
			return nil, &joinError{field: "query", at: at(p), msg: "a join writes both records whole ({left, right, delta_ms, interpolated}): its query is SELECT * FROM * [WHERE ...]; filter with WHERE, and select fields from the target's payload downstream"}
		}
	}
	if y.Join.Link != "" && !labelKeyRE.MatchString(y.Join.Link) {
		return nil, bad("join.link", child(jn, "link"), "%q is no registry label key (letters, digits, '.', '_', ':', '-')", y.Join.Link)
	}
	j.Link = y.Join.Link
	if y.Share != nil && j.Link == "" {
		// Two tenants' records never share a key (TENANT/DEVICE).
		return nil, bad("join.link", nil, "a join that is a share meets two tenants' devices: name the registry label that links them (join.link)")
	}
	rs, _ := topicSchema(j.Right)
	in := child(jn, "interpolate")
	for i, f := range j.Interpolate {
		next, _ := member(rs, f)
		if next == nil || (next.Type() != avro.Double && next.Type() != avro.Float && next.Type() != avro.Long && next.Type() != avro.Int) {
			var n *yaml.Node
			if in != nil && i < len(in.Content) {
				n = in.Content[i]
			}
			return nil, bad("join.interpolate", n, "interpolate %s: %s has no numeric field %q", f, j.Right, f)
		}
	}
	return j, nil
}

// member returns the schema of field name of a record schema.
func member(rs *avro.RecordSchema, name string) (avro.Schema, bool) {
	if rs == nil {
		return nil, false
	}
	for _, f := range rs.Fields() {
		if f.Name() == name {
			return f.Type(), true
		}
	}
	return nil, false
}
