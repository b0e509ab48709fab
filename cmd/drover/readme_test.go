package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry/registrytest"
)

// readmes are the READMEs whose examples are written for `make run`'s
// stack, in reading order: the root README first, whose shell set-up
// (PATH, the sourced env file) the others assume.
var readmes = []string{
	"README.md",
	"processors/timescale/README.md",
	"inspect/README.md",
	"bridge/README.md",
	"bridge/simulate/README.md",
}

// notOnDev marks a block that cannot run on the dev stack; the reason is
// required.
var notOnDev = regexp.MustCompile(`^<!--\s*not on dev:(.*?)-->\s*$`)

// A block is one fenced code block of a README that the test runs.
type block struct {
	file string
	line int    // of the opening fence
	lang string // "sh" or "sql"
	text []line
	skip string // the not-on-dev reason, if any
}

type line struct {
	n    int
	text string
}

func (b block) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// readBlocks returns the sh and sql blocks of a markdown file, with the
// not-on-dev annotation on the line before a block (blank lines between
// are allowed). An annotation without a reason, or before anything but an
// sh or sql block, is an error.
func readBlocks(root, file string) ([]block, error) {
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		return nil, err
	}
	var out []block
	var cur *block
	pending, pendingAt := "", 0
	for i, l := range strings.Split(string(data), "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(l)
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") {
				if cur.lang != "" {
					out = append(out, *cur)
				}
				cur = nil
				continue
			}
			cur.text = append(cur.text, line{n, l})
			continue
		}
		if m := notOnDev.FindStringSubmatch(trimmed); m != nil {
			if strings.TrimSpace(m[1]) == "" {
				return nil, fmt.Errorf("%s:%d: a not-on-dev annotation needs a reason", file, n)
			}
			pending, pendingAt = strings.TrimSpace(m[1]), n
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			lang := ""
			switch strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) {
			case "sh", "shell", "bash", "console":
				lang = "sh"
			case "sql":
				lang = "sql"
			}
			if pending != "" && lang == "" {
				return nil, fmt.Errorf("%s:%d: the not-on-dev annotation precedes a block that is not run anyway", file, pendingAt)
			}
			cur = &block{file: file, line: n, lang: lang, skip: pending}
			pending = ""
			continue
		}
		if pending != "" && trimmed != "" {
			return nil, fmt.Errorf("%s:%d: a not-on-dev annotation must be right before a code block", file, pendingAt)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: code block never closed", file, cur.line)
	}
	return out, nil
}

