package query

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMatch(t *testing.T) {
	ts := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	env := map[string]any{
		"metric": "temperature", "value": 39.7, "count": int64(3), "unit": nil, "ts": ts,
		"attrs": map[string]any{"site": "north"}, "tenant": "acme", "flag": true,
	}
	cases := []struct {
		src  string
		want bool
	}{
		{"value > 39.5", true},
		{"value < 4", false},
		{"metric = 'temperature' AND value > 39.5", true},
		{`metric == "temperature" && value > 40`, false},
		{"metric = 'x' OR count = 3", true},
		{"NOT value > 40", true},
		{"!(value > 39)", false},
		{"metric IN ('humidity', 'temperature')", true},
		{`metric in ["humidity"]`, false},
		{"metric NOT IN ('humidity')", true},
		{"value BETWEEN 39 AND 40", true},
		{"value NOT BETWEEN 39 AND 40", false},
		{"count BETWEEN 1 AND 3", true},
		{"unit IS NULL", true},
		{"unit IS NOT NULL", false},
		{"nosuch IS NULL", true},
		{"unit == nil", true},
		{"metric != nil", true},
		{"attrs.site = 'north'", true},
		{"attrs.nosuch = 'north'", false},
		{"nosuch > 1", false},
		{"NOT nosuch > 1", true},
		{"value * 2 - 1 > 78", true},
		{"count % 2 = 1", true},
		{"count / 2 = 1.5", true},
		{"-value < 0", true},
		{"abs(-2) = 2 AND abs(-2.5) = 2.5", true},
		{"round(value) = 40 AND round(value, 1) = 39.7", true},
		{"lower('ABC') = 'abc' AND upper(metric) = 'TEMPERATURE'", true},
		{"coalesce(unit, 'C') = 'C'", true},
		{"ts > '2026-05-01T11:00:00Z'", true},
		{"ts = '2026-05-01T12:00:00Z'", true},
		{"ts > ago('5m')", false},
		{"ts < ago('1h')", true},
		{"metric > 3", false},
		{"flag", true},
		{"flag = true AND NOT false", true},
		{"flag || nosuch", true},
		{"tenant || 'x'", false}, // a string is no condition
		{"1 = 1.0", true},
		{"'it''s' = \"it's\"", true},
		{"value > 39 -- a comment\n AND count = 3", true},
	}
	for _, c := range cases {
		e, err := Compile(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		got, err := e.Match(env)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if got != c.want {
			t.Errorf("%s = %v, want %v", c.src, got, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{"value >", "line 1, column 8: unexpected end of input"},
		{"(value > 1", "line 1, column 11: expected ), found end of input"},
		{"value > 1 1", `line 1, column 11: unexpected "1" after the expression`},
		{"", "empty expression"},
		{"metric = 'x", "line 1, column 10: unterminated string"},
		{"value\n  > # 3", `line 2, column 5: unexpected character '#'`},
		{"sqrt(value) > 1", "unknown function sqrt (functions: abs, ago, coalesce, lower, round, upper)"},
		{"abs(1, 2) > 1", "abs takes 1 argument(s), got 2"},
		{"metric IN 'x'", "expected ( or [ after IN"},
		{"value BETWEEN 1 OR 2", `expected AND, found "OR"`},
		{"unit IS 3", "expected NULL after IS"},
	}
	for _, c := range cases {
		_, err := Compile(c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: err %v, want %q wrapping ErrSyntax", c.src, err, c.want)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	e, err := Compile("metric * 2 > 1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Match(map[string]any{"metric": "x"})
	var ee *EvalError
	if !errors.As(err, &ee) || ee.Pos != (Pos{1, 8}) || !strings.Contains(err.Error(), "string * integer: not numbers") {
		t.Fatalf("err %v", err)
	}
	if _, err := Compile("abs(metric)"); err != nil {
		t.Fatal(err)
	}
}

func TestFields(t *testing.T) {
	e, err := Compile("a > 1 AND b.c IN (d, 2) OR coalesce(a, e.f) IS NULL AND g BETWEEN h AND 3")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a"}, {"b", "c"}, {"d"}, {"e", "f"}, {"g"}, {"h"}}
	if got := e.Fields(); !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
}

func TestParseSelect(t *testing.T) {
	s, err := ParseSelect("SELECT *, value * 9 / 5 + 32 AS fahrenheit, attrs.site\nFROM sensors\nWHERE metric = 'temperature' AND value < 4")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Items) != 3 || !s.Items[0].Star || s.Items[1].Name != "fahrenheit" || s.Items[2].Name != "site" {
		t.Fatalf("items %+v", s.Items)
	}
	if s.From != "sensors" || s.FromPos != (Pos{2, 6}) {
		t.Fatalf("from %q at %v", s.From, s.FromPos)
	}
	if s.Where.String() != "metric = 'temperature' AND value < 4" {
		t.Fatalf("where %q", s.Where)
	}
	v, err := s.Items[1].Expr.Eval(map[string]any{"value": 100.0})
	if err != nil || v != 212.0 {
		t.Fatalf("fahrenheit = %v, %v", v, err)
	}
	for src, from := range map[string]string{"SELECT * FROM * WHERE result < 4": "*", "SELECT a FROM raw.sensor": "raw.sensor"} {
		if s, err := ParseSelect(src); err != nil || s.From != from {
			t.Fatalf("%s: from %v, %v", src, s, err)
		}
	}
	g, err := ParseSelect("SELECT device_id FROM s GROUP BY device, TUMBLE(1m)")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.GroupBy) != 2 || g.GroupBy[0].Path[0] != "device" || g.GroupBy[1].Func != "tumble" || g.GroupBy[1].Args[0] != "1m" {
		t.Fatalf("group by %+v", g.GroupBy)
	}
	for _, c := range []struct{ src, want string }{
		{"SELECT FROM s", `line 1, column 8: unexpected "FROM"`},
		{"SELECT value + 1 FROM s", "line 1, column 8: the expression value + 1 needs a name: add AS name"},
		{"SELECT a, b.a FROM s", "line 1, column 11: duplicate output name a"},
		{"SELECT a FROM", "line 1, column 14: expected a source name or * after FROM"},
		{"SELECT a FROM s WHERE", "line 1, column 22: unexpected end of input"},
		{"SELECT a\nFROM s\nWHERE a >> 1", "line 3, column 10: unexpected \">\""},
		{"a FROM s", `line 1, column 1: expected SELECT, found "a"`},
		{"SELECT a FROM s LIMIT 3", `line 1, column 17: unexpected "LIMIT"`},
	} {
		_, err := ParseSelect(c.src)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want %q", c.src, err, c.want)
		}
	}
}
