package service_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry/api"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/registry/service"
)

const token = "operator-token-0123456789"

// TestIntegrationService runs `drover registry` as the command wires it:
// one admin listener with /readyz, /metrics, the provisioning API and the
// EMQX endpoints, and the dynsec sync to a real mosquitto. A device added
// through the API connects to mosquitto with the secret the API returned;
// revoked through the API, it is disconnected and EMQX's authentication
// refuses it.
func TestIntegrationService(t *testing.T) {
	e := registrytest.New(t)
	cfg, err := dynsec.RenderConfig(nil, []dynsec.Service{{Username: "drover-registry", Secret: "admin-secret-0123456789", Role: "drover-dynsec-admin", ACLs: dynsec.AdminACLs()}})
	if err != nil {
		t.Fatal(err)
	}
	mqttURL := registrytest.Mosquitto(t, cfg)
	srv := admin.New("127.0.0.1:0", devtest.Logger())
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- service.Run(ctx, service.Config{
			Kafka: []kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, Serde: e.Serde, Admin: srv, Log: devtest.Logger(),
			APITokens: map[string]api.Scope{token: api.Write}, EMQX: true,
			Dynsec: &dynsec.ClientConfig{URL: mqttURL, Username: "drover-registry", Password: []byte("admin-secret-0123456789")},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
	})
	base := "http://" + srv.Addr()
	deadline := time.Now().Add(30 * time.Second)
	for status(t, base+"/readyz", "") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	post(t, base+"/v1/tenants", `{"tenant":"farm1"}`, http.StatusCreated)
	var added struct {
		Secret string `json:"secret"`
		Broker string `json:"broker"`
	}
	json.Unmarshal(post(t, base+"/v1/tenants/farm1/devices", `{"device_id":"cow-1"}`, http.StatusCreated), &added)
	if added.Broker != "pushed" {
		t.Fatalf("the API did not push the secret to mosquitto: %q", added.Broker)
	}
	down := make(chan struct{}, 1)
	c := connect(t, mqttURL, "farm1/cow-1", added.Secret, down)
	if c == nil {
		t.Fatal("the device added through the API cannot connect to mosquitto")
	}
	post(t, base+"/v1/tenants/farm1/devices/cow-1/revoke", "", http.StatusOK)
	select {
	case <-down:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked device is still connected to mosquitto after 5s")
	}
	body := post(t, base+"/emqx/authn", `{"clientid":"farm1/cow-1","username":"farm1/cow-1","password":"`+added.Secret+`"}`, http.StatusOK)
	if !strings.Contains(string(body), `"result":"deny"`) {
		t.Fatalf("EMQX authentication of the revoked device: %s", body)
	}
	if status(t, base+"/v1/tenants", "") != http.StatusUnauthorized {
		t.Fatal("the API answered without a token")
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{`drover_registry_devices{status="revoked"} 1`, "drover_registry_dynsec_commands_total", "drover_registry_emqx_decisions_total"} {
		if !strings.Contains(string(m), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func status(t *testing.T, u, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func post(t *testing.T, u, body string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: HTTP %d %s, want %d", u, resp.StatusCode, b, want)
	}
	return b
}

func connect(t *testing.T, mqttURL, key, secret string, down chan struct{}) *paho.Client {
	t.Helper()
	u, _ := url.Parse(mqttURL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	signal := func() {
		select {
		case down <- struct{}{}:
		default:
		}
	}
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnServerDisconnect: func(*paho.Disconnect) { signal() }, OnClientError: func(error) { signal() }})
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: key, CleanStart: true, KeepAlive: 30, Username: key, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true}); err != nil {
		t.Logf("connect: %v", err)
		return nil
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}