// commands splits an sh block into commands: lines joined at a trailing
// backslash, comment-only and blank lines dropped.
func commands(b block) []line {
	var out []line
	var acc []string
	start := 0
	for _, l := range b.text {
		t := strings.TrimSpace(l.text)
		if len(acc) == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if len(acc) == 0 {
			start = l.n
		}
		if c, ok := strings.CutSuffix(t, `\`); ok {
			acc = append(acc, c)
			continue
		}
		acc = append(acc, t)
		out = append(out, line{start, strings.Join(acc, " ")})
		acc = nil
	}
	return out
}

// statements splits an sql block at the semicolons that end its lines.
func statements(b block) []line {
	var out []line
	var acc []string
	start := 0
	for _, l := range b.text {
		t := strings.TrimSpace(l.text)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		if len(acc) == 0 {
			start = l.n
		}
		acc = append(acc, t)
		if strings.HasSuffix(t, ";") {
			out = append(out, line{start, strings.TrimSuffix(strings.Join(acc, "\n"), ";")})
			acc = nil
		}
	}
	if len(acc) > 0 {
		out = append(out, line{start, strings.Join(acc, "\n")})
	}
	return out
}

// setup lines change the reader's shell for the commands after them (in
// the same README, and for the folder READMEs after the root one); they
// print nothing.
var setupLine = regexp.MustCompile(`^(export\s|\.\s|source\s|cd\s|[A-Za-z_][A-Za-z0-9_]*=(\S*|"[^"]*"|'[^']*')\s*(#.*)?$)`)

// silent are commands that print nothing when they succeed.
var silent = []string{"mosquitto_pub"}

// longRunning reports whether cmd runs until stopped (drover tail without
// an end, drover simulate without --count): a tail stops after a few
// records, anything else like Ctrl-C after a bound, and it must have
// printed something.
func longRunning(cmd string) bool {
	first, _, _ := strings.Cut(cmd, "|")
	f := strings.Fields(first)
	has := func(flag string) bool {
		for _, w := range f {
			if w == flag || strings.HasPrefix(w, flag+"=") {
				return true
			}
		}
		return false
	}
	switch {
	case len(f) >= 2 && f[0] == "drover" && f[1] == "tail":
		return !has("--to") && !has("--follow=false") && !has("-f=false")
	case len(f) >= 2 && f[0] == "drover" && f[1] == "simulate":
		return len(f) == 2 || (f[2] != "fixtures" && !has("--count"))
	}
	return false
}

// result is one run of a command.
type shResult struct {
	stdout, stderr string
	code           int
	stopped        bool // stopped by the test (long-running)
}

// readmeEnv runs commands as a reader would: bash in a directory holding
// .drover/dev.env and bin/drover, with drover not on PATH.
type readmeEnv struct {
	dir   string
	env   []string
	dbURL string
}

func (e *readmeEnv) run(ctx context.Context, prelude []string, cmd string, long bool) (shResult, error) {
	script := "set -o pipefail\n" + strings.Join(prelude, "\n") + "\n" + cmd + "\n"
	c := exec.Command("bash", "-c", script)
	c.Dir, c.Env = e.dir, e.env
	if long {
		// A following tail stops by itself after a few records (unless the
		// command says how many), so a pipe behind it (jq) flushes and
		// exits as it would at a terminal.
		c.Env = append(c.Env[:len(c.Env):len(c.Env)], "DROVER_MAX_RECORDS=3")
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncLog
	var errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		return shResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	bound := 45 * time.Second
	if long {
		bound = 10 * time.Second
	}
	stop := func(sig syscall.Signal) { _ = syscall.Kill(-c.Process.Pid, sig) }
	var r shResult
	var err error
	select {
	case err = <-done:
	case <-time.After(bound):
		r.stopped = true
	case <-ctx.Done():
		r.stopped = true
		bound = 0
	}
	if r.stopped {
		stop(syscall.SIGINT) // as Ctrl-C does
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			stop(syscall.SIGKILL)
			err = <-done
		}
		if bound == 0 {
			return r, permanent{fmt.Errorf("the test's deadline passed")}
		}
		if !long {
			return r, fmt.Errorf("did not finish within %s", bound)
		}
	}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		return r, err
	}
	r.stdout, r.stderr = out.String(), errb.String()
	return r, nil
}

// check says what is wrong with a command's run: an error line, a
// non-zero exit (unless the test stopped it), or no result.
func check(r shResult, cmd string, setup bool) error {
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "drover: ") || strings.HasPrefix(l, "ERROR:") || strings.HasPrefix(l, "psql: error") {
			if r.code == 2 {
				return permanent{fmt.Errorf("usage error: %s", l)}
			}
			return fmt.Errorf("error (exit %d): %s", r.code, l)
		}
	}
	if !r.stopped && r.code != 0 {
		err := fmt.Errorf("exit %d\nstdout: %s\nstderr: %s", r.code, clip(r.stdout), clip(r.stderr))
		if r.code == 2 || r.code == 126 || r.code == 127 {
			return permanent{err}
		}
		return err
	}
	prog := strings.Fields(cmd)
	if setup || (len(prog) > 0 && containsString(silent, prog[0])) {
		return nil
	}
	if emptyResult(r.stdout) {
		return fmt.Errorf("empty result (exit %d)\nstdout: %q\nstderr: %s", r.code, clip(r.stdout), clip(r.stderr))
	}
	return nil
}

// emptyResult is no output, only nulls (jq on a missing field), or a psql
// table of no rows.
func emptyResult(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		if t := strings.TrimSpace(l); t != "" && t != "null" {
			return strings.Contains(out, "(0 rows)")
		}
	}
	return true
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}

