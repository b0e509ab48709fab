package emqx_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/emqx"
	"github.com/drover-iot/drover/registry/registrytest"
)

const token = "emqx-token-0123456789"

// server serves the EMQX endpoints over real HTTP.
func server(t *testing.T, e *registrytest.Env, services ...registry.Service) string {
	t.Helper()
	auth, err := registry.NewAuth(e.View, services...)
	if err != nil {
		t.Fatal(err)
	}
	h, err := emqx.NewHandler(auth, e.View, token, nil, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// call sends what EMQX sends: a POST with the JSON body its template
// renders (Content-Type application/json, the configured Authorization
// header), and returns the status and the decoded answer.
func call(t *testing.T, base, path, body string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if resp.StatusCode == http.StatusOK {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content-type %q, EMQX requires application/json", ct)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("answer %q: %v", b, err)
		}
	}
	return resp.StatusCode, m
}

// authnBody renders EMQX's authentication template as README shows it.
func authnBody(clientid, username, password, cn string) string {
	b, _ := json.Marshal(map[string]string{
		"clientid": clientid, "username": username, "password": password, "peerhost": "10.0.0.7",
		"cert_common_name": cn, "cert_subject": "",
	})
	return string(b)
}

func authzBody(clientid, username, topic, action string) string {
	b, _ := json.Marshal(map[string]string{
		"clientid": clientid, "username": username, "topic": topic, "action": action, "qos": "1", "retain": "false",
	})
	return string(b)
}

func TestIntegrationEMQXAuthnAuthz(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	cow := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "gate-1", NoSecret: true, CertFingerprints: []string{registry.Fingerprint([]byte("cert"))}})
	bh, _ := registry.HashSecret("bridge-secret-0123456789")
	base := server(t, e, registry.Service{Name: "drover-bridge", Secret: bh, ClientIDPrefix: "drover-bridge", ACL: registry.BridgeACL()})

	for _, tc := range []struct {
		name, body string
		want       string
		attrs      map[string]any
	}{
		{"device", authnBody("farm1/cow-1", "farm1/cow-1", cow.Secret, ""), "allow", map[string]any{"tenant": "farm1", "device": "cow-1"}},
		{"wrong secret", authnBody("farm1/cow-1", "farm1/cow-1", "nope-nope-nope-nope", ""), "deny", nil},
		{"wrong client id", authnBody("cow-1", "farm1/cow-1", cow.Secret, ""), "deny", nil},
		{"unknown device", authnBody("farm2/cow-1", "farm2/cow-1", cow.Secret, ""), "deny", nil},
		{"certificate (verify_peer, CN)", authnBody("farm1/gate-1", "farm1/gate-1", "", "farm1/gate-1"), "allow", map[string]any{"tenant": "farm1", "device": "gate-1"}},
		{"certificate of a password device", authnBody("farm1/cow-1", "farm1/cow-1", "", "farm1/cow-1"), "deny", nil},
		{"bridge", authnBody("drover-bridge-0", "drover-bridge", "bridge-secret-0123456789", ""), "allow", nil},
		{"someone else", authnBody("dashboard", "admin", "public", ""), "ignore", nil},
	} {
		t.Run("authn "+tc.name, func(t *testing.T) {
			code, m := call(t, base, emqx.AuthnPath, tc.body, nil)
			if code != http.StatusOK || m["result"] != tc.want || m["is_superuser"] != false {
				t.Fatalf("HTTP %d %v, want result %s and is_superuser false", code, m, tc.want)
			}
			if tc.attrs != nil {
				if got, _ := m["client_attrs"].(map[string]any); got["tenant"] != tc.attrs["tenant"] || got["device"] != tc.attrs["device"] {
					t.Fatalf("client_attrs %v, want %v", m["client_attrs"], tc.attrs)
				}
			}
		})
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"publish own topic", authzBody("farm1/cow-1", "farm1/cow-1", "devices/farm1/cow-1/sensor", "publish"), "allow"},
		{"publish another tenant", authzBody("farm1/cow-1", "farm1/cow-1", "devices/farm2/cow-1/sensor", "publish"), "deny"},
		{"publish another device", authzBody("farm1/cow-1", "farm1/cow-1", "devices/farm1/cow-2/sensor", "publish"), "deny"},
		{"subscribe own commands", authzBody("farm1/cow-1", "farm1/cow-1", "devices/farm1/cow-1/commands", "subscribe"), "allow"},
		{"subscribe all commands", authzBody("farm1/cow-1", "farm1/cow-1", "devices/+/+/commands", "subscribe"), "deny"},
		{"client id not the username", authzBody("other", "farm1/cow-1", "devices/farm1/cow-1/sensor", "publish"), "deny"},
		{"bridge shared subscription", authzBody("drover-bridge-0", "drover-bridge", "$share/ingestors/devices/#", "subscribe"), "allow"},
		{"bridge publishes a reading", authzBody("drover-bridge-0", "drover-bridge", "devices/farm1/cow-1/sensor", "publish"), "deny"},
		{"someone else", authzBody("dashboard", "admin", "x", "publish"), "ignore"},
	} {
		t.Run("authz "+tc.name, func(t *testing.T) {
			code, m := call(t, base, emqx.AuthzPath, tc.body, nil)
			if code != http.StatusOK || m["result"] != tc.want {
				t.Fatalf("HTTP %d %v, want %s", code, m, tc.want)
			}
		})
	}

	t.Run("GET with the template as a query string", func(t *testing.T) {
		q := url.Values{"clientid": {"farm1/cow-1"}, "username": {"farm1/cow-1"}, "password": {cow.Secret}}
		req, _ := http.NewRequest(http.MethodGet, base+emqx.AuthnPath+"?"+q.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if code, m := do(t, req); code != http.StatusOK || m["result"] != "allow" {
			t.Fatalf("HTTP %d %v", code, m)
		}
	})
	t.Run("without the token: 401 (EMQX: ignore)", func(t *testing.T) {
		code, _ := call(t, base, emqx.AuthnPath, authnBody("farm1/cow-1", "farm1/cow-1", cow.Secret, ""), map[string]string{"Authorization": "Bearer wrong"})
		if code != http.StatusUnauthorized {
			t.Fatalf("HTTP %d, want 401", code)
		}
	})
	t.Run("malformed body: 400", func(t *testing.T) {
		if code, _ := call(t, base, emqx.AuthnPath, "{not json", nil); code != http.StatusBadRequest {
			t.Fatalf("HTTP %d, want 400", code)
		}
	})
	t.Run("revoked: the next CONNECT is denied", func(t *testing.T) {
		if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
			t.Fatal(err)
		}
		if _, m := call(t, base, emqx.AuthnPath, authnBody("farm1/cow-1", "farm1/cow-1", cow.Secret, ""), nil); m["result"] != "deny" {
			t.Fatalf("revoked device: %v", m)
		}
		if _, m := call(t, base, emqx.AuthzPath, authzBody("farm1/cow-1", "farm1/cow-1", "devices/farm1/cow-1/sensor", "publish"), nil); m["result"] != "deny" {
			t.Fatalf("revoked device publish: %v", m)
		}
	})
}

