package devtest

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildDrover builds the drover binary (./cmd/drover of this module) into
// dir and returns its path, for tests that run drover as a subprocess
// (call it from TestMain, or once per test process). The error carries the
// compiler's output.
func BuildDrover(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("building drover: go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, "drover")
	build := exec.Command("go", "build", "-o", bin, "./cmd/drover")
	build.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building drover: %v\n%s", err, out)
	}
	return bin, nil
}
