package compose

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/registry/registrytest"
)

// TestIntegrationShippedMosquittoDynsec runs what dev and staging run, for
// real: the mosquitto-dynsec command of the overlay renders the dynamic
// security file from a device registry (the embedded Kafka), a real
// mosquitto starts with the overlay's shipped configuration (paths and
// ports rewritten) and that file, and the registry service runs with the
// overlay's command. Then: a device registered before the broker started
// connects with its secret and publishes; a device added through the
// provisioning API connects at once; a device presenting the bridge's client
// id is refused (dev) or gets its own session (staging's
// use_username_as_clientid); revoking a device disconnects its live session
// within seconds and refuses its next CONNECT; the bridge logs in as its
// principal.
func TestIntegrationShippedMosquittoDynsec(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mosquitto, Kafka and the registry service")
	}
	for _, o := range overlays(t) {
		if o.name != "dev" && o.name != "staging" {
			continue
		}
		t.Run(o.name, func(t *testing.T) { shippedDynsec(t, o) })
	}
}

func shippedDynsec(t *testing.T, o overlay) {
	p := mustLoad(t, o)
	e := registrytest.New(t)
	early := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1", Type: "collar"})
	rogue := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-3", Type: "collar"})
	env := []string{"DROVER_KAFKA_BROKERS=" + strings.Join(e.Brokers, ","), "DROVER_SCHEMA_REGISTRY_URL=" + e.RegistryURL, "DROVER_LOG_FORMAT=text"}

	dir, err := os.MkdirTemp("", "drover-dynsec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755) // mosquitto may run as another user

	// A service's /run/secrets/<name> is the overlay's secret file.
	secretFile := func(s string, path string) string {
		t.Helper()
		name := secretAt(p.Services[s], path)
		if name == "" {
			t.Fatalf("%s: %s is not a mounted secret", s, path)
		}
		return p.Secrets[name].File
	}
	rewriteSecrets := func(service string, args []string) []string {
		args = slices.Clone(args)
		for i, a := range args {
			if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(v, "/run/secrets/") {
				args[i] = k + "=" + secretFile(service, v)
			}
		}
		return args
	}

	// 1. mosquitto-dynsec renders the file (the entrypoint's copy is a cp).
	gen := rewriteSecrets("mosquitto-dynsec", p.Services["mosquitto-dynsec"].Command)
	rendered := filepath.Join(dir, "rendered.json")
	gen = rewrite(gen, "out", rendered)
	if out, err := runDrover(t, gen, env...); err != nil {
		t.Fatalf("mosquitto-dynsec: %v\n%s", err, out)
	}
	b, err := os.ReadFile(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dynamic-security.json"), b, 0o666); err != nil {
		t.Fatal(err)
	}

	// 2. mosquitto with the overlay's configuration.
	mq := p.Services["mosquitto"]
	shipped, err := os.ReadFile(mountedAt(mq, "/mosquitto/config/mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := dynsec.PluginPath()
	if err != nil {
		t.Fatal(err)
	}
	conf := parseMosquittoConf(string(shipped))
	ports := map[string]int{}
	logFile := filepath.Join(dir, "mosquitto.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	repl := []string{"/usr/lib/mosquitto_dynamic_security.so", plugin, "/mosquitto/data/", dir + "/", "log_dest stdout", "log_dest file " + logFile + "\nlog_type all"}
	for _, port := range conf.order {
		ports[port] = devtest.FreePort(t)
		repl = append(repl, "listener "+port+"\n", fmt.Sprintf("listener %d 127.0.0.1\n", ports[port]))
	}
	var tc *tls.Config
	var caFile string
	if strings.Contains(string(shipped), "certfile") {
		certs := devtest.WriteCerts(t, dir)
		caFile = certs.CA
		pem, _ := os.ReadFile(certs.CA)
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		tc = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		bridgePass, err := os.ReadFile(secretFile("bridge", envOf(p.Services["bridge"], "DROVER_MQTT_PASSWORD_FILE")))
		if err != nil {
			t.Fatal(err)
		}
		pf := filepath.Join(dir, "mosquitto_bridge_passwd")
		if out, err := exec.Command("mosquitto_passwd", "-c", "-b", pf, "drover-bridge", strings.TrimSpace(string(bridgePass))).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd (apt-get install -y mosquitto): %v: %s", err, out)
		}
		_ = os.Chmod(pf, 0o644)
		acl, _ := filepath.Abs(filepath.Join("config", "mosquitto", "acl.conf"))
		repl = append(repl, "/run/secrets/ca.pem", certs.CA, "/run/secrets/mosquitto_cert.pem", certs.ServerCert,
			"/run/secrets/mosquitto_key.pem", certs.ServerKey, "/run/secrets/", dir+"/", "/mosquitto/config/acl.conf", acl)
	}
	confText := strings.NewReplacer(repl...).Replace(string(shipped))
	if !strings.Contains(confText, "plugin "+plugin) {
		t.Fatalf("the shipped configuration loads no dynamic security plugin:\n%s", confText)
	}
	devtest.MosquittoConf(t, confText, ports[conf.order[0]])

	// 3. The registry service with the overlay's command.
	regArgs := rewriteSecrets("registry", p.Services["registry"].Command)
	u := flagOf(regArgs, "dynsec-url")
	_, brokerPort, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(u, "tcp://"), "ssl://"), ":")
	scheme, _, _ := strings.Cut(u, "://")
	regArgs = rewrite(regArgs, "dynsec-url", fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[brokerPort]))
	if flagOf(regArgs, "dynsec-tls-ca") != "" {
		regArgs = rewrite(regArgs, "dynsec-tls-ca", caFile)
	}
	admin := freeAddr(t)
	regArgs = rewrite(regArgs, "admin-addr", admin)
	startDrover(t, "registry", regArgs, env, admin)
	waitReady(t, admin)
	token, err := os.ReadFile(flagOf(regArgs, "api-token-file"))
	if err != nil {
		t.Fatal(err)
	}

	deviceURL := fmt.Sprintf("127.0.0.1:%d", ports[brokerPort])
	// A device registered before the broker started: its hash was rendered.
	c1 := dynsecConnect(t, deviceURL, tc, "farm1/cow-1", "farm1/cow-1", early.Secret)
	if rc := dynsecPublish(t, c1, "devices/farm1/cow-1/sensor"); rc >= 0x80 {
		t.Fatalf("cow-1 publish refused: %#x", rc)
	}
	if _, err := tryConnect(deviceURL, tc, "farm1/cow-1", "farm1/cow-1", "wrong-secret-0123456789"); err == nil {
		t.Error("cow-1 connected with a wrong secret")
	}

	// A device added through the provisioning API: pushed to the broker.
	var added struct {
		Secret string `json:"secret"`
		Broker string `json:"broker"`
	}
	apiCall(t, admin, string(token), "/v1/tenants/farm1/devices", `{"device_id":"cow-2","type":"collar"}`, http.StatusCreated, &added)
	if added.Broker != "pushed" {
		t.Errorf("API: broker %q, want pushed", added.Broker)
	}
	// A device presenting the bridge's client id never gets it (staging:
	// it gets its own, its user name).
	if mc, err := tryConnect(deviceURL, tc, "drover-bridge-1", "farm1/cow-3", rogue.Secret); err == nil {
		if conf.opt(brokerPort, "use_username_as_clientid") == nil {
			t.Error("a device connected with the bridge's client id")
		}
		_ = mc.Disconnect(&paho.Disconnect{})
	}

	c2 := dynsecConnect(t, deviceURL, tc, "farm1/cow-2", "farm1/cow-2", added.Secret)
	if rc := dynsecPublish(t, c2, "devices/farm1/cow-2/gps"); rc >= 0x80 {
		t.Fatalf("cow-2 publish refused: %#x", rc)
	}

	// The bridge logs in as its principal, where the overlay sends it.
	bu := envOf(p.Services["bridge"], "DROVER_MQTT_URL")
	_, bport, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(bu, "tcp://"), "ssl://"), ":")
	bridgePass, err := os.ReadFile(secretFile("bridge", envOf(p.Services["bridge"], "DROVER_MQTT_PASSWORD_FILE")))
	if err != nil {
		t.Fatal(err)
	}
	bc := dynsecConnect(t, fmt.Sprintf("127.0.0.1:%d", ports[bport]), tc, "drover-bridge-1", "drover-bridge", strings.TrimSpace(string(bridgePass)))
	_ = bc.Disconnect(&paho.Disconnect{})

	// Revoking disconnects the live session and refuses the next CONNECT.
	start := time.Now()
	apiCall(t, admin, string(token), "/v1/tenants/farm1/devices/cow-1/revoke", "", http.StatusOK, nil)
	select {
	case <-c1.down:
		t.Logf("%s: revoked device disconnected %s after the API call", o.name, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("revoked device still connected after 10s")
	}
	if _, err := tryConnect(deviceURL, tc, "farm1/cow-1", "farm1/cow-1", early.Secret); err == nil {
		t.Error("revoked device connected again")
	}
	// The other device is untouched.
	if rc := dynsecPublish(t, c2, "devices/farm1/cow-2/gps"); rc >= 0x80 {
		t.Errorf("cow-2 publish refused after cow-1's revocation: %#x", rc)
	}
}

