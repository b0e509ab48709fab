package api_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/api"
	"github.com/drover-iot/drover/registry/registrytest"
)

const (
	writeTok = "write-token-0123456789"
	readTok  = "read-token-0123456789x"
)

type fixture struct {
	base   string
	mu     sync.Mutex
	pushed map[string]string
	caKeys map[string][]byte
}

func newFixture(t *testing.T, e *registrytest.Env) *fixture {
	t.Helper()
	f := &fixture{pushed: map[string]string{}, caKeys: map[string][]byte{}}
	a, err := api.New(e.Store, api.Options{
		Tokens: map[string]api.Scope{writeTok: api.Write, readTok: api.Read},
		CAKeys: func(tenant string) ([]byte, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			k, ok := f.caKeys[tenant]
			if !ok {
				return nil, io.EOF
			}
			return k, nil
		},
		PushSecret: func(_ context.Context, key, secret string) error {
			f.mu.Lock()
			f.pushed[key] = secret
			f.mu.Unlock()
			return nil
		},
		Log: devtest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.base = srv.URL
	return f
}

func (f *fixture) do(t *testing.T, tok, method, path, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.base+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %s: content-type %q, body %s", method, path, ct, b)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, m
}

func (f *fixture) want(t *testing.T, status int, tok, method, path, ctype, body string) map[string]any {
	t.Helper()
	got, m := f.do(t, tok, method, path, ctype, body)
	if got != status {
		t.Fatalf("%s %s: HTTP %d %v, want %d", method, path, got, m, status)
	}
	if status >= 400 && (m["error"] == "" || m["code"] == "") {
		t.Fatalf("%s %s: error body %v lacks error and code", method, path, m)
	}
	return m
}

func TestIntegrationAPIAuth(t *testing.T) {
	e := registrytest.New(t)
	f := newFixture(t, e)
	f.want(t, 401, "", "GET", "/v1/tenants", "", "")
	f.want(t, 401, "not-a-token-at-all-xx", "GET", "/v1/tenants", "", "")
	f.want(t, 200, readTok, "GET", "/v1/tenants", "", "")
	f.want(t, 403, readTok, "POST", "/v1/tenants", "", `{"tenant":"farm1"}`)
	f.want(t, 201, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm1"}`)

	// curl, an independent client, sees the same.
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f.base+"/v1/tenants").CombinedOutput()
	if err != nil || string(out) != "401" {
		t.Fatalf("curl without a token: %s %v", out, err)
	}
	out, err = exec.Command("curl", "-s", "-H", "Authorization: Bearer "+readTok, f.base+"/v1/tenants/farm1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"tenant": "farm1"`) {
		t.Fatalf("curl with the read token: %s %v", out, err)
	}
	if _, err := api.New(e.Store, api.Options{}); err == nil {
		t.Fatal("an API without a token was accepted")
	}
}

func TestIntegrationAPIDevices(t *testing.T) {
	e := registrytest.New(t)
	f := newFixture(t, e)
	m := f.want(t, 201, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm1","create_ca":true}`)
	f.caKeys["farm1"] = []byte(m["ca_key_pem"].(string))
	f.want(t, 409, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm1"}`)
	f.want(t, 400, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm\u202e1"}`)
	f.want(t, 400, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm2","colour":"red"}`)

	m = f.want(t, 201, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{"device_id":"cow-1","type":"collar","labels":{"herd":"north"},"offline_timeout":"45m"}`)
	secret, _ := m["secret"].(string)
	dev := m["device"].(map[string]any)
	if len(secret) != 43 || dev["status"] != "active" || dev["offline_timeout"] != "45m0s" || m["broker"] != "pushed" || f.pushed["farm1/cow-1"] != secret {
		t.Fatalf("add: %v (pushed %v)", m, f.pushed)
	}
	if s, _ := dev["secret"].(map[string]any); s["algorithm"] != "pbkdf2-sha512" || s["hash"] != nil || s["salt"] != nil {
		t.Fatalf("the device's JSON shows %v for its secret", dev["secret"])
	}
	f.want(t, 409, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{"device_id":"cow-1"}`)
	f.want(t, 400, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{"device_id":"cow 2"}`)
	f.want(t, 400, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{"device_id":"cow-2","offline_timeout":"soon"}`)
	f.want(t, 400, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{not json`)
	f.want(t, 404, writeTok, "POST", "/v1/tenants/farm9/devices", "", `{"device_id":"cow-1"}`)
	f.want(t, 200, readTok, "GET", "/v1/tenants/farm1/devices/cow-1", "", "")
	f.want(t, 404, readTok, "GET", "/v1/tenants/farm1/devices/cow-9", "", "")
	f.want(t, 400, readTok, "GET", "/v1/tenants/farm1/devices/cow%1B9", "", "")

	// Status, rotation, deletion.
	f.want(t, 200, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/suspend", "", "")
	f.want(t, 200, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/activate", "", "")
	m = f.want(t, 200, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/rotate", "", "")
	if m["secret"] == secret || f.pushed["farm1/cow-1"] != m["secret"] {
		t.Fatalf("rotate: %v", m)
	}
	f.want(t, 404, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/explode", "", "")
	f.want(t, 409, writeTok, "DELETE", "/v1/tenants/farm1/devices/cow-1", "", "")
	f.want(t, 200, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/revoke", "", "")
	f.want(t, 409, writeTok, "POST", "/v1/tenants/farm1/devices/cow-1/activate", "", "")
	f.want(t, 204, writeTok, "DELETE", "/v1/tenants/farm1/devices/cow-1", "", "")
	f.want(t, 404, writeTok, "DELETE", "/v1/tenants/farm1/devices/cow-1", "", "")

	// A certificate issued with a fresh key, signed by the tenant's CA.
	m = f.want(t, 201, writeTok, "POST", "/v1/tenants/farm1/devices", "", `{"device_id":"gate-1","no_secret":true,"issue_cert":true}`)
	blk, _ := pem.Decode([]byte(m["certificate_pem"].(string)))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || cert.Subject.CommonName != "farm1/gate-1" || m["private_key_pem"] == "" || m["secret"] != nil {
		t.Fatalf("issue_cert: %v %v", m, err)
	}
	if d, ok := e.View.DeviceByCert(registry.Fingerprint(cert.Raw)); !ok || d.ID != "gate-1" {
		t.Fatal("the issued certificate is not enrolled")
	}
}

func TestIntegrationAPIImport(t *testing.T) {
	e := registrytest.New(t)
	f := newFixture(t, e)
	f.want(t, 201, writeTok, "POST", "/v1/tenants", "", `{"tenant":"farm1"}`)
	good := "tenant,device_id,label.herd\nfarm1,cow-1,north\nfarm1,cow-2,south\n"
	m := f.want(t, 200, writeTok, "POST", "/v1/tenants/farm1/devices?dry_run=true", "text/csv", good)
	if m["dry_run"] != true || len(m["devices"].([]any)) != 2 || len(e.View.Devices()) != 0 {
		t.Fatalf("dry run: %v, %d devices", m, len(e.View.Devices()))
	}
	bad := "tenant,device_id,offline_timeout\nfarm1,cow-1,5m\nfarm2,cow-2,\nfarm1,cow-3,later\n"
	m = f.want(t, 400, writeTok, "POST", "/v1/tenants/farm1/devices", "text/csv", bad)
	probs, _ := m["problems"].([]any)
	if len(probs) != 1 || probs[0].(map[string]any)["line"] != float64(4) || probs[0].(map[string]any)["field"] != "offline_timeout" {
		t.Fatalf("bad CSV problems %v", m)
	}
	m = f.want(t, 400, writeTok, "POST", "/v1/tenants/farm1/devices", "text/csv", "tenant,device_id\nfarm1,cow-1\nfarm2,cow-2\n")
	if p := m["problems"].([]any)[0].(map[string]any); p["line"] != float64(3) || p["field"] != "tenant" {
		t.Fatalf("tenant mismatch problems %v", m)
	}
	if len(e.View.Devices()) != 0 {
		t.Fatal("a refused import wrote devices")
	}
	m = f.want(t, 201, writeTok, "POST", "/v1/tenants/farm1/devices", "text/csv", good)
	if len(m["devices"].([]any)) != 2 || len(f.pushed) != 2 {
		t.Fatalf("import: %v, pushed %v", m, f.pushed)
	}
	m = f.want(t, 409, writeTok, "POST", "/v1/tenants/farm1/devices", "", `[{"device_id":"cow-3"},{"device_id":"cow-1"}]`)
	if p := m["problems"].([]any)[0].(map[string]any); p["entry"] != float64(2) || !strings.Contains(p["error"].(string), "already exists") {
		t.Fatalf("JSON import of an existing device: %v", m)
	}
	f.want(t, 201, writeTok, "POST", "/v1/tenants/farm1/devices", "", `[{"device_id":"cow-3"},{"device_id":"cow-4"}]`)
	m = f.want(t, 200, readTok, "GET", "/v1/tenants/farm1/devices?status=active", "", "")
	if len(m["devices"].([]any)) != 4 {
		t.Fatalf("list: %v", m)
	}
	f.want(t, 400, readTok, "GET", "/v1/tenants/farm1/devices?status=lost", "", "")
}
