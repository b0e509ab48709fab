package compose

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testVersion is stamped into the test binary through the Dockerfile's
// -ldflags, so TestDockerfileBuildsTheSameBinary can see it arrive.
const testVersion = "compose-test"

var (
	tmpRoot   string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "drover-compose-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is the repository root (this package's parent directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	abs, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// buildCommand is a `go build` command line split into its parts, with the
// version and output path replaced by placeholders so that the Makefile's and
// the Dockerfile's spellings compare equal.
type buildCommand struct {
	Env     []string // e.g. CGO_ENABLED=0
	Flags   []string // flags other than -ldflags and -o
	LDFlags string
	Package string
}

func (b buildCommand) String() string {
	return fmt.Sprintf("env=%v flags=%v ldflags=%q package=%s", b.Env, b.Flags, b.LDFlags, b.Package)
}

// shellFields splits a command line like sh does for the simple cases used in
// Dockerfiles and Makefiles: blanks separate words, single and double quotes
// group them.
func shellFields(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		out = append(out, cur.String())
	}
	return out, nil
}

// parseBuild parses the words of one `[ENV=V ...] go build ...` command.
// goWord is how the command spells the go tool; versionRef and outRef are the
// spellings of the version and output path, replaced by placeholders.
func parseBuild(words []string, goWord, versionRef string) (buildCommand, error) {
	var b buildCommand
	i := 0
	for ; i < len(words) && strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-"); i++ {
		b.Env = append(b.Env, words[i])
	}
	if i+1 >= len(words) || words[i] != goWord || words[i+1] != "build" {
		return b, fmt.Errorf("not a %s build command: %q", goWord, strings.Join(words, " "))
	}
	for i += 2; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-ldflags":
			if i+1 == len(words) {
				return b, fmt.Errorf("-ldflags without a value")
			}
			i++
			b.LDFlags = strings.ReplaceAll(words[i], versionRef, "VERSION")
		case w == "-o":
			i++ // the output path differs by design
		case strings.HasPrefix(w, "-"):
			b.Flags = append(b.Flags, w)
		default:
			if b.Package != "" {
				return b, fmt.Errorf("two packages: %s and %s", b.Package, w)
			}
			b.Package = w
		}
	}
	return b, nil
}

// dockerfileBuild returns the Dockerfile's `go build` command.
func dockerfileBuild(t testing.TB) buildCommand {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			found = append(found, strings.TrimPrefix(line, "RUN "))
		}
	}
	if len(found) != 1 {
		t.Fatalf("Dockerfile: want exactly one RUN ... go build line, found %d", len(found))
	}
	words, err := shellFields(found[0])
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	b, err := parseBuild(words, "go", "${VERSION}")
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	return b
}

// makefileBuild returns the Makefile's build target command, its variables
// expanded ($(GO) is go, $(LDFLAGS) its value).
func makefileBuild(t testing.TB) buildCommand {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	vars := map[string]string{}
	varRe := regexp.MustCompile(`^([A-Z_]+)\s*(?::=|\?=|=)\s*(.*)$`)
	recipe := ""
	for i, line := range lines {
		if m := varRe.FindStringSubmatch(line); m != nil {
			vars[m[1]] = strings.TrimSpace(m[2])
		}
		if strings.HasPrefix(line, "build:") && i+1 < len(lines) {
			recipe = strings.TrimSpace(lines[i+1])
		}
	}
	if recipe == "" {
		t.Fatal("Makefile: no build target recipe")
	}
	recipe = strings.ReplaceAll(recipe, "$(LDFLAGS)", vars["LDFLAGS"])
	recipe = strings.ReplaceAll(recipe, "$(GO)", "go")
	words, err := shellFields(recipe)
	if err != nil {
		t.Fatalf("Makefile: %v", err)
	}
	b, err := parseBuild(words, "go", "$(VERSION)")
	if err != nil {
		t.Fatalf("Makefile: %v", err)
	}
	return b
}

// droverBin builds drover once per test process with the Dockerfile's own
// build command (version testVersion) and returns the binary's path.
func droverBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		b := dockerfileBuild(t)
		binPath = filepath.Join(tmpRoot, "drover")
		args := append([]string{"build"}, b.Flags...)
		args = append(args, "-ldflags", strings.ReplaceAll(b.LDFlags, "VERSION", testVersion), "-o", binPath, b.Package)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), b.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// cliEnv is the environment for running drover in tests: no DROVER_* leaks
// from the caller, and no dev env file.
func cliEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DROVER_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "DROVER_DEV_ENV="), extra...)
}

// commandHelp is what `drover <path> --help` says about a subcommand.
type commandHelp struct {
	Path  []string
	Flags map[string]bool // long flag names, local and inherited
	Env   map[string]bool // DROVER_* variables bound to those flags
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]*commandHelp{}
	flagRe    = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)
	envRe     = regexp.MustCompile(`\[\$(DROVER_[A-Z0-9_]+)\]`)
)

// help runs `drover <path...> --help` and parses its flags. It fails when
// the path is not a real subcommand.
func help(t testing.TB, path []string) (*commandHelp, error) {
	t.Helper()
	key := strings.Join(path, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if h, ok := helpCache[key]; ok {
		return h, nil
	}
	out, err := runDrover(t, append(append([]string{}, path...), "--help"))
	if err != nil {
		return nil, err
	}
	usage := regexp.MustCompile(`(?m)^  drover ` + regexp.QuoteMeta(key) + ` (\[[A-Z]+\.*\] )?\[flags\]$`)
	if !usage.MatchString(out) {
		return nil, fmt.Errorf("%q is not a drover subcommand (its help has no usage line %q)", key, usage)
	}
	h := &commandHelp{Path: path, Flags: map[string]bool{}, Env: map[string]bool{}}
	for _, m := range flagRe.FindAllStringSubmatch(out, -1) {
		h.Flags[m[1]] = true
	}
	for _, m := range envRe.FindAllStringSubmatch(out, -1) {
		h.Env[m[1]] = true
	}
	helpCache[key] = h
	return h, nil
}

// runDrover runs the test binary with args and returns its combined output.
func runDrover(t testing.TB, args []string, env ...string) (string, error) {
	t.Helper()
	// Build first: the first call builds the binary (minutes on a cold cache,
	// since -trimpath and CGO_ENABLED=0 share no cache entries with 'go test'),
	// which must not count against the command's own timeout.
	bin := droverBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cliEnv(env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		return buf.String(), fmt.Errorf("drover %s: %v\n%s", strings.Join(args, " "), err, buf.String())
	}
	return buf.String(), nil
}
