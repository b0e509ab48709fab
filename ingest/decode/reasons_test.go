package decode

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"testing"
)

// TestReasonsListsEveryReason parses errors.go and checks that Reasons
// returns every Reason constant it declares, so the README table and the
// simulator's catalogue, which are checked against Reasons, miss none.
func TestReasonsListsEveryReason(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					continue
				}
				r, _ := strconv.Unquote(lit.Value)
				declared++
				if !slices.Contains(Reasons(), Reason(r)) {
					t.Errorf("Reasons() lacks %s", r)
				}
			}
		}
	}
	if declared != len(Reasons()) {
		t.Errorf("errors.go declares %d reasons, Reasons() returns %d", declared, len(Reasons()))
	}
}
