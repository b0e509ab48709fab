package apps

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFiles checks every testdata/*.bad.yaml against its pair
// testdata/*.bad.err: the error must contain that text (one line).
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".err")
			if err != nil {
				t.Fatalf("every bad file needs its expected error: %v", err)
			}
			_, err = Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if !errors.Is(err, ErrBadApps) {
				t.Errorf("error does not wrap ErrBadApps: %v", err)
			}
			if w := strings.TrimSpace(string(want)); !strings.Contains(err.Error(), w) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, w)
			}
		})
	}
}

func TestExample(t *testing.T) {
	as, err := Example()
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Name != "hot-readings" || as[1].Share == nil || as[1].Share.Agreement != "AGR-demo-vet-1" {
		t.Fatalf("example apps: %+v", as)
	}
	if as[0].Group() != "app-hot-readings" || as[1].OwnerTenant("demo") != "vet" || as[0].OwnerTenant("demo") != "demo" {
		t.Fatalf("group %s, owners %s %s", as[0].Group(), as[1].OwnerTenant("demo"), as[0].OwnerTenant("demo"))
	}
}
