package inspect

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/query"
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
	expr *query.Expr
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
// one of its given values); wheres are conditions in drover's query
// language (package query, the WHERE grammar of stream apps) evaluated
// against the decoded value, each compiled once. `path=value` with a single
// '=' and a bare word is shorthand for `path = 'value'`. Errors name the
// flag, the column, and wrap ErrBadFilter.
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
		e, err := query.Compile(rewriteShorthand(w))
		if err != nil {
			return nil, fmt.Errorf("%w: --where %q: %v", ErrBadFilter, w, err)
		}
		f.wheres = append(f.wheres, where{src: w, expr: e})
	}
	return f, nil
}

func schemaRecord(topic string) (*avro.RecordSchema, bool) {
	s, ok := schemas.ForTopic(topic)
	if !ok {
		return nil, false
	}
	rs, ok := s.(*avro.RecordSchema)
	return rs, ok
}

// rewriteShorthand turns `path=value` with a bare word into a string
// comparison; anything else is returned unchanged.
func rewriteShorthand(s string) string {
	m := shorthand.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	path, val := m[1], m[2]
	switch {
	case val == "":
		return path + ` = ""`
	case val == "true" || val == "false" || val == "nil" || strings.EqualFold(val, "null"):
		return path + " = " + val
	case isNumber(val):
		return path + " = " + val
	case strings.HasPrefix(val, `"`) || strings.HasPrefix(val, "'"):
		return path + " = " + val
	case bareWord.MatchString(val):
		return path + " = " + strconv.Quote(val)
	}
	return s
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
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
		ok, err := w.expr.Match(env)
		if err != nil {
			return false, fmt.Errorf("--where %q: %v", w.src, err)
		}
		if !ok {
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
		for _, path := range w.expr.Fields() {
			if slices.Contains(metaFields, path[0]) {
				continue
			}
			if err := query.CheckPath(path, topicNames, recs); err != nil {
				return fmt.Errorf("%w: --where %q: %v; the record fields are %s", ErrBadFilter, w.src, err, strings.Join(metaFields[:6], ", "))
			}
		}
	}
	return nil
}
