package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parseSample(t *testing.T) *Parsed {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sample.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	p := parseSample(t)
	if p.CPU != "Intel(R) Xeon(R) Processor" {
		t.Errorf("CPU %q", p.CPU)
	}
	var names []string
	for _, b := range p.Benches {
		names = append(names, b.Name)
	}
	want := "BridgeDrain FeaturesThroughput StateCodec Encode/Encode Encode/AppendEncode EndToEnd"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("benchmarks %q, want %q", got, want)
	}
	b := p.Find("./bridge/", "BridgeDrain")
	if b == nil || b.Runs != 3 {
		t.Fatalf("bridge: %+v", b)
	}
	if got := b.Vals["bridge-msg/s"]; len(got) != 3 || got[0] != 44509 || got[1] != 30000 || got[2] != 41000 {
		t.Errorf("bridge-msg/s %v", got)
	}
	if got := b.Units[:4]; strings.Join(got, ",") != "ns/op,bridge-msg/s,bare-msg/s,ratio" {
		t.Errorf("units in order of appearance: %v", b.Units)
	}
	if p.Find("./processors/features/", "StateCodec") == nil || p.Find("./features/", "BridgeDrain") != nil {
		t.Error("Find matches on the package directory and the name")
	}
	if p.Find("./bench/", "EndToEnd").Stat("max_sustainable_msg/s").Median != 25000 {
		t.Error("end-to-end metrics")
	}
	// Notes belong to the package whose ok line follows them; b.Log lines
	// (indented) and go test's own lines are not notes.
	bridgeNotes := p.Notes[modulePath+"/bridge"]
	if len(bridgeNotes) != 3 || !strings.HasPrefix(bridgeNotes[0], "bridge drain, 200000") {
		t.Errorf("bridge notes %q", bridgeNotes)
	}
	e2e := p.Notes[modulePath+"/bench"]
	if len(e2e) != 1 || !strings.HasPrefix(e2e[0], "e2e: drover") {
		t.Errorf("e2e notes %q (the slog line must not be one)", e2e)
	}
	if len(p.Notes[modulePath+"/schemas"]) != 0 {
		t.Errorf("schemas notes %q", p.Notes[modulePath+"/schemas"])
	}
}

func TestStats(t *testing.T) {
	for _, c := range []struct {
		in            []float64
		med, min, max float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{7}, 7, 7, 7},
	} {
		s := Of(c.in)
		if s.Median != c.med || s.Min != c.min || s.Max != c.max || s.N != len(c.in) {
			t.Errorf("Of(%v) = %+v", c.in, s)
		}
	}
	if s := Of(nil); s.N != 0 || s.Median != 0 {
		t.Errorf("Of(nil) = %+v", s)
	}
	in := []float64{3, 1, 2}
	Of(in)
	if in[0] != 3 {
		t.Error("Of sorted its input")
	}
}

