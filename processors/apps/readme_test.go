package apps

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeApps parses every YAML block of the README's stream apps
// section as an apps file (a block of list items under "apps:"), so the
// documented apps stay valid.
func TestReadmeApps(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## Stream apps")
	if start < 0 {
		t.Fatal("README has no Stream apps section")
	}
	s = s[start+1:]
	if end := strings.Index(s, "\n## "); end > 0 {
		s = s[:end]
	}
	n := 0
	for {
		i := strings.Index(s, "```yaml\n")
		if i < 0 {
			break
		}
		s = s[i+len("```yaml\n"):]
		j := strings.Index(s, "```")
		block := s[:j]
		s = s[j+3:]
		if !strings.HasPrefix(block, "apps:") {
			block = "apps:\n" + block
		}
		if _, err := Parse("README.md", []byte(block)); err != nil {
			t.Errorf("README apps block %d:\n%s\n%v", n+1, block, err)
		}
		n++
	}
	if n < 4 {
		t.Fatalf("%d YAML blocks in the Stream apps section, want at least 4", n)
	}
}
