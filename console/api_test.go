package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/console"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// apiConsole is a console over kfake and the embedded registry, with one
// live stage (an admin server) and one that is down, and a token file.
var metricsReg = prometheus.NewRegistry()

func apiConsole(t *testing.T) (*httptest.Server, *kgo.Client, *schemas.Serde, string, *syncBuffer) {
	t.Helper()
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	cat = cat.WithReplicationCap(1)
	var names []string
	for _, tp := range cat.Topics {
		names = append(names, tp.Name)
	}
	c := devtest.Kafka(t, kfake.SeedTopics(2, names...))
	_, regURL := devtest.Registry(t)
	reg, err := sr.NewClient(sr.URLs(regURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, reg, nil); err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	adm := admin.New("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err := adm.Listen(); err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	go func() { _ = adm.Run(actx) }()
	t.Cleanup(acancel)
	token := filepath.Join(t.TempDir(), "token")
	// Two operators, each with a token: the action log names who acted.
	if err := os.WriteFile(token, []byte("# operators of the test\nalice 0123456789abcdef0123\nbob   fedcba98765432100123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := console.New(console.Config{Kafka: kc, Log: slog.New(slog.NewJSONHandler(logs, nil)), Registerer: metricsReg, Registry: reg, Serde: serde, Catalogue: cat, TokenFile: token, Refresh: time.Second,
		RedriveStateFile: filepath.Join(t.TempDir(), "redriven.txt"),
		Stages:           []console.Target{console.StaticTarget("bridge", "http://"+adm.Addr()), console.StaticTarget("sink", "http://127.0.0.1:1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs, kc, serde, "0123456789abcdef0123", logs
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// records returns the logged records whose msg is msg.
func (b *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(b.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func call(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestIntegrationConsoleAPI checks the API without a browser: stage
// health, the catalogue, dead letters with their bytes, the token rules
// of a re-drive, the page's assets and headers, and the database pages
// without a database.
func TestIntegrationConsoleAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	hs, kc, serde, token, logs := apiConsole(t)
	u := hs.URL

	var snap console.Snapshot
	code, b := call(t, "GET", u+"/api/pipeline", "", "")
	if code != 200 || json.Unmarshal(b, &snap) != nil {
		t.Fatalf("pipeline: %d %s", code, b)
	}
	st := map[string]console.StageStatus{}
	for _, s := range snap.Stages {
		st[s.Name] = s
	}
	if !st["bridge"].Up || !st["bridge"].Ready || st["bridge"].Metrics["process_cpu_seconds_total"] == 0 {
		t.Fatalf("live stage: %+v", st["bridge"])
	}
	if st["sink"].Up || st["sink"].Error == "" {
		t.Fatalf("down stage reported up: %+v", st["sink"])
	}

	var cat []console.CatalogueTopic
	if code, b = call(t, "GET", u+"/api/catalogue", "", ""); code != 200 || json.Unmarshal(b, &cat) != nil {
		t.Fatalf("catalogue: %d %s", code, b)
	}
	found := false
	for _, c := range cat {
		if c.Name == topics.RawSensor {
			found = c.Check == "identical" && c.Partitions == 2 && c.Subject == "raw.sensor-value" && len(c.Drift) > 0
		}
	}
	if !found {
		t.Fatalf("raw.sensor row wrong (want identical schema and drift: seeded with 2 partitions): %s", b)
	}
	if code, _ = call(t, "GET", u+"/api/catalogue/no.such.topic", "", ""); code != 404 {
		t.Fatalf("unknown topic: HTTP %d", code)
	}

	// A dead letter with bytes that are not valid UTF-8.
	now := time.Now().UTC().Truncate(time.Millisecond)
	tenant, dev := "farm1", "cow-1"
	dl := schemas.DeadLetter{ID: "x1", Stage: "decode", Reason: "not_json", Message: "bad", Source: "devices/farm1/cow-1/sensor",
		Tenant: &tenant, DeviceID: &dev, Payload: []byte("\xff\xfe{bad\u202e"), PayloadSize: 9, Headers: map[string]string{}, ReceivedAt: now, TS: now, IngestedAt: now}
	v, err := serde.Encode(context.Background(), topics.DLQ, &dl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.ProduceSync(context.Background(), &kgo.Record{Topic: topics.DLQ, Value: v, Timestamp: now}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var list console.LetterList
	if code, b = call(t, "GET", u+"/api/deadletters?since=10m&device=cow-1", "", ""); code != 200 || json.Unmarshal(b, &list) != nil || len(list.Letters) != 1 {
		t.Fatalf("dead letters: %d %s", code, b)
	}
	l := list.Letters[0]
	if l.Excerpt != `\xff\xfe{bad\xe2\x80\xae` {
		t.Fatalf("excerpt %q: unprintable bytes and bidi overrides must be escaped", l.Excerpt)
	}
	if code, _ = call(t, "GET", u+"/api/deadletters?since=yesterday", "", ""); code != 400 {
		t.Fatalf("bad since: HTTP %d", code)
	}
	var d console.LetterDetail
	if code, b = call(t, "GET", u+"/api/deadletters/"+itoa(int64(l.Partition))+"/"+itoa(l.Offset), "", ""); code != 200 || json.Unmarshal(b, &d) != nil || string(d.PayloadBase64) != string(dl.Payload) {
		t.Fatalf("letter: %d %s", code, b)
	}

	body := `{"letters":[{"partition":` + itoa(int64(l.Partition)) + `,"offset":` + itoa(l.Offset) + `,"time":"` + l.Time.Format(time.RFC3339Nano) + `"}],"dry_run":%s}`
	var rr console.RedriveResponse
	if code, b = call(t, "POST", u+"/api/deadletters/redrive", "", strings.Replace(body, "%s", "true", 1)); code != 200 || json.Unmarshal(b, &rr) != nil ||
		len(rr.Outcomes) != 1 || rr.Outcomes[0].Status != "still_failing" {
		t.Fatalf("dry run without token (allowed, writes nothing): %d %s", code, b)
	}
	for _, tok := range []string{"", "0123456789abcdef0124"} {
		if code, _ = call(t, "POST", u+"/api/deadletters/redrive", tok, strings.Replace(body, "%s", "false", 1)); code != 401 {
			t.Fatalf("re-drive with token %q: HTTP %d, want 401", tok, code)
		}
	}
	if code, b = call(t, "POST", u+"/api/deadletters/redrive", token, strings.Replace(body, "%s", "false", 1)); code != 200 {
		t.Fatalf("re-drive with the token: %d %s", code, b)
	}
	if code, _ = call(t, "POST", u+"/api/session", "fedcba98765432100123", ""); code != 204 {
		t.Fatalf("session with bob's token: %d", code)
	}
	// Every action and every refusal is logged: who (address, operator,
	// token fingerprint, never the token), what (action, the letters picked
	// by partition/offset, the routes) and what it did.
	ref := itoa(int64(l.Partition)) + "/" + itoa(l.Offset)
	if refused := logs.records(t, "console action refused"); len(refused) != 2 {
		t.Errorf("%d refusals logged, want 2 (no token, wrong token):\n%s", len(refused), logs)
	} else {
		for _, r := range refused {
			if r["action"] != "redrive" || !strings.HasPrefix(r["remote"].(string), "127.0.0.1:") {
				t.Errorf("refusal logged without action or caller: %v", r)
			}
		}
	}
	acts := map[string]map[string]any{}
	for _, r := range logs.records(t, "console action") {
		acts[r["action"].(string)] = r
	}
	if r := acts["redrive"]; r == nil || !strings.HasPrefix(r["operator"].(string), "alice (token:") || r["selected"] != ref ||
		r["redriven"] != 0.0 || r["still_failing"] != 1.0 || r["routes"] != "embedded" || !strings.HasPrefix(r["remote"].(string), "127.0.0.1:") {
		t.Errorf("re-drive logged as %v, want alice, letter %s, its outcome and the routes", r, ref)
	}
	if r := acts["redrive dry run"]; r == nil || r["selected"] != ref || r["operator"] != "" {
		t.Errorf("dry run logged as %v, want letter %s and no operator", r, ref)
	}
	if r := acts["sign in"]; r == nil || !strings.HasPrefix(r["operator"].(string), "bob (token:") {
		t.Errorf("sign in logged as %v, want bob", r)
	}
	for _, secret := range []string{token, "fedcba98765432100123", "0123456789abcdef0124"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds a token the caller sent (%s)", secret)
		}
	}

	if code, b = call(t, "GET", u+"/api/devices", "", ""); code != 503 || !strings.Contains(string(b), "no database") {
		t.Fatalf("devices without a database: %d %s", code, b)
	}
	checkRegistryAPI(t, u, kc, serde)
	if code, b = call(t, "GET", u+"/api/paddocks", "", ""); code != 200 || !strings.Contains(string(b), `"Polygon"`) {
		t.Fatalf("paddocks: %d %s", code, b)
	}
	mfs, err := metricsReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]bool{}
	for _, mf := range mfs {
		counted[mf.GetName()] = len(mf.GetMetric()) > 0
	}
	if !counted["drover_console_kafka_requests_total"] || !counted["drover_console_stage_requests_total"] {
		t.Fatalf("the console's own requests are not counted: %v", counted)
	}
	for _, path := range []string{"/", "/devices/farm1/cow-1"} {
		resp, err := http.Get(u + path)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.Contains(string(page), `<div id="app">`) || !strings.Contains(csp, "default-src 'self'") {
			t.Fatalf("%s: %d csp %q\n%s", path, resp.StatusCode, csp, page)
		}
	}
	if code, _ = call(t, "GET", u+"/api/nope", "", ""); code != 404 {
		t.Fatalf("unknown API: %d", code)
	}
}

// checkRegistryAPI writes the device registry with registry.Store, as
// `drover devices` does, and reads it back through /api/registry: the
// view starts on the first read, follows a status change, and filters.
func checkRegistryAPI(t *testing.T, u string, kc *kgo.Client, serde *schemas.Serde) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var list console.RegistryList
	if code, b := call(t, "GET", u+"/api/registry", "", ""); code != 200 || json.Unmarshal(b, &list) != nil || len(list.Devices) != 0 || list.Topic != topics.DevicesRegistry {
		t.Fatalf("empty registry: %d %s", code, b)
	}
	view, err := registry.NewView(kc.Opts(), serde)
	if err != nil {
		t.Fatal(err)
	}
	vctx, vcancel := context.WithCancel(context.Background())
	defer vcancel()
	go func() { _ = view.Run(vctx) }()
	if err := view.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore(view, kc, serde, registry.WithActor("test"))
	if _, err := store.AddTenant(ctx, "farm1", ""); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []registry.NewDevice{
		{Tenant: "farm1", ID: "cow-1", Type: "collar", Labels: map[string]string{"herd": "north"}},
		{Tenant: "farm1", ID: "gate-1", Type: "gate", AltIDs: map[string]string{registry.AltDevEUI: "70b3d57ed0001234"}},
	} {
		if _, err := store.Add(ctx, nd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.SetStatus(ctx, "farm1", "cow-1", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	// The console's view reads the change within a few fetches.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b := call(t, "GET", u+"/api/registry?q=herd=north", "", "")
		list = console.RegistryList{}
		if code == 200 && json.Unmarshal(b, &list) == nil && len(list.Devices) == 1 && list.Devices[0].Status == "suspended" {
			d := list.Devices[0]
			if d.DeviceID != "cow-1" || d.Type != "collar" || d.Labels["herd"] != "north" || !d.Secret || d.Actor != "test" || d.LastSeen != nil {
				t.Fatalf("registry device %+v", d)
			}
			if list.ByStatus["suspended"] != 1 || list.ByStatus["active"] != 1 || len(list.Tenants) != 1 || list.Tenants[0].Devices["active"] != 1 {
				t.Fatalf("registry counts %+v tenants %+v", list.ByStatus, list.Tenants)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the suspended device never showed: %d %s", code, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, b := call(t, "GET", u+"/api/registry?status=active", "", ""); code != 200 || json.Unmarshal(b, &list) != nil ||
		len(list.Devices) != 1 || list.Devices[0].DeviceID != "gate-1" || list.Devices[0].AltIDs[registry.AltDevEUI] != "70b3d57ed0001234" {
		t.Fatalf("registry?status=active: %d %s", code, b)
	}
	if code, b := call(t, "GET", u+"/api/registry?status=lost", "", ""); code != 400 {
		t.Fatalf("registry?status=lost: %d %s, want 400", code, b)
	}

	// A re-drive checks the registry as drover dlq redrive does (auto:
	// enforce, the topic exists): the suspended device's reading still
	// fails (device_revoked), the active device's would be re-driven.
	now := time.Now().UTC().Truncate(time.Millisecond)
	var refs []string
	for _, dev := range []string{"cow-1", "gate-1"} {
		tenant, dev := "farm1", dev
		payload := fmt.Appendf(nil, `{"ts":%q,"metric":"temperature","value":38.5,"unit":"Cel"}`, now.Format(time.RFC3339))
		dl := schemas.DeadLetter{ID: "reg-" + dev, Stage: "decode", Reason: "unknown_channel", Message: "was not routed", Source: "devices/farm1/" + dev + "/sensor",
			Tenant: &tenant, DeviceID: &dev, Payload: payload, PayloadSize: int64(len(payload)), Headers: map[string]string{}, ReceivedAt: now, TS: now, IngestedAt: now}
		v, err := serde.Encode(ctx, topics.DLQ, &dl)
		if err != nil {
			t.Fatal(err)
		}
		r, err := kc.ProduceSync(ctx, &kgo.Record{Topic: topics.DLQ, Value: v, Timestamp: now}).First()
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, fmt.Sprintf(`{"partition":%d,"offset":%d,"time":%q}`, r.Partition, r.Offset, now.Format(time.RFC3339Nano)))
	}
	var rr console.RedriveResponse
	code, b := call(t, "POST", u+"/api/deadletters/redrive", "", `{"letters":[`+strings.Join(refs, ",")+`],"dry_run":true}`)
	if code != 200 || json.Unmarshal(b, &rr) != nil || len(rr.Outcomes) != 2 {
		t.Fatalf("dry run of the registry letters: %d %s", code, b)
	}
	seen := 0
	for _, oc := range rr.Outcomes {
		switch oc.ID {
		case "reg-cow-1":
			seen++
			if oc.Status != "still_failing" || oc.Reason != "device_revoked" {
				t.Errorf("suspended device's letter: %+v, want still_failing device_revoked", oc.Outcome)
			}
		case "reg-gate-1":
			seen++
			if oc.Status != "redriven" || oc.Topic != topics.RawSensor {
				t.Errorf("active device's letter: %+v, want redriven to raw.sensor", oc.Outcome)
			}
		}
	}
	if seen != 2 {
		t.Errorf("outcomes %s: want one for each registry letter", b)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestAssetsOffline: the built page loads nothing from outside the console.
func TestAssetsOffline(t *testing.T) {
	var files []string
	err := filepath.WalkDir("dist", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) < 3 {
		t.Fatalf("dist/ holds %v (%v): run make console-assets", files, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), " ", "")
		for _, bad := range []string{`src="http`, `href="http`, `url(http`, `from"http`, `import("http`, `src='http`, `href='http`, `//fonts.`, `cdn.`} {
			if strings.Contains(s, bad) {
				t.Errorf("%s loads from outside the console (%s)", f, bad)
			}
		}
	}
	idx, _ := os.ReadFile("dist/index.html")
	for _, ref := range []string{"/assets/index-", "/assets/style-"} {
		i := strings.Index(string(idx), ref)
		if i < 0 {
			t.Fatalf("dist/index.html does not reference %s*", ref)
		}
		name := string(idx[i+1:])
		name = name[:strings.IndexAny(name, `"'`)]
		if _, err := os.Stat(filepath.Join("dist", name)); err != nil {
			t.Fatalf("dist/index.html references %s, which is not built: %v", name, err)
		}
	}
}
