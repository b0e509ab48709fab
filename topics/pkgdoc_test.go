package topics

import (
	goparser "go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestPackageDoc checks that exactly one file carries the package doc
// comment (after Tailscale's pkgdoc_test.go).
func TestPackageDoc(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var withDoc []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(token.NewFileSet(), name, nil, goparser.PackageClauseOnly|goparser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			withDoc = append(withDoc, name)
		}
	}
	if len(withDoc) != 1 || withDoc[0] != "doc.go" {
		t.Errorf("files with a package doc comment: %v, want exactly [doc.go]", withDoc)
	}
}
