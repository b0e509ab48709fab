package inspect

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/schemas"
)

// Filter selects records: every condition must hold (AND). The zero Filter
// matches everything. A Filter is safe for concurrent use once built.
type Filter struct {
	keys    map[string]bool     // --key: any of these (empty = any key)
	headers map[string][]string // --header k=v: each key must have one of its values
	wheres  []where
}

type where struct {
	src  string
	prog *vm.Program
}

// ErrBadFilter is wrapped by NewFilter's errors.
var ErrBadFilter = errors.New("bad filter")

// shorthand matches `path=value` (one `=`), the form of the issue's
// examples: `metric=temperature`, `attrs.site=north`, `value=3`.
var shorthand = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*=\s*([^=].*?|)\s*$`)

// bareWord is a value the shorthand quotes as a string.
var bareWord = regexp.MustCompile(`^[^"'\s()]+$`)

// NewFilter compiles the filters of `drover tail`. keys match the record
// key exactly (any of them); headers are "k=v" (every key given must have
// one of its given values); wheres are expressions in the expr language
// (github.com/expr-lang/expr) evaluated against the decoded value, each
// compiled once. `path=value` with a single '=' is shorthand for
// `path == value` (value quoted as a string unless it is a number, true,
// false or nil). Errors name the flag and wrap ErrBadFilter.
func NewFilter(keys, headers, wheres []string) (*Filter, error) {
	f := &Filter{}
	if len(keys) > 0 {
		f.keys = make(map[string]bool, len(keys))
		for _, k := range keys {
			f.keys[k] = true
		}
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: --header %q: want key=value", ErrBadFilter, h)
		}
		if f.headers == nil {
			f.headers = map[string][]string{}
		}
		f.headers[k] = append(f.headers[k], v)
	}
	for _, w := range wheres {
		src := rewriteShorthand(w)
		if strings.TrimSpace(src) == "" {
			return nil, fmt.Errorf("%w: --where %q: empty expression", ErrBadFilter, w)
		}
		prog, err := expr.Compile(src, append(shadowOptions(), expr.AsBool())...)
		if err != nil {
			return nil, fmt.Errorf("%w: --where %q: %s", ErrBadFilter, w, exprMessage(err))
		}
		f.wheres = append(f.wheres, where{src: w, prog: prog})
	}
	return f, nil
}

// shadowOptions disables the expr builtins that share a name with a field
// of drover's records (count, min, max, mean, first, last, ...), so that
// `count > 10` on features.events compares the field. Other builtins stay
// available; $env["name"] reaches any field by name.
var shadowOptions = sync.OnceValue(func() []expr.Option {
	fields := map[string]bool{}
	for _, t := range schemas.Topics() {
		if rs, ok := schemaRecord(t); ok {
			for _, f := range rs.Fields() {
				fields[f.Name()] = true
			}
		}
	}
	var opts []expr.Option
	for _, n := range builtin.Names {
		if fields[n] {
			opts = append(opts, expr.DisableBuiltin(n))
		}
	}
	return opts
})

func schemaRecord(topic string) (*avro.RecordSchema, bool) {
	s, ok := schemas.ForTopic(topic)
	if !ok {
		return nil, false
	}
	rs, ok := s.(*avro.RecordSchema)
	return rs, ok
}

