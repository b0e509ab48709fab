package query

import (
	"slices"
	"strings"
)

// Expr is a compiled expression (a WHERE condition or a --where filter).
type Expr struct {
	src  string
	root node
}

// Compile parses an expression. Errors are *Error (line and column within
// src) and wrap ErrSyntax.
func Compile(src string) (*Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if p.peek().kind == tEOF {
		return nil, p.errAt(p.peek(), "empty expression")
	}
	root, err := p.expr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s after the expression", t)
	}
	return &Expr{src: src, root: root}, nil
}

// String returns the source text.
func (e *Expr) String() string { return e.src }

// Eval evaluates e against env, a decoded record (nested records and maps
// as map[string]any). A missing field is null.
func (e *Expr) Eval(env map[string]any) (any, error) { return e.root.eval(env) }

// Match evaluates e as a condition: true only for a boolean true, so a
// comparison with a null or missing field does not match.
func (e *Expr) Match(env map[string]any) (bool, error) {
	v, err := e.root.eval(env)
	return truth(v), err
}

// Fields returns the field paths e reads (a.b.c as [a b c]), in order of
// appearance, without duplicates.
func (e *Expr) Fields() [][]string {
	var out [][]string
	for _, r := range e.FieldRefs() {
		if !slices.ContainsFunc(out, func(p []string) bool { return slices.Equal(p, r.Path) }) {
			out = append(out, r.Path)
		}
	}
	return out
}

// FieldRef is one use of a field in an expression.
type FieldRef struct {
	Path []string
	Pos  Pos
}

// FieldRefs returns every use of a field, in order of appearance.
func (e *Expr) FieldRefs() []FieldRef { return fieldsOf(e.root, nil) }

func fieldsOf(n node, acc []FieldRef) []FieldRef {
	add := func(ns ...node) {
		for _, x := range ns {
			acc = fieldsOf(x, acc)
		}
	}
	switch t := n.(type) {
	case *field:
		acc = append(acc, FieldRef{t.path, t.at})
	case *unary:
		add(t.x)
	case *binary:
		add(t.l, t.r)
	case *inList:
		add(t.x)
		add(t.items...)
	case *between:
		add(t.x, t.lo, t.hi)
	case *isNull:
		add(t.x)
	case *call:
		add(t.args...)
	}
	return acc
}

// Select is a parsed SELECT statement:
//
//	SELECT item [, item ...] FROM alias [WHERE condition]
//	  [GROUP BY device, TUMBLE(duration)]
//
// where an item is * or an expression with an optional AS name (a field
// keeps its last path element as its name; any other expression needs AS).
type Select struct {
	Items []Item
	// From is the source named after FROM: an alias, a topic name
	// (raw.sensor) or * (every source).
	From string
	// FromPos is where the FROM alias is, for errors naming it.
	FromPos Pos
	// Where is nil when the statement has no WHERE clause.
	Where *Expr
	// GroupBy holds the GROUP BY items as written (nil without GROUP BY).
	GroupBy []GroupItem
}

// Item is one output column of a Select.
type Item struct {
	Star bool
	Name string
	Expr *Expr
	Pos  Pos
}

// GroupItem is one GROUP BY item: a field path (Path) or a function call
// such as TUMBLE(1m) (Func with its literal Args).
type GroupItem struct {
	Path []string
	Func string
	Args []string
	Pos  Pos
}

// ParseSelect parses a SELECT statement. Errors are *Error.
func ParseSelect(src string) (*Select, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	if _, err := p.expect("SELECT"); err != nil {
		return nil, err
	}
	s := &Select{}
	for {
		it, err := p.item(src)
		if err != nil {
			return nil, err
		}
		for _, prev := range s.Items {
			if !it.Star && !prev.Star && prev.Name == it.Name {
				return nil, &Error{it.Pos, "duplicate output name " + it.Name + " (rename one with AS)"}
			}
		}
		s.Items = append(s.Items, it)
		if !p.is(",") {
			break
		}
		p.next()
	}
	if _, err := p.expect("FROM"); err != nil {
		return nil, err
	}
	from := p.next()
	switch {
	case from.kind == tOp && from.text == "*":
	case from.kind == tIdent:
		for p.is(".") { // a topic name: raw.sensor
			p.next()
			n := p.next()
			if n.kind != tIdent && n.kind != tKeyword {
				return nil, p.errAt(n, "expected a name after '.', found %s", n)
			}
			from.text += "." + strings.ToLower(n.text)
		}
	default:
		return nil, p.errAt(from, "expected a source name or * after FROM, found %s", from)
	}
	s.From, s.FromPos = from.text, from.pos
	if p.is("WHERE") {
		p.next()
		start := p.peek()
		root, err := p.expr()
		if err != nil {
			return nil, err
		}
		s.Where = &Expr{src: slice(src, start.pos, p.peek().pos), root: root}
	}
	if p.is("GROUP") {
		p.next()
		if _, err := p.expect("BY"); err != nil {
			return nil, err
		}
		if s.GroupBy, err = p.groupBy(); err != nil {
			return nil, err
		}
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s", t)
	}
	return s, nil
}

func (p *parser) item(src string) (Item, error) {
	start := p.peek()
	if p.is("*") {
		p.next()
		return Item{Star: true, Pos: start.pos}, nil
	}
	root, err := p.expr()
	if err != nil {
		return Item{}, err
	}
	it := Item{Expr: &Expr{src: slice(src, start.pos, p.peek().pos), root: root}, Pos: start.pos}
	if p.is("AS") {
		p.next()
		name := p.next()
		if name.kind != tIdent {
			return Item{}, p.errAt(name, "expected a name after AS, found %s", name)
		}
		it.Name = name.text
		return it, nil
	}
	f, ok := root.(*field)
	if !ok {
		return Item{}, &Error{start.pos, "the expression " + strings.TrimSpace(it.Expr.src) + " needs a name: add AS name"}
	}
	it.Name = f.path[len(f.path)-1]
	return it, nil
}

func (p *parser) groupBy() ([]GroupItem, error) {
	var out []GroupItem
	for {
		t := p.next()
		if t.kind != tIdent {
			return nil, p.errAt(t, "expected a field or TUMBLE(size) in GROUP BY, found %s", t)
		}
		g := GroupItem{Pos: t.pos}
		if p.is("(") {
			p.next()
			g.Func = strings.ToLower(t.text)
			for !p.is(")") {
				a := p.next()
				if a.kind == tEOF {
					return nil, p.errAt(a, "expected ) after %s(", t.text)
				}
				arg := a.text
				// a duration such as 1m lexes as number 1 then ident m
				if a.kind == tNumber && p.peek().kind == tIdent && p.peek().pos.Col == a.pos.Col+len(a.text) {
					arg += p.next().text
				}
				g.Args = append(g.Args, arg)
				if p.is(",") {
					p.next()
				}
			}
			p.next()
		} else {
			g.Path = []string{t.text}
		}
		out = append(out, g)
		if !p.is(",") {
			return out, nil
		}
		p.next()
	}
}

// slice returns src between two positions.
func slice(src string, from, to Pos) string {
	off := func(p Pos) int {
		line, col := 1, 1
		for i, r := range []rune(src) {
			if line == p.Line && col == p.Col {
				return i
			}
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		return len([]rune(src))
	}
	rs := []rune(src)
	return strings.TrimSpace(string(rs[off(from):off(to)]))
}