func TestTarget(t *testing.T) {
	ge := Target{"ratio", ">=", 0.8}
	lt := Target{"e2e_p99_ms", "<", 250}
	if !ge.Met(0.8) || ge.Met(0.79) || !lt.Met(249) || lt.Met(250) {
		t.Error("Met")
	}
	if ge.String() != "ratio ≥ 0.8" || lt.String() != "e2e_p99_ms < 250" {
		t.Errorf("%q %q", ge.String(), lt.String())
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{44509: "44,509", 1234567: "1,234,567", 316.9: "317", 17.4: "17.4", 1.05: "1.05", 0.75: "0.75", 0.225: "0.225", 0: "0", -2500: "-2,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	r := &Report{
		Parsed: parseSample(t), Count: 3, Date: "2026-11-23 08:00 UTC", Command: "go run ./bench/report -count 3",
		Machine:  [][2]string{{"CPU", "Intel(R) Xeon(R) Processor, 2 logical cores"}},
		Failed:   map[string]string{"./backfill/": "go test: exit status 1 (see the raw output)"},
		Packages: []string{"./bridge/", "./processors/features/", "./schemas/", "./bench/", "./backfill/"},
	}
	var buf bytes.Buffer
	if err := r.Markdown(&buf); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	for _, want := range []string{
		"**median of 3 run(s)**",
		"| CPU | Intel(R) Xeon(R) Processor, 2 logical cores |",
		// bridge: median 41,000 of 44509/30000/41000, ratio median 1.00 of 1.05/0.75/1.00: PASS.
		"| bridge drain, QoS 1 JSON backlog in mosquitto (`./bridge/`, 3 run(s)) | 41,000 bridge-msg/s (30,000–44,509) | 41,000 bare-msg/s (40,000–42,403) | 1.00 (0.75–1.05) | ratio ≥ 0.8 | PASS |",
		// features: ratio median 0.225 < 0.5: MISS.
		"| 0.225 (0.2–0.25) | ratio ≥ 0.5 | **MISS** |",
		"| processors: features state codec (`./processors/features/`, 2 run(s)) | 200 hand-ns/roundtrip (190–210) | 1,000 hamba-ns/roundtrip (980–1,020) | 5.02 (4.67–5.37) | report |  |",
		"| serde: encode one SensorReading (`./schemas/`, 1 run(s)) | 935 ns/op |",
		"| B/op | 320 | 320 | 320 |",
		// end to end: p99 300 ≥ 250: MISS; the baseline and ratio are shown.
		"| 300 e2e_p99_ms | 150 bare_p99_ms | 2.00 | e2e_p99_ms < 250 | **MISS** |",
		"| end to end: maximum sustainable rate (`./bench/`, 1 run(s)) | 25,000 max_sustainable_msg/s |",
		"FAILED: go test: exit status 1",
		"Targets: 1 met, 2 missed, 1 without data.", // the fixture's ./bridge/ run predates BridgeRegistry
		"### EndToEnd `bench` (1 run(s))",
		"| e2e_p99_ms | 300 | 300 | 300 |",
		"e2e: drover 10000 msg/s for 60s",
		"go run ./bench/report -count 3",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// Packages not run get no summary row.
	if strings.Contains(md, "./processors/timescale/") {
		t.Error("a package that was not run has a summary row")
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestPackagesDiscovery(t *testing.T) {
	wd, _ := os.Getwd()
	if err := os.Chdir(filepath.Join("..", "..")); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	dirs, err := packages(nil)
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, d := range dirs {
		has[d] = true
		if strings.Contains(d, "third_party") {
			t.Errorf("third_party benchmarks are not drover's: %s", d)
		}
	}
	for _, s := range Specs {
		if !has[s.Pkg] {
			t.Errorf("spec package %s not run", s.Pkg)
		}
		if _, err := os.Stat(s.Pkg); err != nil {
			t.Errorf("spec package %s: %v", s.Pkg, err)
		}
	}
	if dirs[len(dirs)-1] != "./bench/" {
		t.Errorf("the end-to-end benchmark should run last: %v", dirs)
	}
	if _, err := packages([]string{"./no-such-dir/"}); err == nil {
		t.Error("a missing -pkgs directory is accepted")
	}
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	for _, bad := range [][]string{{"-count", "0"}, {"-timeout", "0s"}, {"-o", ""}, {"extra"}, {"-benchtime", ""}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	o, err := parseFlags([]string{"-count", "1", "-pkgs", "bridge, ./bench/"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.pkgs, " ") != "./bridge/ ./bench/" || o.count != 1 || o.out != "BENCHMARKS.md" {
		t.Errorf("%+v", o)
	}
}

// TestRunInput renders a report from saved output, as `-input` does.
func TestRunInput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "B.md")
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), []string{"-input", filepath.Join("testdata", "sample.txt"), "-o", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	md, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(md, []byte("## Machine")) || !bytes.Contains(md, []byte("Go | go1.")) {
		t.Errorf("report lacks the machine: %s", md)
	}
	if code := run(t.Context(), []string{"-input", "testdata/missing.txt"}, &stdout, &stderr); code != 2 {
		t.Errorf("missing -input: exit %d, want 2", code)
	}
}

// TestParseRunsAfterOutput: with -count > 1, go test prints a benchmark's
// name, then what the benchmark printed, and the result of every run after
// the first on a line of its own; those results must count too.
func TestParseRunsAfterOutput(t *testing.T) {
	out := "goos: linux\ngoarch: amd64\npkg: github.com/drover-iot/drover/backfill\ncpu: Test CPU\n" +
		"BenchmarkBackfillMedia-2   \t       1\t100 ns/op\t     10 objects/s\n" +
		"BenchmarkBackfillMedia-2   \tbackfill media: 20 objects/s\n" +
		"       1\t200 ns/op\t     20 objects/s\n" +
		"BenchmarkBackfillMedia-2   \tbackfill media: 30 objects/s\n" +
		"       1\t300 ns/op\t     30 objects/s\n" +
		"PASS\nok  \tgithub.com/drover-iot/drover/backfill\t1.0s\n"
	p, err := Parse(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Benches) != 1 {
		t.Fatalf("%d benchmarks, want 1", len(p.Benches))
	}
	b := p.Benches[0]
	if b.Runs != 3 || len(b.Vals["objects/s"]) != 3 || b.Vals["objects/s"][2] != 30 {
		t.Fatalf("runs %d, objects/s %v; want 3 runs: 10, 20, 30", b.Runs, b.Vals["objects/s"])
	}
}
