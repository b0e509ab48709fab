package query

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Values: nil, bool, int64, float64, string, time.Time, map[string]any,
// []any; other integer and float types are widened on the way in.

func (n *lit) eval(map[string]any) (any, error) { return n.v, nil }

func (n *field) eval(env map[string]any) (any, error) {
	var v any = env
	for _, name := range n.path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, nil
		}
		if v, ok = m[name]; !ok {
			return nil, nil
		}
	}
	return norm(v), nil
}

// norm widens numbers to int64 or float64 and strings-like values to string.
func norm(v any) any {
	switch t := v.(type) {
	case int:
		return int64(t)
	case int32:
		return int64(t)
	case int16:
		return int64(t)
	case int8:
		return int64(t)
	case uint32:
		return int64(t)
	case uint16:
		return int64(t)
	case uint8:
		return int64(t)
	case float32:
		return float64(t)
	case *string:
		if t == nil {
			return nil
		}
		return *t
	case map[string]string:
		m := make(map[string]any, len(t))
		for k, s := range t {
			m[k] = s
		}
		return m
	}
	return v
}

func (n *unary) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	if n.op == "NOT" {
		return !truth(x), nil
	}
	switch t := x.(type) {
	case nil:
		return nil, nil
	case int64:
		return -t, nil
	case float64:
		return -t, nil
	}
	return nil, &EvalError{n.at, fmt.Sprintf("cannot negate %s", typeName(x))}
}

// EvalError is a run-time error of an expression (arithmetic on a string,
// say), at the position of the failing operator or function.
type EvalError struct {
	Pos Pos
	Msg string
}

func (e *EvalError) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

func truth(v any) bool { b, _ := v.(bool); return b }

func (n *binary) eval(env map[string]any) (any, error) {
	l, err := n.l.eval(env)
	if err != nil {
		return nil, err
	}
	switch n.op { // short circuit
	case "AND":
		if !truth(l) {
			return false, nil
		}
		r, err := n.r.eval(env)
		return truth(r), err
	case "OR":
		if truth(l) {
			return true, nil
		}
		r, err := n.r.eval(env)
		return truth(r), err
	}
	r, err := n.r.eval(env)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "=":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "<", "<=", ">", ">=":
		c, ok := compare(l, r)
		if !ok {
			return false, nil
		}
		switch n.op {
		case "<":
			return c < 0, nil
		case "<=":
			return c <= 0, nil
		case ">":
			return c > 0, nil
		}
		return c >= 0, nil
	}
	return n.arith(l, r)
}

func (n *binary) arith(l, r any) (any, error) {
	if l == nil || r == nil {
		return nil, nil
	}
	if n.op == "+" {
		if ls, ok := l.(string); ok {
			if rs, ok := r.(string); ok {
				return ls + rs, nil
			}
		}
	}
	li, lInt := l.(int64)
	ri, rInt := r.(int64)
	if lInt && rInt && n.op != "/" {
		switch n.op {
		case "+":
			return li + ri, nil
		case "-":
			return li - ri, nil
		case "*":
			return li * ri, nil
		case "%":
			if ri == 0 {
				return nil, &EvalError{n.at, "modulo by zero"}
			}
			return li % ri, nil
		}
	}
	lf, ok1 := number(l)
	rf, ok2 := number(r)
	if !ok1 || !ok2 {
		return nil, &EvalError{n.at, fmt.Sprintf("%s %s %s: not numbers", typeName(l), n.op, typeName(r))}
	}
	switch n.op {
	case "+":
		return lf + rf, nil
	case "-":
		return lf - rf, nil
	case "*":
		return lf * rf, nil
	case "/":
		if rf == 0 {
			return nil, nil // SQL: division by zero is an error; a stream keeps going with NULL
		}
		return lf / rf, nil
	}
	return math.Mod(lf, rf), nil
}

func number(v any) (float64, bool) {
	switch t := v.(type) {
	case int64:
		return float64(t), true
	case float64:
		return t, true
	}
	return 0, false
}

// equal is equality with numbers compared by value, times with times (or
// RFC 3339 strings), and null equal only to null.
func equal(l, r any) bool {
	if l == nil || r == nil {
		return l == nil && r == nil
	}
	if c, ok := compare(l, r); ok {
		return c == 0
	}
	lb, ok1 := l.(bool)
	rb, ok2 := r.(bool)
	return ok1 && ok2 && lb == rb
}

