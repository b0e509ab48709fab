// Command report runs drover's benchmarks (every stage benchmark and the
// end-to-end one) a number of times and writes BENCHMARKS.md: per
// benchmark the median and range of every reported metric, the ratio to
// its same-run baseline, the target with PASS or MISS, the
// machine, the date and the command to reproduce.
//
//	go run ./bench/report                        # every benchmark, 3 runs each
//	go run ./bench/report -count 1 -pkgs ./bridge/,./bench/
//	go run ./bench/report -input .bench.out      # re-render from saved output
//
// It exits 1 when a package's benchmarks failed, 2 on bad flags; a missed
// target does not change the exit code (the report says MISS).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	count     int
	benchtime string
	pkgs      []string
	out       string
	raw       string
	input     string
	timeout   time.Duration
	goCmd     string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var pkgs string
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.count, "count", 3, "runs of every benchmark; the report shows medians")
	fs.StringVar(&o.benchtime, "benchtime", "1x", "go test -benchtime for the stage benchmarks (each iteration is one whole measurement)")
	fs.StringVar(&pkgs, "pkgs", "", "comma-separated package directories to run (default: every package with benchmarks), e.g. ./bridge/,./bench/")
	fs.StringVar(&o.out, "o", "BENCHMARKS.md", "where to write the report (- for stdout)")
	fs.StringVar(&o.raw, "raw", ".bench.out", "where to keep the raw go test output (empty: nowhere)")
	fs.StringVar(&o.input, "input", "", "render the report from this saved go test output instead of running anything")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Minute, "go test -timeout per package")
	fs.StringVar(&o.goCmd, "go", "go", "the go command")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (flags only; see -h)", fs.Args())
	}
	if o.count < 1 {
		return o, fmt.Errorf("-count %d: want at least 1", o.count)
	}
	if o.benchtime == "" {
		return o, errors.New("-benchtime: empty")
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("-timeout %s: want a positive duration", o.timeout)
	}
	if o.out == "" {
		return o, errors.New("-o: empty (use - for stdout)")
	}
	for p := range strings.SplitSeq(pkgs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.pkgs = append(o.pkgs, normDir(p))
		}
	}
	return o, nil
}

// normDir writes a package directory as "./dir/".
func normDir(p string) string {
	p = strings.Trim(strings.TrimPrefix(filepath.ToSlash(p), "./"), "/")
	if p == "" || p == "." {
		return "./"
	}
	return "./" + p + "/"
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "report:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	rep := &Report{Count: o.count, Failed: map[string]string{}, Date: time.Now().UTC().Format("2006-01-02 15:04 MST")}
	rep.Command = commandLine(o)
	var raw []byte
	loadStart := loadAvg()
	if o.input != "" {
		if raw, err = os.ReadFile(o.input); err != nil {
			fmt.Fprintln(stderr, "report: -input:", err)
			return 2
		}
		rep.Packages = o.pkgs
		if len(o.pkgs) == 0 {
			rep.Packages = nil
		}
	} else {
		dirs, err := packages(o.pkgs)
		if err != nil {
			fmt.Fprintln(stderr, "report:", err)
			return 2
		}
		rep.Packages = dirs
		var all bytes.Buffer
		var rawFile io.Writer = io.Discard
		if o.raw != "" {
			f, err := os.Create(o.raw)
			if err != nil {
				fmt.Fprintln(stderr, "report: -raw:", err)
				return 2
			}
			defer f.Close()
			rawFile = f
		}
		for _, d := range dirs {
			bt := o.benchtime
			if t := benchTimeOf(d); t != "" {
				bt = t
			}
			argv := []string{"test", "-run", "^$", "-bench", ".", "-benchtime", bt, "-count", strconv.Itoa(o.count), "-timeout", o.timeout.String(), d}
			fmt.Fprintf(stderr, "report: %s %s\n", o.goCmd, strings.Join(argv, " "))
			start := time.Now()
			cmd := exec.CommandContext(ctx, o.goCmd, argv...)
			var out bytes.Buffer
			cmd.Stdout = io.MultiWriter(&out, rawFile, stdout)
			cmd.Stderr = stderr
			err := cmd.Run()
			all.Write(out.Bytes())
			if err != nil {
				rep.Failed[d] = fmt.Sprintf("go test: %v (see the raw output)", err)
				if ctx.Err() != nil {
					fmt.Fprintln(stderr, "report: interrupted")
					return 1
				}
			}
			fmt.Fprintf(stderr, "report: %s done in %s\n", d, time.Since(start).Round(time.Second))
		}
		raw = all.Bytes()
	}
	parsed, err := Parse(bytes.NewReader(raw))
	if err != nil {
		fmt.Fprintln(stderr, "report: parsing the benchmark output:", err)
		return 1
	}
	rep.Parsed = parsed
	rep.Machine = machine(parsed.CPU, loadStart, o.goCmd)
	var w io.Writer = stdout
	var buf bytes.Buffer
	if o.out != "-" {
		w = &buf
	}
	if err := rep.Markdown(w); err != nil {
		fmt.Fprintln(stderr, "report:", err)
		return 1
	}
	if o.out != "-" {
		if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(stderr, "report: -o:", err)
			return 1
		}
		pass, miss, missing := rep.Verdicts()
		fmt.Fprintf(stderr, "report: wrote %s: %d benchmarks, targets %d met, %d missed, %d without data\n", o.out, len(parsed.Benches), pass, miss, missing)
	}
	if len(rep.Failed) > 0 {
		return 1
	}
	return 0
}