// TestIntegrationEMQXKicker: suspending, revoking or deleting a device
// sends EMQX's documented kick request for its client id.
func TestIntegrationEMQXKicker(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-2"})
	type call struct{ method, path, user, pass string }
	var mu sync.Mutex
	var calls []call
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		mu.Lock()
		calls = append(calls, call{r.Method, r.URL.EscapedPath(), u, p})
		mu.Unlock()
		if strings.HasSuffix(r.URL.EscapedPath(), "cow-2") {
			w.WriteHeader(http.StatusNotFound) // not connected
			_, _ = w.Write([]byte(`{"code":"CLIENTID_NOT_FOUND","message":"Client ID not found"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer api.Close()
	k, err := emqx.NewKicker(api.URL, "drover-registry", "key-secret", nil, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(rctx, e.View) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // let Run subscribe

	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-2", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-3"}) // a new active device: no kick
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []call{
		{"DELETE", "/api/v5/clients/farm1%2Fcow-1", "drover-registry", "key-secret"},
		{"DELETE", "/api/v5/clients/farm1%2Fcow-2", "drover-registry", "key-secret"},
	}
	if len(calls) != len(want) {
		t.Fatalf("EMQX got %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}

// TestParseAPIKeyFile reads EMQX's api_key.bootstrap_file format, the file
// compose's prod overlay gives both EMQX and the registry.
func TestParseAPIKeyFile(t *testing.T) {
	for _, tc := range []struct {
		name, data, key, wantKey, wantSecret, err string
	}{
		{name: "one key", data: "drover-registry:s3cret\n", wantKey: "drover-registry", wantSecret: "s3cret"},
		{name: "with role", data: "drover-registry:s3cret:administrator", wantKey: "drover-registry", wantSecret: "s3cret"},
		{name: "first of several", data: "\na:1\nb:2\n", wantKey: "a", wantSecret: "1"},
		{name: "the named one", data: "a:1\nb:2\n", key: "b", wantKey: "b", wantSecret: "2"},
		{name: "named key missing", data: "a:1\n", key: "b", err: `no line for API key "b"`},
		{name: "no colon", data: "a:1\nlonely\n", key: "z", err: "line 2: want KEY:SECRET"},
		{name: "empty secret", data: "a:\n", err: "line 1: want KEY:SECRET"},
		{name: "empty", data: "\n\n", err: "no API key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, s, err := emqx.ParseAPIKeyFile([]byte(tc.data), tc.key)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if err != nil && strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error names the secret: %v", err)
				}
				return
			}
			if err != nil || k != tc.wantKey || s != tc.wantSecret {
				t.Fatalf("got %q %q %v, want %q %q", k, s, err, tc.wantKey, tc.wantSecret)
			}
		})
	}
}
