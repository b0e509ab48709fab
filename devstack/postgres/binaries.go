package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrBinaryNotFound is wrapped by the error Start returns when initdb or
// postgres cannot be found.
var ErrBinaryNotFound = errors.New("postgresql binaries not found")

// debianBinGlob is where Debian and Ubuntu install the server binaries.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// binaries are the server programs Start needs.
type binaries struct {
	initdb   string
	postgres string
}

// findBinaries looks for initdb and postgres. With binDir set, only there;
// otherwise on PATH first, then under /usr/lib/postgresql/*/bin, highest
// major version first. Both programs come from the same directory.
func findBinaries(binDir string) (binaries, error) {
	var dirs []string
	where := binDir
	if binDir != "" {
		dirs = []string{binDir}
	} else {
		where = "PATH and " + debianBinGlob
		if p, err := exec.LookPath("initdb"); err == nil {
			dirs = append(dirs, filepath.Dir(p))
		}
		dirs = append(dirs, debianBinDirs()...)
	}
	for _, d := range dirs {
		b := binaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("%w: looked for initdb and postgres in %s (install them with: apt-get install -y postgresql)", ErrBinaryNotFound, where)
}

// debianBinDirs lists /usr/lib/postgresql/<version>/bin, highest version first.
func debianBinDirs() []string {
	dirs, _ := filepath.Glob(debianBinGlob)
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// tailBuffer keeps the last max bytes written to it. It is not safe for
// concurrent use: Cluster guards it with tailMu.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) write(p []byte) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

// lastLines returns at most n trailing lines, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