type dynsecClient struct {
	*paho.Client
	down chan struct{}
}

func tryConnect(addr string, tc *tls.Config, clientID, user, pass string) (*dynsecClient, error) {
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.Dial("tcp", addr, tc)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	dc := &dynsecClient{down: make(chan struct{}, 2)}
	signal := func() {
		select {
		case dc.down <- struct{}{}:
		default:
		}
	}
	dc.Client = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnServerDisconnect: func(*paho.Disconnect) { signal() },
		OnClientError:      func(error) { signal() }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := dc.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("connect %s as %s: %w (connack %+v)", clientID, user, err, ca)
	}
	return dc, nil
}

func dynsecConnect(t *testing.T, addr string, tc *tls.Config, clientID, user, pass string) *dynsecClient {
	t.Helper()
	dc, err := tryConnect(addr, tc, clientID, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Disconnect(&paho.Disconnect{}) })
	return dc
}

func dynsecPublish(t *testing.T, c *dynsecClient, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(`{"ts":1,"metric":"temperature","value":38.6}`)})
	if pr != nil {
		return pr.ReasonCode
	}
	t.Fatalf("publish %s: %v", topic, err)
	return 0
}

// waitReady waits for /readyz of an admin address (the registry's: its
// view restored and dynsec in step).
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz: not ready within 90s (%v)", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func apiCall(t *testing.T, addr, token, path, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(token))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: HTTP %d, want %d: %s", path, resp.StatusCode, want, raw.String())
	}
	if out != nil {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, raw.String())
		}
	}
}