// permanent marks a failure that waiting cannot cure: a command not found
// or a usage error (exit 2).
type permanent struct{ error }

// eventually retries attempt every 2 s until it succeeds, fails for good,
// or patience runs out: data the stack has not produced yet (the first
// rollup refresh, an alert) comes within it.
func eventually(ctx context.Context, patience time.Duration, attempt func() error) error {
	deadline := time.Now().Add(patience)
	for {
		err := attempt()
		var p permanent
		if err == nil || errors.As(err, &p) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
}

// TestIntegrationReadmeExamples runs, against a fresh `drover dev` on free
// ports, every command of every sh block and every statement of every sql
// block of the READMEs written for the dev stack, as a reader would: bash
// in a directory with .drover/dev.env and bin/drover (not on PATH: the
// root README says how to put it there). A command fails the test on a
// non-zero exit, an error line, or an empty result; a long-running one
// (drover tail without --to, drover simulate without --count) is stopped
// after a few records (DROVER_MAX_RECORDS) or like Ctrl-C after a bound,
// and must have printed. SQL queries run as
// drover_analyst and must return rows; every block runs in a transaction
// that is rolled back. A block marked <!-- not on dev: reason --> is
// skipped and counted.
func TestIntegrationReadmeExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts drover dev")
	}
	for _, tool := range []string{"bash", "psql", "jq", "mosquitto_pub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; the READMEs' examples use it (scripts/deps installs it)", tool)
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	for _, f := range readmes {
		bs, err := readBlocks(repo, f)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, bs...)
	}

	env := startReadmeStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	seedHistory(t, env)

	var skipped []string
	ran, cmds := 0, 0
	var basePrelude, prelude []string
	file := ""
	for _, b := range blocks {
		if b.file != file {
			if file == readmes[0] {
				basePrelude = prelude
			}
			file, prelude = b.file, append([]string{}, basePrelude...)
		}
		if b.skip != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", b.where(), b.skip))
			continue
		}
		ran++
		switch b.lang {
		case "sh":
			for _, c := range commands(b) {
				cmds++
				setup := setupLine.MatchString(c.text)
				long := longRunning(c.text)
				began := time.Now()
				err := eventually(ctx, 60*time.Second, func() error {
					r, err := env.run(ctx, prelude, c.text, long)
					if err != nil {
						return err
					}
					return check(r, c.text, setup)
				})
				if err != nil {
					t.Errorf("%s:%d: %s\n%v", b.file, c.n, c.text, err)
				}
				if d := time.Since(began); d > 5*time.Second {
					t.Logf("%s:%d took %s (waiting for data)", b.file, c.n, d.Round(100*time.Millisecond))
				}
				if setup {
					prelude = append(prelude, c.text)
				}
			}
		case "sql":
			stmts := statements(b)
			cmds += len(stmts)
			began := time.Now()
			if err := eventually(ctx, 60*time.Second, func() error { return env.sql(ctx, stmts) }); err != nil {
				t.Errorf("%s: %v", b.where(), err)
			}
			if d := time.Since(began); d > 5*time.Second {
				t.Logf("%s took %s (waiting for data)", b.where(), d.Round(100*time.Millisecond))
			}
		}
	}
	t.Logf("ran %d blocks (%d commands and statements); skipped %d blocks not on the dev stack:\n  %s",
		ran, cmds, len(skipped), strings.Join(skipped, "\n  "))
	if ran == 0 || cmds < 20 {
		t.Fatalf("only %d blocks, %d commands ran: the READMEs were not read", ran, cmds)
	}
}

