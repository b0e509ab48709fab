package console_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationConsoleBrowser runs drover dev (console included) on free
// ports and drives the console in Debian's chromium: every page loads
// without console errors (screenshots kept as artefacts; -update copies
// them to screenshots/); the pipeline's counts agree with Kafka and the
// database; a malformed MQTT message shows up on the dead-letter page and
// is re-driven from it after a routes fix, and not without the token; a
// device's map marker sits where its last fix says; a down stage is red.
func TestIntegrationConsoleBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts drover dev and chromium")
	}
	routesFile := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(routesFile, routes.DefaultYAML(), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, env := startDev(t, "--console-routes", routesFile)
	base := env["DROVER_CONSOLE_URL"]
	for _, k := range []string{"DROVER_CONSOLE_URL", "DROVER_OPERATOR_TOKEN_FILE", "DROVER_CONSOLE_DATABASE_URL", "DROVER_STAGE_URLS"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s: %v\n%s", k, env, dev.Log())
		}
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("console not on loopback: %s", base)
	}
	shots := t.ArtifactDir()
	b := newBrowser(t, shots)
	ctx := context.Background()
	kc, err := kgo.NewClient(kgo.SeedBrokers(env["DROVER_KAFKA_BROKERS"]))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	db, err := pgx.Connect(ctx, env["DROVER_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	// drover dev's bridge enforces the device registry: the devices the
	// subtests publish as are registered under tenant farm9 with `drover
	// devices`, the operators' CLI (an independent writer of
	// devices.registry).
	droverCLI(t, env, "tenants", "add", "farm9", "--no-ca")

	t.Run("pipeline", func(t *testing.T) {
		b.visit(t, base+"/pipeline", `[data-node="bridge"][data-status="ok"]`, 90*time.Second)
		b.do(t, 90*time.Second, "stages ready", chromedp.WaitVisible(chromedp.CSS(`[data-node="sink"][data-status="ok"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-node="features"][data-status="ok"]`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-table="sensor_readings"]`)), chromedp.WaitVisible(chromedp.CSS(`[data-edge="devices>bridge"] text`)))
		// The table counts are memoized for up to 15 s: the first
		// snapshot may predate the sink's first GPS row. Wait for a
		// refresh that has rows in every table, then compare.
		b.do(t, 60*time.Second, "table counts refreshed", chromedp.WaitVisible(chromedp.CSS(`tr[data-table="sensor_readings"]:not([data-rows="0"])`)),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-table="gps_fixes"]:not([data-rows="0"])`)), chromedp.WaitVisible(chromedp.CSS(`tr[data-table="device_state"]:not([data-rows="0"])`)))
		b.screenshot(t, "pipeline")
		checkCounts(t, b, kc, db)
	})
	t.Run("catalogue", func(t *testing.T) {
		b.visit(t, base+"/catalogue", `tr[data-catalogue-topic="raw.sensor"]`, 60*time.Second)
		b.screenshot(t, "catalogue")
		b.visit(t, base+"/catalogue/raw.sensor", `tr[data-field="metric"]`, 60*time.Second)
		if c := b.attr(t, `[data-check]`, "data-check"); c != "identical" {
			t.Fatalf("raw.sensor BACKWARD check %q, want identical", c)
		}
		b.screenshot(t, "catalogue-topic")
	})
	t.Run("dead letters", func(t *testing.T) { redriveFromPage(t, b, env, kc, routesFile) })
	t.Run("devices", func(t *testing.T) { checkMap(t, b, env, db) })
	t.Run("registry", func(t *testing.T) { checkRegistry(t, b, env) })
	t.Run("alerts", func(t *testing.T) {
		b.visit(t, base+"/alerts", `section h1`, 30*time.Second)
		b.do(t, 30*time.Second, "alerts read", chromedp.WaitNotPresent(`//p[contains(., "Reading alerts")]`))
		b.screenshot(t, "alerts")
	})
	t.Run("down stage is red", func(t *testing.T) { downStage(t, b, env) })
	if *update {
		for _, n := range []string{"pipeline", "catalogue", "catalogue-topic", "deadletters", "deadletter", "devices", "device", "registry", "alerts"} {
			copyFile(t, filepath.Join(shots, n+".png"), filepath.Join("screenshots", n+".png"))
		}
	}
}

