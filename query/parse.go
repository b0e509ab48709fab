package query

import (
	"fmt"
	"strconv"
	"strings"
)

// node is one expression in the syntax tree.
type node interface {
	pos() Pos
	eval(env map[string]any) (any, error)
}

type (
	lit struct {
		at Pos
		v  any
	}
	field struct {
		at   Pos
		path []string
	}
	unary struct {
		at Pos
		op string // "NOT" or "-"
		x  node
	}
	binary struct {
		at   Pos
		op   string // AND OR = != < <= > >= + - * / %
		l, r node
	}
	inList struct {
		at    Pos
		x     node
		items []node
		not   bool
	}
	between struct {
		at        Pos
		x, lo, hi node
		not       bool
	}
	isNull struct {
		at  Pos
		x   node
		not bool
	}
	call struct {
		at   Pos
		name string
		args []node
	}
)

func (n *lit) pos() Pos     { return n.at }
func (n *field) pos() Pos   { return n.at }
func (n *unary) pos() Pos   { return n.at }
func (n *binary) pos() Pos  { return n.at }
func (n *inList) pos() Pos  { return n.at }
func (n *between) pos() Pos { return n.at }
func (n *isNull) pos() Pos  { return n.at }
func (n *call) pos() Pos    { return n.at }

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) error {
	return &Error{t.pos, fmt.Sprintf(format, args...)}
}

// is reports whether the next token is the keyword or operator s.
func (p *parser) is(s ...string) bool {
	t := p.peek()
	if t.kind != tKeyword && t.kind != tOp {
		return false
	}
	for _, x := range s {
		if t.text == x {
			return true
		}
	}
	return false
}

func (p *parser) expect(s string) (token, error) {
	if !p.is(s) {
		return token{}, p.errAt(p.peek(), "expected %s, found %s", s, p.peek())
	}
	return p.next(), nil
}

func (p *parser) expr() (node, error) { return p.or() }

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.is("OR", "||") {
		t := p.next()
		var r node
		if r, err = p.and(); err == nil {
			l = &binary{t.pos, "OR", l, r}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.is("AND", "&&") {
		t := p.next()
		var r node
		if r, err = p.not(); err == nil {
			l = &binary{t.pos, "AND", l, r}
		}
	}
	return l, err
}

func (p *parser) not() (node, error) {
	if p.is("NOT", "!") {
		t := p.next()
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &unary{t.pos, "NOT", x}, nil
	}
	return p.cmp()
}

var cmpOps = map[string]string{"=": "=", "==": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

func (p *parser) cmp() (node, error) {
	l, err := p.add()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if op, ok := cmpOps[t.text]; ok && t.kind == tOp {
		p.next()
		r, err := p.add()
		if err != nil {
			return nil, err
		}
		return &binary{t.pos, op, l, r}, nil
	}
	not := false
	if p.is("NOT") && p.i+1 < len(p.toks) && (p.toks[p.i+1].text == "IN" || p.toks[p.i+1].text == "BETWEEN") && p.toks[p.i+1].kind == tKeyword {
		p.next()
		not = true
		t = p.peek()
	}
	switch {
	case p.is("IN"):
		p.next()
		items, err := p.list()
		if err != nil {
			return nil, err
		}
		return &inList{t.pos, l, items, not}, nil
	case p.is("BETWEEN"):
		p.next()
		lo, err := p.add()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("AND"); err != nil {
			return nil, err
		}
		hi, err := p.add()
		if err != nil {
			return nil, err
		}
		return &between{t.pos, l, lo, hi, not}, nil
	case p.is("IS"):
		p.next()
		n := p.is("NOT")
		if n {
			p.next()
		}
		if !p.is("NULL", "NIL") {
			return nil, p.errAt(p.peek(), "expected NULL after IS, found %s", p.peek())
		}
		p.next()
		return &isNull{t.pos, l, n}, nil
	}
	return l, nil
}

// list parses (a, b, ...) or [a, b, ...].
func (p *parser) list() ([]node, error) {
	open := p.peek()
	closer := ")"
	switch {
	case p.is("("):
	case p.is("["):
		closer = "]"
	default:
		return nil, p.errAt(open, "expected ( or [ after IN, found %s", open)
	}
	p.next()
	var items []node
	for !p.is(closer) {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		items = append(items, x)
		if !p.is(",") {
			break
		}
		p.next()
	}
	if _, err := p.expect(closer); err != nil {
		return nil, err
	}
	return items, nil
}

func (p *parser) add() (node, error) {
	l, err := p.mul()
	for err == nil && p.is("+", "-") {
		t := p.next()
		var r node
		if r, err = p.mul(); err == nil {
			l = &binary{t.pos, t.text, l, r}
		}
	}
	return l, err
}

func (p *parser) mul() (node, error) {
	l, err := p.unary()
	for err == nil && p.is("*", "/", "%") {
		t := p.next()
		var r node
		if r, err = p.unary(); err == nil {
			l = &binary{t.pos, t.text, l, r}
		}
	}
	return l, err
}

func (p *parser) unary() (node, error) {
	if p.is("-") {
		t := p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unary{t.pos, "-", x}, nil
	}
	return p.primary()
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tNumber:
		s := strings.ReplaceAll(t.text, "_", "")
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return &lit{t.pos, n}, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, p.errAt(t, "bad number %q", t.text)
		}
		return &lit{t.pos, f}, nil
	case tString:
		return &lit{t.pos, t.text}, nil
	case tKeyword:
		switch t.text {
		case "TRUE":
			return &lit{t.pos, true}, nil
		case "FALSE":
			return &lit{t.pos, false}, nil
		case "NULL", "NIL":
			return &lit{t.pos, nil}, nil
		}
	case tIdent:
		if p.is("(") {
			return p.call(t)
		}
		path := []string{t.text}
		for p.is(".") {
			p.next()
			n := p.next()
			if n.kind != tIdent && n.kind != tKeyword {
				return nil, p.errAt(n, "expected a field name after '.', found %s", n)
			}
			if n.kind == tKeyword {
				n.text = strings.ToLower(n.text)
			}
			path = append(path, n.text)
		}
		return &field{t.pos, path}, nil
	case tOp:
		if t.text == "(" {
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(")"); err != nil {
				return nil, err
			}
			return x, nil
		}
	}
	return nil, p.errAt(t, "unexpected %s", t)
}

func (p *parser) call(name token) (node, error) {
	f, ok := functions[strings.ToLower(name.text)]
	if !ok {
		return nil, p.errAt(name, "unknown function %s (functions: %s)", name.text, strings.Join(functionNames(), ", "))
	}
	p.next() // (
	var args []node
	for !p.is(")") {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		args = append(args, x)
		if !p.is(",") {
			break
		}
		p.next()
	}
	if _, err := p.expect(")"); err != nil {
		return nil, err
	}
	if len(args) < f.min || f.max >= 0 && len(args) > f.max {
		return nil, p.errAt(name, "%s takes %s, got %d", strings.ToLower(name.text), f.arity(), len(args))
	}
	return &call{name.pos, strings.ToLower(name.text), args}, nil
}