// rewriteShorthand turns `path=value` into an expr comparison; anything
// else is returned unchanged.
func rewriteShorthand(s string) string {
	m := shorthand.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	path, val := m[1], m[2]
	switch {
	case val == "":
		return path + ` == ""`
	case val == "true" || val == "false" || val == "nil":
		return path + " == " + val
	case isNumber(val):
		return path + " == " + val
	case strings.HasPrefix(val, `"`) || strings.HasPrefix(val, "'"):
		return path + " == " + val
	case bareWord.MatchString(val):
		return path + " == " + strconv.Quote(val)
	}
	return s
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// exprMessage renders an expr error on one line, with its column.
func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		return fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// Empty reports whether f matches every record.
func (f *Filter) Empty() bool {
	return f == nil || (len(f.keys) == 0 && len(f.headers) == 0 && len(f.wheres) == 0)
}

// NeedsValue reports whether f evaluates decoded values (--where).
func (f *Filter) NeedsValue() bool { return f != nil && len(f.wheres) > 0 }

// MatchMeta checks the key and header conditions.
func (f *Filter) MatchMeta(key []byte, headers func(yield func(k, v string) bool)) bool {
	if f == nil {
		return true
	}
	if len(f.keys) > 0 && !f.keys[string(key)] {
		return false
	}
	for hk, want := range f.headers {
		found := false
		for k, v := range headers {
			if k != hk {
				continue
			}
			for _, w := range want {
				if v == w {
					found = true
				}
			}
			if found {
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// MatchValue evaluates the --where expressions against env (the decoded
// value's fields plus the _key, _topic, _partition, _offset, _timestamp and
// _headers of the record). An expression that fails at run time (a missing
// field compared with a number, say) does not match; the first such error
// is returned for the caller to report once.
func (f *Filter) MatchValue(env map[string]any) (bool, error) {
	if f == nil {
		return true, nil
	}
	for _, w := range f.wheres {
		out, err := expr.Run(w.prog, env)
		if err != nil {
			return false, fmt.Errorf("--where %q: %s", w.src, exprMessage(err))
		}
		if ok, _ := out.(bool); !ok {
			return false, nil
		}
	}
	return true, nil
}

// metaFields are the record fields matchWhere adds beside the value's.
var metaFields = []string{"_key", "_topic", "_partition", "_offset", "_timestamp", "_headers", "_value"}

// CheckFields checks, before any record is read, that every field the
// --where expressions name exists in the schema of at least one of
// topicNames: a root field (metric), each step of a path into nested
// records (location.lat; map keys such as attrs.site are free), or one of
// the record fields (_key, _topic, ...). A name no schema has is an error
// naming it and the schemas' fields, wrapping ErrBadFilter, rather than a
// filter that silently matches nothing. Topics without a local schema are
// not checked (any field may be theirs).
func (f *Filter) CheckFields(topicNames []string) error {
	if f == nil || len(f.wheres) == 0 {
		return nil
	}
	var recs []*avro.RecordSchema
	for _, t := range topicNames {
		rs, ok := schemaRecord(t)
		if !ok {
			return nil
		}
		recs = append(recs, rs)
	}
	for _, w := range f.wheres {
		for _, path := range fieldPaths(w.prog.Node()) {
			if slices.Contains(metaFields, path[0]) {
				continue
			}
			if err := pathError(path, topicNames, recs); err != nil {
				return fmt.Errorf("%w: --where %q: %v", ErrBadFilter, w.src, err)
			}
		}
	}
	return nil
}

// pathError returns nil when some schema of recs has path, else why not,
// naming the fields where the path left the schema.
func pathError(path []string, topicNames []string, recs []*avro.RecordSchema) error {
	var why []string
	for i, rs := range recs {
		var s avro.Schema = rs
		for depth, name := range path {
			next, fields := member(s, name)
			if next == nil {
				where := topicNames[i]
				if depth > 0 {
					where += " field " + strings.Join(path[:depth], ".")
				}
				if fields == nil {
					why = append(why, fmt.Sprintf("%s is a %s, it has no field %q", where, s.Type(), name))
				} else {
					why = append(why, fmt.Sprintf("%s has no field %q (fields: %s)", where, name, strings.Join(fields, ", ")))
				}
				break
			}
			s = next
		}
		if len(why) == i { // the whole path resolved in this topic
			return nil
		}
	}
	return fmt.Errorf("%s; the record fields are %s", strings.Join(why, "; "), strings.Join(metaFields[:6], ", "))
}

// member returns the schema of field name of s: a record's field, any key
// of a map, through nullable unions. Without it, fields lists the record's
// fields (nil when s is no record).
func member(s avro.Schema, name string) (next avro.Schema, fields []string) {
	switch t := s.(type) {
	case *avro.UnionSchema:
		for _, u := range t.Types() {
			if u.Type() == avro.Null {
				continue
			}
			if next, fs := member(u, name); next != nil {
				return next, nil
			} else if fs != nil {
				fields = fs
			}
		}
		return nil, fields
	case *avro.MapSchema:
		return t.Values(), nil
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if f.Name() == name {
				return f.Type(), nil
			}
			fields = append(fields, f.Name())
		}
		return nil, fields
	}
	return nil, nil
}

// fieldPaths returns the field paths an expression reads from its
// environment: each identifier that is not a function, a `let` variable or
// $env, with the names of the member accesses that follow it (a.b.c).
func fieldPaths(node ast.Node) [][]string {
	// ast.Walk visits children before their parent: learn the functions
	// and variables first, then collect.
	names := &nameVisitor{skip: map[string]bool{}}
	ast.Walk(&node, names)
	paths := &pathVisitor{skip: names.skip}
	ast.Walk(&node, paths)
	return paths.paths
}

// nameVisitor finds the identifiers that are no fields: called functions
// and `let` variables.
type nameVisitor struct{ skip map[string]bool }

func (v *nameVisitor) Visit(n *ast.Node) {
	switch t := (*n).(type) {
	case *ast.VariableDeclaratorNode:
		v.skip[t.Name] = true
	case *ast.CallNode:
		if id, ok := t.Callee.(*ast.IdentifierNode); ok {
			v.skip[id.Value] = true
		}
	}
}

type pathVisitor struct {
	skip  map[string]bool
	paths [][]string
}

func (v *pathVisitor) Visit(n *ast.Node) {
	var path []string
	switch t := (*n).(type) {
	case *ast.MemberNode:
		path, _ = memberPath(t)
	case *ast.IdentifierNode:
		path = []string{t.Value}
	}
	if len(path) > 0 && !v.skip[path[0]] && !strings.HasPrefix(path[0], "$") {
		v.paths = append(v.paths, path)
	}
}

// memberPath turns a.b.c (or a["b"].c) into [a b c]; ok is false when the
// chain does not start at an identifier or a step is not a constant name.
func memberPath(m *ast.MemberNode) ([]string, bool) {
	prop, ok := m.Property.(*ast.StringNode)
	if !ok || m.Method {
		return nil, false
	}
	switch base := m.Node.(type) {
	case *ast.IdentifierNode:
		return []string{base.Value, prop.Value}, true
	case *ast.MemberNode:
		p, ok := memberPath(base)
		return append(p, prop.Value), ok
	}
	return nil, false
}