// checkCounts compares the pipeline page's figures with Kafka's end offsets
// and the database's row counts read right after: the page may lag (its
// snapshot is up to one refresh old, table counts up to 15 s), never lead.
func checkCounts(t *testing.T, b *browser, kc *kgo.Client, db *pgx.Conn) {
	ctx := context.Background()
	const slack = 500 // ~20 s of the dev simulator's rate
	for _, topic := range []string{topics.RawSensor, topics.RawGPS, topics.DLQ} {
		page := atoi(t, b.attr(t, fmt.Sprintf(`tr[data-topic=%q]`, topic), "data-end"))
		ends, err := kadm.NewClient(kc).ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		var kafka int64
		ends.Each(func(o kadm.ListedOffset) { kafka += o.Offset })
		if page > kafka || kafka-page > slack || (topic == topics.RawSensor && page == 0) {
			t.Errorf("%s: page says end %d, Kafka %d", topic, page, kafka)
		}
	}
	for _, table := range []string{"sensor_readings", "gps_fixes", "device_state"} {
		page := atoi(t, b.attr(t, fmt.Sprintf(`tr[data-table=%q]`, table), "data-rows"))
		var rows int64
		if err := db.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if page > rows || rows-page > slack || page == 0 {
			t.Errorf("%s: page says %d rows, the database %d", table, page, rows)
		}
	}
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// redriveFromPage publishes a reading to a channel no route knows, finds
// its dead letter on the page, dry-runs (still failing), fixes the routes
// file, dry-runs again (would go to raw.sensor), is refused without the
// token, signs in and re-drives; the record then is on raw.sensor.
func redriveFromPage(t *testing.T, b *browser, env map[string]string, kc *kgo.Client, routesFile string) {
	base := env["DROVER_CONSOLE_URL"]
	device := fmt.Sprintf("cow-dlq-%d", time.Now().UnixNano()%1e6)
	droverCLI(t, env, "devices", "add", "farm9/"+device, "--type", "collar")
	topic := "devices/farm9/" + device + "/collar"
	publish(t, env, topic, fmt.Appendf(nil, `{"ts":%q,"metric":"temperature","value":38.9,"unit":"Cel"}`, time.Now().UTC().Format(time.RFC3339)))
	row := fmt.Sprintf(`tr[data-source=%q]`, topic)
	b.visit(t, base+"/deadletters?since=15m&device="+device, row, 60*time.Second)
	if r := b.attr(t, row, "data-reason"); r != "unknown_channel" {
		t.Fatalf("dead letter reason %q, want unknown_channel", r)
	}
	b.screenshot(t, "deadletters")
	letter := b.attr(t, row, "data-letter")

	b.do(t, 30*time.Second, "select and dry run", chromedp.Click(chromedp.CSS(row+` input[type=checkbox]`)), chromedp.Click(chromedp.CSS(`#dry-run`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#dry-run-result tr[data-outcome=%q][data-status="still_failing"]`, letter))))

	// The routes fix: a route for the new channel, picked up at the next run.
	fixed := string(routes.DefaultYAML()) + "  - name: collar\n    match: devices/{tenant}/{device}/collar\n    decoder: sensor\n    topic: raw.sensor\n    source: collar\n"
	if err := os.WriteFile(routesFile, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	b.do(t, 30*time.Second, "dry run after the fix", chromedp.Click(chromedp.CSS(`#dry-run`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#dry-run-result tr[data-outcome=%q][data-status="redriven"]`, letter))))
	if got := b.attr(t, fmt.Sprintf(`#dry-run-result tr[data-outcome=%q]`, letter), "data-status"); got != "redriven" {
		t.Fatalf("dry run outcome %q", got)
	}
	if n := recordsFor(t, kc, device, 0, 2*time.Second); n != 0 {
		t.Fatalf("the dry run produced %d records", n)
	}

	// Without the token: refused, nothing produced.
	b.do(t, 30*time.Second, "re-drive without token", chromedp.Click(chromedp.CSS(`#redrive`)),
		chromedp.WaitVisible(`//p[@id="action-error"]//*[contains(., "needs the operator token")]`))
	b.takeErrors() // the browser logs the 401 as a failed load: expected here
	if n := recordsFor(t, kc, device, 0, 2*time.Second); n != 0 {
		t.Fatalf("a re-drive without the token produced %d records", n)
	}
	p, o, _ := strings.Cut(letter, "/")
	body := fmt.Appendf(nil, `{"letters":[{"partition":%s,"offset":%s,"time":%q}],"dry_run":false}`, p, o, time.Now().UTC().Format(time.RFC3339Nano))
	for _, tok := range []string{"", "wrong-token-wrong-token"} {
		if code := getJSON(t, "POST", base+"/api/deadletters/redrive", tok, body, nil); code != 401 {
			t.Fatalf("POST redrive with token %q: HTTP %d, want 401", tok, code)
		}
	}

	token, err := os.ReadFile(env["DROVER_OPERATOR_TOKEN_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	b.do(t, 30*time.Second, "sign in", chromedp.SendKeys(chromedp.CSS(`input[name=token]`), strings.TrimSpace(string(token))),
		chromedp.Click(chromedp.CSS(`.operator button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`.operator .badge.ok`)))
	b.do(t, 30*time.Second, "re-drive with the token", chromedp.Click(chromedp.CSS(`#redrive`)),
		chromedp.WaitVisible(chromedp.CSS(`#redrive-result [data-redriven="1"]`)))
	if errs := b.takeErrors(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
	if n := recordsFor(t, kc, device, 1, 30*time.Second); n != 1 {
		t.Fatalf("raw.sensor holds %d re-driven records for %s, want 1", n, device)
	}
	b.visit(t, base+"/deadletters/"+letter, `#letter-payload`, 30*time.Second)
	payload := b.text(t, `#letter-payload`)
	if !strings.Contains(payload, `"value":38.9`) {
		t.Fatalf("original bytes not shown: %q", payload)
	}
	b.screenshot(t, "deadletter")
}

// recordsFor counts the re-driven raw.sensor records keyed farm9/device: it
// reads until want are there or wait passes, then 2 s more so a duplicate
// would show.
func recordsFor(t *testing.T, kc *kgo.Client, device string, want int, wait time.Duration) int {
	t.Helper()
	cl, err := kgo.NewClient(append(kc.Opts(), kgo.ConsumeTopics(topics.RawSensor), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	n := 0
	count := func(ctx context.Context) {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if string(r.Key) == "farm9/"+device && h.Key == dlq.HeaderRedriven {
					n++
				}
			}
		})
	}
	for ctx.Err() == nil && (want == 0 || n < want) {
		count(ctx)
	}
	more, cancelMore := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelMore()
	for more.Err() == nil {
		count(more)
	}
	return n
}

// checkMap publishes a fix for a new device and checks its marker sits at
// the projected position of the last fix in gps_fixes.
func checkMap(t *testing.T, b *browser, env map[string]string, db *pgx.Conn) {
	base := env["DROVER_CONSOLE_URL"]
	device := fmt.Sprintf("cow-map-%d", time.Now().UnixNano()%1e6)
	droverCLI(t, env, "devices", "add", "farm9/"+device, "--type", "collar")
	for i, p := range [][2]float64{{52.4712, -7.8612}, {52.4705, -7.8575}} {
		ts := time.Now().UTC().Add(time.Duration(i-2) * time.Second).Format(time.RFC3339)
		publish(t, env, "devices/farm9/"+device+"/gps", fmt.Appendf(nil, `{"ts":%q,"lat":%v,"lon":%v}`, ts, p[0], p[1]))
	}
	marker := fmt.Sprintf(`circle[data-device="farm9/%s"]`, device)
	// The table and map follow state.latest: wait for the second fix.
	deadline := time.Now().Add(90 * time.Second)
	b.visit(t, base+"/devices", `#device-map`, 60*time.Second)
	for {
		if b.count(t, marker+`[data-lat="52.4705"]`) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no marker at the last fix for %s", device)
		}
		time.Sleep(time.Second)
	}
	var lat, lon float64
	if err := db.QueryRow(context.Background(), `SELECT lat, lon FROM gps_fixes WHERE tenant = 'farm9' AND device_id = $1 ORDER BY ts DESC LIMIT 1`, device).Scan(&lat, &lon); err != nil {
		t.Fatal(err)
	}
	f := func(sel, a string) float64 {
		v, err := strconv.ParseFloat(b.attr(t, sel, a), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	minLon, maxLat, k, cosLat, pad := f("#device-map", "data-min-lon"), f("#device-map", "data-max-lat"), f("#device-map", "data-k"), f("#device-map", "data-coslat"), f("#device-map", "data-pad")
	wantX, wantY := pad+(lon-minLon)*cosLat*k, pad+(maxLat-lat)*k
	if cx, cy := f(marker, "cx"), f(marker, "cy"); math.Abs(cx-wantX) > 0.5 || math.Abs(cy-wantY) > 0.5 {
		t.Fatalf("marker at (%.2f, %.2f), the last fix (%v, %v) projects to (%.2f, %.2f)", cx, cy, lat, lon, wantX, wantY)
	}
	b.screenshot(t, "devices")
	sim := b.attr(t, `tbody tr[data-device]:not([data-device^="farm9/"])`, "data-device")
	// Its page: shadow, charts of the simulator's devices, the last fix.
	b.visit(t, base+"/devices/farm9/"+device, `#last-fix`, 30*time.Second)
	fix := b.text(t, `#last-fix`)
	if !strings.HasPrefix(fix, fmt.Sprintf("%.6f, %.6f", lat, lon)) {
		t.Fatalf("device page last fix %q, want %v, %v", fix, lat, lon)
	}
	// A simulated device's page has charts of its readings.
	b.visit(t, base+"/devices/"+sim, `figure.chart[data-points]`, 30*time.Second)
	b.screenshot(t, "device")
}

// checkRegistry changes the device registry with `drover devices` (the
// operators' CLI, an independent writer of devices.registry) and watches
// the pages follow without a reload: a simulated device (registered by
// drover dev) shows active, then suspended on the Devices page and its
// own page; a registered device that never sent data, and a sender the
// bridge refused as unknown_device, show on the Registry page;
// re-activated, the device shows active.
func checkRegistry(t *testing.T, b *browser, env map[string]string) {
	base := env["DROVER_CONSOLE_URL"]
	devices := func(args ...string) { t.Helper(); droverCLI(t, env, append([]string{"devices"}, args...)...) }
	b.visit(t, base+"/devices", `tbody tr[data-device] [data-reg]`, 60*time.Second)
	sim := b.attr(t, `tbody tr[data-device]:not([data-device^="farm9/"])`, "data-device")
	row := fmt.Sprintf(`tbody tr[data-device=%q]`, sim)
	if got := b.attr(t, row+` [data-reg]`, "data-reg"); got != "active" {
		t.Fatalf("%s: registry status %q, want active (drover dev registers the simulator's herd)", sim, got)
	}
	gate := fmt.Sprintf("farm9/gate-%d", time.Now().UnixNano()%1e6)
	stray := fmt.Sprintf("farm9/stray-%d", time.Now().UnixNano()%1e6)
	devices("add", gate, "--type", "gate", "--label", "herd=north", "--label", "paddock=p7")
	// An unregistered device's reading: the bridge dead-letters it as
	// unknown_device, and the Registry page lists its sender.
	publish(t, env, "devices/"+stray+"/sensor", fmt.Appendf(nil, `{"ts":%q,"metric":"temperature","value":38.1,"unit":"Cel"}`, time.Now().UTC().Format(time.RFC3339)))
	devices("suspend", sim)
	b.do(t, 60*time.Second, "suspended on the devices page", chromedp.WaitVisible(chromedp.CSS(row+`.bad [data-reg="suspended"]`)))
	b.screenshot(t, "devices")

	gateRow := fmt.Sprintf(`#registry-devices tr[data-device=%q]`, gate)
	b.visit(t, base+"/registry", `#registry-devices`, 60*time.Second)
	b.do(t, 60*time.Second, "registry page", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#registry-devices tr[data-device=%q] [data-reg="suspended"]`, sim))),
		chromedp.WaitVisible(chromedp.CSS(gateRow+` [data-reg="active"]`)))
	if seen := b.text(t, gateRow+` td:nth-child(7)`); seen != "never" {
		t.Fatalf("%s last seen %q, want never", gate, seen)
	}
	if lbl := b.text(t, gateRow+` td.labels`); !strings.Contains(lbl, "herd=north") || !strings.Contains(lbl, "paddock=p7") {
		t.Fatalf("%s labels %q", gate, lbl)
	}
	// The page re-reads the database's dead letters as the sink stores
	// them: wait for the refused sender.
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(b.text(t, `section`), stray) {
		if time.Now().After(deadline) {
			t.Fatalf("the refused sender %s is not listed as unregistered: %q", stray, b.text(t, `section`))
		}
		time.Sleep(2 * time.Second)
		b.visit(t, base+"/registry", `#registry-devices`, 60*time.Second)
	}
	if b.count(t, `#registry-devices tr[data-device=`+strconv.Quote(stray)+`]`) != 0 {
		t.Fatalf("%s is listed as registered", stray)
	}
	b.screenshot(t, "registry")

	devices("activate", sim)
	tenant, id, _ := strings.Cut(sim, "/")
	b.visit(t, base+"/devices/"+tenant+"/"+id, `#registry-status [data-reg]`, 30*time.Second)
	b.do(t, 60*time.Second, "active again", chromedp.WaitVisible(chromedp.CSS(`#registry-status [data-reg="active"]`)))
	if errs := b.takeErrors(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
}

// downStage runs a second, standalone console against the stack that also
// watches a media stage which is not running: its node is red. The same
// run proves `drover console` refuses the superuser database URL.
func downStage(t *testing.T, b *browser, env map[string]string) {
	out, code := runDrover(t, "console", "--dev-env", "", "--kafka-brokers", env["DROVER_KAFKA_BROKERS"], "--schema-registry-url", env["DROVER_SCHEMA_REGISTRY_URL"],
		"--console-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--console-database-url", env["DROVER_DATABASE_URL"])
	if code != 2 || !strings.Contains(out, "must not be a superuser") {
		t.Fatalf("superuser URL: exit %d, want 2 naming the superuser:\n%s", code, out)
	}
	p := startDrover(t, nil, "console", "--dev-env", "", "--kafka-brokers", env["DROVER_KAFKA_BROKERS"], "--schema-registry-url", env["DROVER_SCHEMA_REGISTRY_URL"],
		"--console-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--console-database-url", env["DROVER_CONSOLE_DATABASE_URL"], "--replication-cap", "1",
		"--stage-urls", withStage(env["DROVER_STAGE_URLS"], "media=http://127.0.0.1:1"))
	u, adm := waitListening(t, p)
	b.visit(t, u+"/pipeline", `[data-node="media"][data-status="down"]`, 60*time.Second)
	b.do(t, 30*time.Second, "bridge up", chromedp.WaitVisible(chromedp.CSS(`[data-node="bridge"][data-status="ok"]`)))
	if code := getJSON(t, "GET", adm+"/readyz", "", nil, nil); code != 200 {
		t.Fatalf("console /readyz: HTTP %d", code)
	}
	var info struct{ Actions bool }
	if code := getJSON(t, "GET", u+"/api/info", "", nil, &info); code != 200 || info.Actions {
		t.Fatalf("standalone console without a token: HTTP %d, actions %v (want read-only)", code, info.Actions)
	}
	body := []byte(`{"letters":[{"partition":0,"offset":0,"time":"2026-01-01T00:00:00Z"}],"dry_run":false}`)
	if code := getJSON(t, "POST", u+"/api/deadletters/redrive", "anything-anything-1", body, nil); code != 403 {
		t.Fatalf("re-drive on a read-only console: HTTP %d, want 403", code)
	}
}

// withStage replaces (or adds) one NAME=URL of a --stage-urls list.
func withStage(list, stage string) string {
	name, _, _ := strings.Cut(stage, "=")
	out := []string{stage}
	for _, s := range strings.Split(list, ",") {
		if n, _, _ := strings.Cut(s, "="); n != name && s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, ",")
}

// droverCLI runs one drover command against drover dev's Kafka and schema
// registry and fails the test if it does not exit 0.
func droverCLI(t *testing.T, env map[string]string, args ...string) {
	t.Helper()
	args = append(args, "--dev-env", "", "--kafka-brokers", env["DROVER_KAFKA_BROKERS"], "--schema-registry-url", env["DROVER_SCHEMA_REGISTRY_URL"])
	if out, code := runDrover(t, args...); code != 0 {
		t.Fatalf("drover %v: exit %d\n%s", args, code, out)
	}
}

func runDrover(t *testing.T, args ...string) (string, int) {
	t.Helper()
	p := startDrover(t, nil, args...)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("drover %v did not exit", args)
	}
	return p.Log(), p.cmd.ProcessState.ExitCode()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, in); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
