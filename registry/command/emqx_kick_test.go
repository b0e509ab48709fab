package command

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

// TestIntegrationRegistryKicksWithKeyFile: `drover registry --emqx-api-url
// --emqx-api-key-file` (compose's prod command) reads EMQX's
// api_key.bootstrap_file format and kicks a revoked device through EMQX's
// documented REST call, DELETE /api/v5/clients/{clientid} with HTTP basic
// authentication, answered here by an HTTP server of that shape (no EMQX
// runs on this machine). A malformed key file is a usage error naming the
// flag and the line, never the secret.
func TestIntegrationRegistryKicksWithKeyFile(t *testing.T) {
	e := registrytest.New(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	dir := t.TempDir()

	bad := filepath.Join(dir, "bad.key")
	_ = os.WriteFile(bad, []byte("drover-registry-without-secret\n"), 0o600)
	_, errOut, code := run(t, e, RegistryCommand, "--admin-addr", "127.0.0.1:0", "--emqx-api-url", "http://127.0.0.1:1", "--emqx-api-key-file", bad)
	if code != 2 || !strings.Contains(errOut, "--emqx-api-key-file") || !strings.Contains(errOut, "line 1") {
		t.Fatalf("bad key file: exit %d, %s", code, errOut)
	}

	type call struct{ method, path, user, pass string }
	var mu sync.Mutex
	var calls []call
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		mu.Lock()
		calls = append(calls, call{r.Method, r.URL.EscapedPath(), u, p})
		mu.Unlock()
		if u != "drover-registry" || p != "file-secret-0123456789" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"BAD_API_KEY_OR_SECRET","message":"Check api_key/api_secret"}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer api.Close()
	keyFile := filepath.Join(dir, "emqx_api_key")
	_ = os.WriteFile(keyFile, []byte("drover-registry:file-secret-0123456789\n"), 0o600)

	admin := "127.0.0.1:" + strconv.Itoa(devtest.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := RegistryCommand(&cli.Conn{})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--admin-addr", admin, "--emqx-api-url", api.URL, "--emqx-api-key-file", keyFile,
		"--kafka-brokers", strings.Join(e.Brokers, ","), "--schema-registry-url", e.RegistryURL})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry not ready: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the kicker subscribes as the service starts

	if _, err := e.Store.SetStatus(registrytest.Ctx(t), "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	want := call{"DELETE", "/api/v5/clients/farm1%2Fcow-1", "drover-registry", "file-secret-0123456789"}
	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := append([]call(nil), calls...)
		mu.Unlock()
		if len(got) > 0 {
			if got[0] != want {
				t.Fatalf("EMQX got %+v, want %+v", got[0], want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no kick within 10s of the revocation\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