// compare orders two values of the same kind; ok is false for null or
// mismatched kinds.
func compare(l, r any) (int, bool) {
	if lf, ok := number(l); ok {
		if rf, ok := number(r); ok {
			switch {
			case lf < rf:
				return -1, true
			case lf > rf:
				return 1, true
			}
			return 0, true
		}
		return 0, false
	}
	switch lt := l.(type) {
	case string:
		if rt, ok := r.(string); ok {
			return strings.Compare(lt, rt), true
		}
		if rt, ok := r.(time.Time); ok {
			if t, err := time.Parse(time.RFC3339Nano, lt); err == nil {
				return t.Compare(rt), true
			}
		}
	case time.Time:
		switch rt := r.(type) {
		case time.Time:
			return lt.Compare(rt), true
		case string:
			if t, err := time.Parse(time.RFC3339Nano, rt); err == nil {
				return lt.Compare(t), true
			}
		}
	}
	return 0, false
}

func (n *inList) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	found := false
	for _, it := range n.items {
		v, err := it.eval(env)
		if err != nil {
			return nil, err
		}
		if x != nil && equal(x, v) {
			found = true
			break
		}
	}
	if x == nil {
		return false, nil
	}
	return found != n.not, nil
}

func (n *between) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	lo, err := n.lo.eval(env)
	if err != nil {
		return nil, err
	}
	hi, err := n.hi.eval(env)
	if err != nil {
		return nil, err
	}
	a, ok1 := compare(x, lo)
	b, ok2 := compare(x, hi)
	if !ok1 || !ok2 {
		return false, nil
	}
	return (a >= 0 && b <= 0) != n.not, nil
}

func (n *isNull) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	return (x == nil) != n.not, nil
}

func (n *call) eval(env map[string]any) (any, error) {
	args := make([]any, len(n.args))
	for i, a := range n.args {
		v, err := a.eval(env)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	v, err := functions[n.name].fn(args)
	if err != nil {
		return nil, &EvalError{n.at, n.name + ": " + err.Error()}
	}
	return v, nil
}

type function struct {
	min, max int // max -1 = any
	fn       func(args []any) (any, error)
}

func (f function) arity() string {
	switch {
	case f.max < 0:
		return fmt.Sprintf("at least %d arguments", f.min)
	case f.min == f.max:
		return fmt.Sprintf("%d argument(s)", f.min)
	}
	return fmt.Sprintf("%d to %d arguments", f.min, f.max)
}

var functions = map[string]function{
	"abs": {1, 1, func(a []any) (any, error) {
		switch t := a[0].(type) {
		case nil:
			return nil, nil
		case int64:
			if t < 0 {
				return -t, nil
			}
			return t, nil
		case float64:
			return math.Abs(t), nil
		}
		return nil, fmt.Errorf("wants a number, got %s", typeName(a[0]))
	}},
	"round": {1, 2, func(a []any) (any, error) {
		if a[0] == nil {
			return nil, nil
		}
		f, ok := number(a[0])
		if !ok {
			return nil, fmt.Errorf("wants a number, got %s", typeName(a[0]))
		}
		digits := int64(0)
		if len(a) == 2 {
			d, ok := a[1].(int64)
			if !ok {
				return nil, fmt.Errorf("wants whole digits, got %s", typeName(a[1]))
			}
			digits = d
		}
		p := math.Pow(10, float64(digits))
		return math.Round(f*p) / p, nil
	}},
	"lower": {1, 1, strFunc(strings.ToLower)},
	"upper": {1, 1, strFunc(strings.ToUpper)},
	"ago": {1, 1, func(a []any) (any, error) {
		s, ok := a[0].(string)
		if !ok {
			return nil, fmt.Errorf("wants a duration such as '5m', got %s", typeName(a[0]))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, err
		}
		return time.Now().Add(-d), nil
	}},
	"coalesce": {1, -1, func(a []any) (any, error) {
		for _, v := range a {
			if v != nil {
				return v, nil
			}
		}
		return nil, nil
	}},
}

func strFunc(f func(string) string) func([]any) (any, error) {
	return func(a []any) (any, error) {
		switch t := a[0].(type) {
		case nil:
			return nil, nil
		case string:
			return f(t), nil
		}
		return nil, fmt.Errorf("wants a string, got %s", typeName(a[0]))
	}
}

func functionNames() []string {
	var out []string
	for n := range functions {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "number"
	case string:
		return "string"
	case time.Time:
		return "timestamp"
	case map[string]any:
		return "record"
	}
	return fmt.Sprintf("%T", v)
}