// sql runs a block's statements in one transaction, rolled back: queries as
// drover_analyst, which must return rows; other statements (CREATE ROLE) as
// the database's owner.
func (e *readmeEnv) sql(ctx context.Context, stmts []line) error {
	conn, err := pgx.Connect(ctx, e.dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	for _, s := range stmts {
		verb := strings.ToUpper(strings.Fields(s.text)[0])
		if verb != "SELECT" && verb != "WITH" && verb != "TABLE" && verb != "VALUES" {
			if _, err := tx.Exec(ctx, s.text); err != nil {
				return fmt.Errorf("line %d: %w", s.n, err)
			}
			continue
		}
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE drover_analyst"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, s.text)
		if err != nil {
			return fmt.Errorf("line %d: %w", s.n, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("line %d: %w", s.n, err)
		}
		if n == 0 {
			return fmt.Errorf("line %d: the query returned no rows as drover_analyst:\n%s", s.n, s.text)
		}
		if _, err := tx.Exec(ctx, "RESET ROLE"); err != nil {
			return err
		}
	}
	return nil
}

// linkRepository makes dir look like the repository's root for the
// examples: every top-level entry of the repository (but bin and .drover,
// which the stack owns) is a symlink to the real one, so an example that
// names a file of the repository (a CSV to import, a rules file) finds it,
// while whatever an example writes into its working directory stays in dir.
func linkRepository(t *testing.T, dir string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "bin", ".drover", ".git":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// startReadmeStack starts `drover dev` as `make run` does, but on free
// ports and in a temporary directory laid out like the repository after
// `make run`: bin/drover and .drover/dev.env. With DROVER_TEST_DATABASE_URL
// set, the stack uses a fresh database on that server.
func startReadmeStack(t *testing.T) *readmeEnv {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"bin", ".drover"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(droverBin, filepath.Join(dir, "bin", "drover")); err != nil {
		t.Fatal(err)
	}
	linkRepository(t, dir)
	envFile := filepath.Join(dir, ".drover", "dev.env")
	args := []string{"dev", "--data-dir", filepath.Join(t.TempDir(), "data"), "--env-file", envFile, "--dev-env", "",
		"--mqtt-port", "0", "--mqtt-ws-port", "0", "--kafka-port", "0", "--registry-port", "0", "--s3-port", "0", "--postgres-port", "0"}
	if os.Getenv(devtest.EnvTestDatabaseURL) != "" {
		args = append(args, "--database-url", devtest.Postgres(t))
	}
	dev := exec.Command(droverBin, args...)
	dev.Env = append(cleanEnv(), "DROVER_DATABASE_URL=", "DROVER_LOG_FORMAT=text")
	var log syncLog
	dev.Stdout, dev.Stderr = &log, &log
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = dev.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = dev.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			t.Errorf("drover dev did not stop within 60 s of SIGTERM")
			_ = dev.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("drover dev output:\n%s", log.tail())
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	var vars map[string]string
	for vars == nil {
		select {
		case <-exited:
			t.Fatalf("drover dev exited before writing %s:\n%s", envFile, log.tail())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 2 minutes:\n%s", envFile, log.tail())
		}
		vars, _ = cli.ReadEnvFile(envFile)
	}
	// Long-running commands (drover simulate) serve /metrics on a free
	// port, as every test's listeners do.
	env := append(cleanEnv(), "DROVER_ADMIN_ADDR=127.0.0.1:0")
	return &readmeEnv{dir: dir, env: env, dbURL: vars["DROVER_DATABASE_URL"]}
}

// cleanEnv is the test's environment without DROVER_* variables and with
// a PATH that has no drover on it.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DROVER_") {
			out = append(out, kv)
		}
	}
	return out
}

