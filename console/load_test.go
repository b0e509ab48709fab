package console_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// consoleMetrics scrapes the console's own /metrics: the Kafka requests
// by type, and the other counters by name.
func consoleMetrics(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || !(strings.HasPrefix(name, "drover_console_") || name == "process_cpu_seconds_total") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

func kafkaRequests(m map[string]float64) float64 {
	var n float64
	for k, v := range m {
		if strings.HasPrefix(k, "drover_console_kafka_requests_total") {
			n += v
		}
	}
	return n
}

// TestIntegrationConsoleLoad measures the console's own load on the stack
// with one page open: a standalone `drover console` process against drover
// dev, one headless chromium tab on a page for DROVER_CONSOLE_LOAD_SECONDS
// (default 60), the console's CPU and its requests to Kafka, the database
// and the stages, scaled to a minute. With no page open it must read
// nothing at all.
func TestIntegrationConsoleLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts drover dev and chromium")
	}
	secs := 60
	if v := os.Getenv("DROVER_CONSOLE_LOAD_SECONDS"); v != "" {
		var err error
		if secs, err = strconv.Atoi(v); err != nil || secs < 10 {
			t.Fatalf("DROVER_CONSOLE_LOAD_SECONDS=%q: want a number ≥ 10", v)
		}
	}
	_, env := startDev(t)
	p := startDrover(t, nil, "console", "--dev-env", "", "--kafka-brokers", env["DROVER_KAFKA_BROKERS"],
		"--schema-registry-url", env["DROVER_SCHEMA_REGISTRY_URL"], "--console-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--console-database-url", env["DROVER_CONSOLE_DATABASE_URL"], "--replication-cap", "1", "--stage-urls", env["DROVER_STAGE_URLS"])
	base, adminURL := waitListening(t, p)
	b := newBrowser(t, t.ArtifactDir())

	// Nobody looking: after start-up, not one request to Kafka.
	time.Sleep(3 * time.Second)
	idle0 := consoleMetrics(t, adminURL)
	time.Sleep(10 * time.Second)
	if d := kafkaRequests(consoleMetrics(t, adminURL)) - kafkaRequests(idle0); d != 0 {
		t.Fatalf("no page open, yet %v Kafka requests in 10 s", d)
	}
	for _, page := range []struct{ path, sel string }{
		{"/pipeline", `tr[data-table="sensor_readings"]`},
		{"/devices", `#device-map circle.marker`},
		{"/deadletters", `section h1`},
		{"/registry", `#registry-counts`},
	} {
		b.visit(t, base+page.path, page.sel, 60*time.Second)
		time.Sleep(6 * time.Second) // past the first snapshot's start-up reads
		m0 := consoleMetrics(t, adminURL)
		time.Sleep(time.Duration(secs) * time.Second)
		m1 := consoleMetrics(t, adminURL)
		perMin := func(k string) float64 { return (m1[k] - m0[k]) * 60 / float64(secs) }
		var kinds []string
		for k := range m1 {
			if strings.HasPrefix(k, "drover_console_kafka_requests_total") && m1[k] > m0[k] {
				kinds = append(kinds, fmt.Sprintf("%s=%.0f", strings.TrimSuffix(strings.TrimPrefix(k, `drover_console_kafka_requests_total{request="`), `"}`), perMin(k)))
			}
		}
		sort.Strings(kinds)
		kafka := (kafkaRequests(m1) - kafkaRequests(m0)) * 60 / float64(secs)
		cpu := perMin("process_cpu_seconds_total") / 60 * 100
		res := map[string]any{"page": page.path, "seconds": secs, "cpu_percent_of_one_core": round1(cpu), "kafka_requests_per_min": round1(kafka),
			"db_queries_per_min": round1(perMin("drover_console_db_queries_total")), "stage_requests_per_min": round1(perMin("drover_console_stage_requests_total")),
			"snapshots_per_min": round1(perMin("drover_console_snapshots_total")), "kafka_by_request": strings.Join(kinds, " ")}
		line, _ := json.Marshal(res)
		t.Logf("console load: %s", line)
		if kafka > 400 || perMin("drover_console_db_queries_total") > 200 || cpu > 25 {
			t.Errorf("%s: the console is not cheap to leave open: %s", page.path, line)
		}
	}
	// Closing the page stops the reads: the snapshots after two refresh
	// intervals, the registry view after three (and one tick).
	b.do(t, 10*time.Second, "close the page", chromedp.Navigate("about:blank"))
	time.Sleep(25 * time.Second)
	m0 := consoleMetrics(t, adminURL)
	time.Sleep(10 * time.Second)
	if m1 := consoleMetrics(t, adminURL); kafkaRequests(m1) != kafkaRequests(m0) {
		t.Fatalf("page closed, yet %v Kafka requests in 10 s (%v event streams open)", kafkaRequests(m1)-kafkaRequests(m0), m1["drover_console_event_streams"])
	}
}

func round1(v float64) float64 { return float64(int(v*10+0.5)) / 10 }

// waitListening returns the page and admin URLs a console process logged.
func waitListening(t *testing.T, p *proc) (string, string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, line := range strings.Split(p.Log(), "\n") {
			var m struct{ Msg, URL, Admin string }
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "console listening" {
				return m.URL, "http://" + m.Admin
			}
		}
	}
	t.Fatalf("console did not start:\n%s", p.Log())
	return "", ""
}
