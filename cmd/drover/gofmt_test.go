package main

import (
	"bytes"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGofmt fails when a tracked Go file is not gofmt-formatted: merges of
// parallel branches left files with imports out of order that no compiler
// complains about.
func TestGofmt(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "*.go").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var bad []string
	for _, name := range strings.Fields(string(out)) {
		src, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the working tree
			}
			t.Fatal(err)
		}
		got, err := format.Source(src)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, src) {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("not gofmt-formatted (run make fmt): %s", strings.Join(bad, " "))
	}
}