// seedHistory publishes, for one extra collar of the simulator's tenant, a
// fever of 12 minutes of event time and 5 minutes of walking, so that
// what a fresh stack only has after a few minutes exists at once: a fired
// fever alert, closed feature windows with motion.
func seedHistory(t *testing.T, env *readmeEnv) {
	t.Helper()
	vars, err := cli.ReadEnvFile(filepath.Join(env.dir, ".drover", "dev.env"))
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimPrefix(vars["DROVER_MQTT_URL"], "tcp://")
	now := time.Now().UTC()
	var sensor, gps strings.Builder
	for i := 24; i >= 0; i-- {
		ts := now.Add(-time.Duration(i) * 30 * time.Second).Format(time.RFC3339Nano)
		fmt.Fprintf(&sensor, `{"ts":%q,"metric":"temperature","value":40.2,"unit":"Cel"}`+"\n", ts)
		if i <= 10 {
			fmt.Fprintf(&gps, `{"ts":%q,"lat":%.6f,"lon":-7.856}`+"\n", ts, 52.47+float64(10-i)*0.0005)
		}
	}
	// The stack enforces the device registry: the collar is registered,
	// and published for by drover dev's tooling principal.
	registrytest.RegisterDevices(t, strings.Split(vars["DROVER_KAFKA_BROKERS"], ","), vars["DROVER_SCHEMA_REGISTRY_URL"], "demo", "collar-readme")
	pw, err := os.ReadFile(vars["DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE"])
	if err != nil {
		t.Fatalf("the dev env file names no tooling principal: %v", err)
	}
	for topic, lines := range map[string]string{"sensor": sensor.String(), "gps": gps.String()} {
		c := exec.Command("mosquitto_pub", "-L", "mqtt://"+base+"/devices/demo/collar-readme/"+topic, "-q", "1", "-l",
			"-u", vars["DROVER_DEV_MQTT_TOOLS_USERNAME"], "-P", strings.TrimSpace(string(pw)))
		c.Stdin = strings.NewReader(lines)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("seeding %s: %v\n%s", topic, err, out)
		}
	}
}

// syncLog keeps a subprocess's output for the failure log.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func (l *syncLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 6000 {
		s = "…" + s[len(s)-6000:]
	}
	return s
}

// TestReadmeBlocks checks the block reader on the annotations' edge cases.
func TestReadmeBlocks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("ok.md", "text\n\n<!-- not on dev: needs a cluster -->\n\n```sh\nkubectl apply -k x\n```\n\n```sh\n# comment\ndrover lag \\\n  --group g   # trailing\n\nexport A=1\n```\n\n```\nnot run\n```\n\n```sql\nSELECT 1\nFROM t;\nSELECT 2;\n```\n")
	bs, err := readBlocks(dir, "ok.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 || bs[0].skip != "needs a cluster" || bs[1].skip != "" || bs[2].lang != "sql" {
		t.Fatalf("blocks %+v", bs)
	}
	cs := commands(bs[1])
	if len(cs) != 2 || cs[0].text != "drover lag  --group g   # trailing" || !setupLine.MatchString(cs[1].text) {
		t.Fatalf("commands %+v", cs)
	}
	if ss := statements(bs[2]); len(ss) != 2 || ss[0].text != "SELECT 1\nFROM t" {
		t.Fatalf("statements %+v", ss)
	}
	for name, body := range map[string]string{
		"no reason":      "<!-- not on dev: -->\n```sh\nx\n```\n",
		"not before":     "<!-- not on dev: r -->\ntext\n```sh\nx\n```\n",
		"not a run lang": "<!-- not on dev: r -->\n```yaml\nx: 1\n```\n",
		"unclosed":       "```sh\nx\n",
	} {
		write("bad.md", body)
		if _, err := readBlocks(dir, "bad.md"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	for cmd, want := range map[string]bool{
		"drover tail raw.sensor":                             true,
		"drover tail raw.gps --format json | jq .value.lat":  true,
		"drover tail raw.sensor --from -10m --to latest":     false,
		"drover tail raw.sensor --from -5 --follow=false":    false,
		"drover simulate --devices 100 --duration 10m":       true,
		"drover simulate --count 10":                         false,
		"drover simulate fixtures":                           false,
		"drover lag":                                         false,
		"psql \"$DROVER_DATABASE_URL\" -c 'SELECT 1' --to x": false,
	} {
		if longRunning(cmd) != want {
			t.Errorf("longRunning(%q) = %v", cmd, !want)
		}
	}
	for out, want := range map[string]bool{"": true, "\n\n": true, "null\nnull\n": true, " metric | count \n--------+------\n(0 rows)\n": true, "42\n": false, "null\n1\n": false} {
		if emptyResult(out) != want {
			t.Errorf("emptyResult(%q) = %v", out, !want)
		}
	}
}
