package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// Target is an issue's target for one metric.
type Target struct {
	Metric string  // unit as reported, e.g. "ratio"
	Op     string  // ">=" or "<"
	Value  float64 //
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	if t.Op == "<" {
		return v < t.Value
	}
	return v >= t.Value
}

func (t Target) String() string {
	op := "≥"
	if t.Op == "<" {
		op = "<"
	}
	return fmt.Sprintf("%s %s %s", t.Metric, op, num(t.Value))
}

// Spec describes one row of the summary: a benchmark, its drover figure,
// its same-run baseline, the ratio the benchmark reports, and the target.
type Spec struct {
	Stage     string  // what is measured
	Pkg       string  // package directory, "./bridge/"
	Bench     string  // benchmark name without "Benchmark" and -GOMAXPROCS
	Drover    string  // metric unit of drover's figure
	Baseline  string  // metric unit of the baseline ("" = none)
	Ratio     string  // metric unit of the same-run ratio ("" = none)
	Target    *Target // nil = report only
	BenchTime string  // -benchtime for the package ("" = the -benchtime flag)
}

// Specs are the known benchmarks: the targets and the earlier
// issues' stage benchmarks. Benchmarks found in the tree but not listed
// here are run and reported too, without a summary row.
var Specs = []Spec{
	{Stage: "end to end: MQTT publish → row visible in sensor_readings, p99 at 10k msg/s for 60 s", Pkg: "./bench/", Bench: "EndToEnd",
		Drover: "e2e_p99_ms", Baseline: "bare_p99_ms", Ratio: "p99_ratio", Target: &Target{"e2e_p99_ms", "<", 250}},
	{Stage: "end to end: maximum sustainable rate", Pkg: "./bench/", Bench: "EndToEnd", Drover: "max_sustainable_msg/s"},
	{Stage: "bridge drain, QoS 1 JSON backlog in mosquitto", Pkg: "./bridge/", Bench: "BridgeDrain",
		Drover: "bridge-msg/s", Baseline: "bare-msg/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.8}},
	{Stage: "HTTP door, one reading per request, 16 clients (vs bare net/http + same producer)", Pkg: "./doors/httpapi/", Bench: "HTTPIngest/single",
		Drover: "http-msg/s", Baseline: "bare-msg/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.8}, BenchTime: "20000x"},
	{Stage: "HTTP door, CPU per accepted message, single (bare handler's next to it)", Pkg: "./doors/httpapi/", Bench: "HTTPIngest/single",
		Drover: "http-cpu-us/msg", Baseline: "bare-cpu-us/msg", BenchTime: "20000x"},
	{Stage: "HTTP door, 50 readings per NDJSON request, 16 clients (vs bare)", Pkg: "./doors/httpapi/", Bench: "HTTPIngest/batched",
		Drover: "http-msg/s", Baseline: "bare-msg/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.8}, BenchTime: "1000000x"},
	{Stage: "HTTP door, CPU per accepted message, batched", Pkg: "./doors/httpapi/", Bench: "HTTPIngest/batched",
		Drover: "http-cpu-us/msg", Baseline: "bare-cpu-us/msg", BenchTime: "1000000x"},
	{Stage: "CoAP door, confirmable POST of one reading, 16 clients over UDP", Pkg: "./doors/coap/", Bench: "CoAPIngest",
		Drover: "coap-msg/s", BenchTime: "20000x"},
	{Stage: "CoAP door, CPU per accepted message", Pkg: "./doors/coap/", Bench: "CoAPIngest",
		Drover: "coap-cpu-us/msg", BenchTime: "20000x"},
	{Stage: "LoRaWAN webhook (HTTP door, ChirpStack uplink, 5 readings each), 16 clients", Pkg: "./doors/httpapi/", Bench: "LoRaWANWebhook",
		Drover: "uplink/s", BenchTime: "20000x"},
	{Stage: "LoRaWAN webhook, CPU per accepted uplink", Pkg: "./doors/httpapi/", Bench: "LoRaWANWebhook",
		Drover: "lorawan-cpu-us/uplink", BenchTime: "20000x"},
	{Stage: "ingest core, Core.Prepare of one JSON reading (the path of MQTT device topics, HTTP and CoAP, short of producing)", Pkg: "./ingest/", Bench: "CorePrepare/json",
		Drover: "ns/op", BenchTime: "1s"},
	{Stage: "ingest core, Core.Prepare of one Sparkplug B NDATA with 10 metrics", Pkg: "./ingest/", Bench: "CorePrepare/sparkplug",
		Drover: "ns/op", BenchTime: "1s"},
	{Stage: "commands: round trip at 1,000 commands/s offered, p50 (commands.devices → bridge → device → reply → succeeded on commands.status; vs bare MQTT request/response on the same broker, same run)", Pkg: "./bridge/", Bench: "CommandRate",
		Drover: "e2e-p50-ms", Baseline: "bare-p50-ms"},
	{Stage: "commands: round trip at 1,000 commands/s offered, p99 (vs bare MQTT request/response, same run)", Pkg: "./bridge/", Bench: "CommandRate",
		Drover: "e2e-p99-ms", Baseline: "bare-p99-ms"},
	{Stage: "commands: rate completed at 1,000 commands/s offered (below it, the downlink is the bottleneck)", Pkg: "./bridge/", Bench: "CommandRate", Drover: "done-cmd/s"},
	{Stage: "bridge drain with 100k registered devices: --registry enforce vs off", Pkg: "./bridge/", Bench: "BridgeRegistry",
		Drover: "enforce-msg/s", Baseline: "off-msg/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.95}},
	{Stage: "sink, raw.sensor → sensor_readings", Pkg: "./processors/timescale/", Bench: "SinkThroughput",
		Drover: "sink_rows/s", Baseline: "copy_rows/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.7}},
	{Stage: "sink lag at a steady rate, p99", Pkg: "./processors/timescale/", Bench: "SinkLag",
		Drover: "sink_p99_ms", Baseline: "kafka_p99_ms", Ratio: "p99_ratio"},
	{Stage: "processors: features group", Pkg: "./processors/features/", Bench: "FeaturesThroughput",
		Drover: "goka-rec/s", Baseline: "franz-go-rec/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.5}},
	{Stage: "processors: alerts group", Pkg: "./processors/alerts/", Bench: "AlertsThroughput",
		Drover: "records/s", Baseline: "baseline-records/s", Ratio: "ratio", Target: &Target{"ratio", ">=", 0.5}},
	{Stage: "processors: alerts state restore", Pkg: "./processors/alerts/", Bench: "AlertsRestore",
		Drover: "restore-s", Baseline: "baseline-s", Ratio: "ratio"},
	{Stage: "processors: state restore, 100k devices", Pkg: "./processors/state/", Bench: "StateRestore",
		Drover: "restore-kafka-s", Baseline: "restore-goka-memory-s", Ratio: "goka-memory/memory"},
	{Stage: "processors: group table memory store insert", Pkg: "./processors/groupkit/", Bench: "MemStorageInsert",
		Drover: "memstore-s", Baseline: "goka-memory-s", Ratio: "speedup"},
	{Stage: "processors: features state codec", Pkg: "./processors/features/", Bench: "StateCodec",
		Drover: "hand-ns/roundtrip", Baseline: "hamba-ns/roundtrip", Ratio: "speedup"},
	{Stage: "backfill, S3 listing → records acked", Pkg: "./backfill/", Bench: "BackfillMedia",
		Drover: "objects/s", Baseline: "list-objects/s", Ratio: "ratio"},
	{Stage: "tail, records decoded to JSON", Pkg: "./inspect/", Bench: "TailJSON",
		Drover: "drover_s", Baseline: "kcat_s", Ratio: "drover/kcat", Target: &Target{"drover/kcat", "<", 2}},
	{Stage: "simulator publish, QoS 1", Pkg: "./bridge/simulate/", Bench: "Publish",
		Drover: "sim_msg/s", Baseline: "bare_msg/s", Ratio: "ratio"},
	{Stage: "serde: encode one SensorReading", Pkg: "./schemas/", Bench: "Encode/Encode", Drover: "ns/op", BenchTime: "1s"},
	{Stage: "serde: decode one SensorReading", Pkg: "./schemas/", Bench: "Decode/Decode", Drover: "ns/op", BenchTime: "1s"},
	{Stage: "registry: per-message lookup (View.Admit, 100k devices), CPU", Pkg: "./registry/", Bench: "Lookup/serial", Drover: "cpu-ns/op", BenchTime: "1s"},
	{Stage: "registry: view restore, 1M devices (embedded Kafka)", Pkg: "./registry/", Bench: "Restore",
		Drover: "restore-s", Baseline: "consume-s", Ratio: "restore/consume", BenchTime: "1s"},
	{Stage: "stream apps: filter app (goka group) vs bare franz-go loop, same decode, query and encode", Pkg: "./processors/apps/", Bench: "FilterApp",
		Drover: "app-rec/s", Baseline: "franz-go-rec/s", Ratio: "ratio"},
	{Stage: "stream apps: time-series join, 10k keys, records/s", Pkg: "./processors/apps/", Bench: "Join", Drover: "join-rec/s"},
	{Stage: "stream apps: time-series join, group-table state per 10k keys", Pkg: "./processors/apps/", Bench: "Join", Drover: "state-MiB/10k-keys"},
	{Stage: "deploy: validate every overlay", Pkg: "./deploy/", Bench: "ValidateOverlays",
		Drover: "ms/validation", Baseline: "ms/build-baseline", Ratio: "ratio"},
}

// Bench is one benchmark's results over the runs.
type Bench struct {
	Pkg   string // import path as reported ("pkg:" line)
	Name  string // without "Benchmark" and -GOMAXPROCS
	Runs  int
	Units []string             // in order of first appearance
	Vals  map[string][]float64 // unit → one value per run that reported it
}

// Stats are the median, minimum and maximum of some values.
type Stats struct {
	N                int
	Median, Min, Max float64
}

// Of computes the stats of vals (the median of an even count is the mean
// of the middle two).
func Of(vals []float64) Stats {
	if len(vals) == 0 {
		return Stats{}
	}
	s := slices.Clone(vals)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Stat returns the stats of one metric.
func (b *Bench) Stat(unit string) Stats { return Of(b.Vals[unit]) }

// Parsed is what Parse read from raw `go test -bench` output.
type Parsed struct {
	Benches []*Bench
	CPU     string
	// Notes are the lines benchmarks printed for humans, per package.
	Notes map[string][]string
}

// Find returns the benchmark of package directory dir ("./bridge/") and
// name, or nil.
func (p *Parsed) Find(dir, name string) *Bench {
	for _, b := range p.Benches {
		if b.Name == name && pkgMatches(b.Pkg, dir) {
			return b
		}
	}
	return nil
}

// pkgMatches reports whether import path pkg is the package in directory
// dir of this module ("./processors/timescale/").
func pkgMatches(pkg, dir string) bool {
	d := strings.Trim(strings.TrimPrefix(dir, "."), "/")
	if d == "" {
		return !strings.Contains(strings.TrimPrefix(pkg, modulePath), "/")
	}
	return strings.HasSuffix(pkg, "/"+d)
}

const modulePath = "github.com/drover-iot/drover"

// orphanResult is a result line without its benchmark name.
var orphanResult = regexp.MustCompile(`^\s+\d+\s+[0-9.e+]+ ns/op`)

// namePrefix is the "BenchmarkX-2 \t" go test prints before a benchmark's
// own output.
var namePrefix = regexp.MustCompile(`^(Benchmark\S+)\s`)

// rejoinResults puts the benchmark name back in front of result lines that
// lost it. When a benchmark prints to stdout, go test writes the name, then
// the benchmark's output after it on the same line, and the result on a
// line of its own; with -count > 1 every run after the first looks like
// that, and benchfmt would drop those results.
func rejoinResults(raw []byte) []byte {
	lines := strings.Split(string(raw), "\n")
	last := ""
	for i, l := range lines {
		if m := namePrefix.FindStringSubmatch(l); m != nil {
			last = m[1]
			continue
		}
		if last != "" && orphanResult.MatchString(l) {
			lines[i] = last + " " + l
		}
		if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "PASS") || strings.HasPrefix(l, "FAIL") {
			last = ""
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// Parse reads `go test -bench` output (several packages and -count runs
// concatenated) with benchfmt. Lines that are neither results nor
// configuration nor go test's own chatter are kept as notes.
func Parse(r io.Reader) (*Parsed, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	raw = rejoinResults(raw)
	p := &Parsed{Notes: map[string][]string{}}
	byKey := map[string]*Bench{}
	rd := benchfmt.NewReader(bytes.NewReader(raw), "bench output")
	for rd.Scan() {
		res, ok := rd.Result().(*benchfmt.Result)
		if !ok {
			continue // syntax errors: other output
		}
		pkg := res.GetConfig("pkg")
		if cpu := res.GetConfig("cpu"); cpu != "" && p.CPU == "" {
			p.CPU = cpu
		}
		name := benchName(res.Name)
		k := pkg + " " + name
		b := byKey[k]
		if b == nil {
			b = &Bench{Pkg: pkg, Name: name, Vals: map[string][]float64{}}
			byKey[k] = b
			p.Benches = append(p.Benches, b)
		}
		b.Runs++
		for _, v := range res.Values {
			// benchfmt tidies units (ns/op → sec/op); report them as the
			// benchmarks wrote them.
			unit, val := v.Unit, v.Value
			if v.OrigUnit != "" {
				unit, val = v.OrigUnit, v.OrigValue
			}
			if _, seen := b.Vals[unit]; !seen {
				b.Units = append(b.Units, unit)
			}
			b.Vals[unit] = append(b.Vals[unit], val)
		}
	}
	if err := rd.Err(); err != nil {
		return nil, err
	}
	// Notes: a second pass over the lines. go test prints the goos/pkg
	// header only with the first result, after what the first benchmark
	// printed, so a note belongs to the package of the next "ok" or "FAIL"
	// line, which ends every package's output.
	var pending []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "ok" || f[0] == "FAIL") && strings.Contains(f[1], ".") {
			if len(pending) > 0 {
				p.Notes[f[1]] = append(p.Notes[f[1]], pending...)
				pending = nil
			}
			continue
		}
		if !isChatter(line) {
			pending = append(pending, line)
		}
	}
	if len(pending) > 0 { // output cut short: no closing line
		p.Notes[""] = append(p.Notes[""], pending...)
	}
	return p, sc.Err()
}

// isChatter reports whether line is go test's own output or a benchmark
// result, not a line a benchmark printed for humans.
func isChatter(line string) bool {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
		return true // blank, or b.Log output (printed under --- BENCH, repeated)
	}
	for _, p := range []string{"Benchmark", "goos:", "goarch:", "pkg:", "cpu:", "PASS", "FAIL", "ok ", "ok\t", "--- ", "?", "time=", "exit status"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// benchName strips "Benchmark" (if still there) and the -GOMAXPROCS
// suffix.
func benchName(n benchfmt.Name) string {
	base, parts := n.Parts()
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(string(base), "Benchmark"))
	for _, p := range parts {
		if len(p) > 0 && p[0] == '-' {
			if _, err := strconv.Atoi(string(p[1:])); err == nil {
				continue
			}
		}
		b.Write(p)
	}
	return b.String()
}

// num formats a figure with three significant digits (thousands grouped).
func num(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// fig formats stats as "median (min–max)", or the median alone for one run.
func fig(s Stats, unit string) string {
	if s.N == 0 {
		return "—"
	}
	u := ""
	if unit != "" {
		u = " " + unit
	}
	if s.N == 1 || s.Min == s.Max {
		return num(s.Median) + u
	}
	return fmt.Sprintf("%s%s (%s–%s)", num(s.Median), u, num(s.Min), num(s.Max))
}

// Report is everything the markdown needs.
type Report struct {
	Parsed   *Parsed
	Count    int
	Machine  [][2]string // label, value
	Date     string
	Command  string
	Failed   map[string]string // package dir → why
	Packages []string          // package dirs run
}

// Verdicts counts the summary's targets.
func (r *Report) Verdicts() (pass, miss, missing int) {
	for _, s := range Specs {
		if s.Target == nil || !r.ran(s.Pkg) {
			continue
		}
		b := r.Parsed.Find(s.Pkg, s.Bench)
		if b == nil || b.Stat(s.Target.Metric).N == 0 {
			missing++
			continue
		}
		if s.Target.Met(b.Stat(s.Target.Metric).Median) {
			pass++
		} else {
			miss++
		}
	}
	return
}

func (r *Report) ran(dir string) bool {
	return r.Packages == nil || slices.Contains(r.Packages, dir)
}

// Markdown writes BENCHMARKS.md.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# drover benchmarks\n\n")
	fmt.Fprintf(&b, "Generated %s by `%s`. Every figure is the **median of %d run(s)** of its benchmark, with the range (min–max) in brackets; each run measures drover and its baseline in the same process, one after the other, so the ratio is computed per run and its median is shown. The machine is shared, so rates move between runs; see the ranges.\n\n",
		r.Date, r.Command, r.Count)
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	for _, m := range r.Machine {
		fmt.Fprintf(&b, "| %s | %s |\n", m[0], m[1])
	}
	b.WriteString("\n## Against the targets\n\n")
	b.WriteString("| stage (package) | drover | same-run baseline | ratio | target | result |\n|---|---|---|---|---|---|\n")
	for _, s := range Specs {
		if !r.ran(s.Pkg) {
			continue
		}
		bench := r.Parsed.Find(s.Pkg, s.Bench)
		target, result := "report", ""
		if s.Target != nil {
			target = s.Target.String()
		}
		if why, failed := r.Failed[s.Pkg]; failed && (bench == nil || bench.Stat(s.Drover).N == 0) {
			fmt.Fprintf(&b, "| %s (`%s`) | FAILED: %s | | | %s | **FAILED** |\n", s.Stage, s.Pkg, why, target)
			continue
		}
		if bench == nil || bench.Stat(s.Drover).N == 0 {
			fmt.Fprintf(&b, "| %s (`%s`) | not reported | | | %s | %s |\n", s.Stage, s.Pkg, target, map[bool]string{true: "**NO DATA**", false: ""}[s.Target != nil])
			continue
		}
		if s.Target != nil {
			st := bench.Stat(s.Target.Metric)
			switch {
			case st.N == 0:
				result = "**NO DATA**"
			case s.Target.Met(st.Median):
				result = "PASS"
			default:
				result = "**MISS**"
			}
		}
		base, ratio := "", ""
		if s.Baseline != "" {
			base = fig(bench.Stat(s.Baseline), s.Baseline)
		}
		if s.Ratio != "" {
			ratio = fig(bench.Stat(s.Ratio), "")
		}
		fmt.Fprintf(&b, "| %s (`%s`, %d run(s)) | %s | %s | %s | %s | %s |\n",
			s.Stage, s.Pkg, bench.Runs, fig(bench.Stat(s.Drover), s.Drover), base, ratio, target, result)
	}
	pass, miss, missing := r.Verdicts()
	fmt.Fprintf(&b, "\nTargets: %d met, %d missed, %d without data.\n", pass, miss, missing)

	b.WriteString("\n## Every figure\n")
	for _, bench := range r.Parsed.Benches {
		fmt.Fprintf(&b, "\n### %s `%s` (%d run(s))\n\n| metric | median | min | max |\n|---|---|---|---|\n",
			bench.Name, strings.TrimPrefix(bench.Pkg, modulePath+"/"), bench.Runs)
		for _, u := range bench.Units {
			st := bench.Stat(u)
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", u, num(st.Median), num(st.Min), num(st.Max))
		}
	}
	if len(r.Failed) > 0 {
		b.WriteString("\n## Failed packages\n\n")
		dirs := make([]string, 0, len(r.Failed))
		for d := range r.Failed {
			dirs = append(dirs, d)
		}
		sort.Strings(dirs)
		for _, d := range dirs {
			fmt.Fprintf(&b, "- `%s`: %s\n", d, r.Failed[d])
		}
	}
	var pkgs []string
	for p := range r.Parsed.Notes {
		if len(r.Parsed.Notes[p]) > 0 {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	if len(pkgs) > 0 {
		b.WriteString("\n## What the benchmarks printed\n")
		for _, p := range pkgs {
			label := strings.TrimPrefix(p, modulePath+"/")
			if p == "" {
				label = "(output cut short, package unknown)"
			}
			fmt.Fprintf(&b, "\n`%s`:\n\n```\n%s\n```\n", label, strings.Join(r.Parsed.Notes[p], "\n"))
		}
	}
	b.WriteString("\n## Reproduce\n\n")
	fmt.Fprintf(&b, "```sh\n%s\n```\n\nor `make bench` (`COUNT=%d`; the raw `go test` output goes to `.bench.out`). One package by hand, e.g. `go test -run '^$' -bench . -benchtime 1x -count %d ./bridge/`. The end-to-end benchmark reads `DROVER_BENCH_E2E_*` (see `bench/README.md`); the stage benchmarks read `DROVER_BENCH_N`.\n",
		r.Command, r.Count, r.Count)
	_, err := io.WriteString(w, b.String())
	return err
}
