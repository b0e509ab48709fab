package inspect

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
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