func commandLine(o options) string {
	c := "go run ./bench/report -count " + strconv.Itoa(o.count)
	if o.benchtime != "1x" {
		c += " -benchtime " + o.benchtime
	}
	if len(o.pkgs) > 0 {
		c += " -pkgs " + strings.Join(o.pkgs, ",")
	}
	if o.input != "" {
		c += " -input " + o.input
	}
	return c
}

func benchTimeOf(dir string) string {
	for _, s := range Specs {
		if s.Pkg == dir && s.BenchTime != "" {
			return s.BenchTime
		}
	}
	return ""
}

var benchFunc = regexp.MustCompile(`(?m)^func Benchmark[A-Z0-9_]\w*\(b \*testing\.B\)`)

// packages returns the package directories to run: the given ones, or
// every directory of the module (but third_party/ and hidden ones) whose
// test files define a benchmark, plus the Specs' packages, sorted with
// ./bench/ last (the end-to-end benchmark is the longest).
func packages(given []string) ([]string, error) {
	if len(given) > 0 {
		for _, d := range given {
			if st, err := os.Stat(d); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("-pkgs: %s is not a directory (run from the repository root)", d)
			}
		}
		return given, nil
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return nil, errors.New("run from the repository root (no go.mod here)")
	}
	found := map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			n := d.Name()
			if path != "." && (strings.HasPrefix(n, ".") || n == "third_party" || n == "testdata" || n == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if benchFunc.Match(b) {
			found[normDir(filepath.Dir(path))] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, s := range Specs {
		found[s.Pkg] = true
	}
	var dirs []string
	for d := range found {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b string) int {
		if (a == "./bench/") != (b == "./bench/") {
			if a == "./bench/" {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	return dirs, nil
}

// machine describes the machine: CPU, cores, memory, Go, OS, load.
func machine(cpu, loadStart, goCmd string) [][2]string {
	if cpu == "" {
		cpu = cpuModel()
	}
	goVersion := runtime.Version()
	if out, err := exec.Command(goCmd, "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	m := [][2]string{
		{"CPU", fmt.Sprintf("%s, %d logical cores", cpu, runtime.NumCPU())},
		{"memory", memTotal()},
		{"Go", fmt.Sprintf("%s %s/%s", goVersion, runtime.GOOS, runtime.GOARCH)},
		{"OS", osName()},
		{"load average (1, 5, 15 min) at start / end", loadStart + " / " + loadAvg()},
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

func osName() string {
	name := runtime.GOOS
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				name = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		name += ", kernel " + strings.TrimSpace(string(b))
	}
	return name
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
