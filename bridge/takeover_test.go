package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/dynsec"
)

// Issue 14, item 3: a client that reconnected as the bridge's client id for
// 8 s caused 3,476 bridge reconnects and 380 acknowledged messages never
// reached Kafka. The broker handed the rogue the bridge's session — its
// shared subscription and the QoS 1 messages queued in it — and the rogue
// acknowledged them. The tests below replay that attack: against a broker
// that does not bind the bridge's client ids (the bridge must notice, say
// so loudly, count it and back off), and against the embedded broker and a
// real mosquitto with the shipped configuration, which must refuse the
// rogue so that nothing acknowledged is lost.

// rogue keeps connecting with a client id it does not own, with clean
// start off (so it takes the session and its queued messages over), and
// acknowledges whatever the broker delivers.
type rogue struct {
	connected, refused, received atomic.Int64
}

// rogueAttempt is one way the rogue connects: where, and as whom.
type rogueAttempt struct {
	dial     func(ctx context.Context) (net.Conn, error)
	username string
	password string
}

// run attacks until ctx ends, cycling through attempts.
func (r *rogue) run(ctx context.Context, clientID string, attempts []rogueAttempt) {
	for i := 0; ctx.Err() == nil; i++ {
		a := attempts[i%len(attempts)]
		conn, err := a.dial(ctx)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), ClientID: clientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
				r.received.Add(1)
				return true, nil
			}}})
		expiry := uint32(3600)
		cp := &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
		if a.username != "" {
			cp.Username, cp.UsernameFlag = a.username, true
			cp.Password, cp.PasswordFlag = []byte(a.password), true
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ca, err := c.Connect(cctx, cp)
		cancel()
		if err != nil || ca == nil || ca.ReasonCode != 0 {
			r.refused.Add(1)
		} else {
			r.connected.Add(1)
			time.Sleep(30 * time.Millisecond) // hold the session, then come back
		}
		_ = conn.Close()
		time.Sleep(10 * time.Millisecond)
	}
}

// logCapture keeps the bridge's log records (and writes them on as the
// test logger would).
type logCapture struct {
	slog.Handler
	mu   *sync.Mutex
	recs *[]slog.Record
}

func newLogCapture() logCapture {
	return logCapture{Handler: devtest.Logger().Handler(), mu: &sync.Mutex{}, recs: &[]slog.Record{}}
}

func (c logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c logCapture) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	*c.recs = append(*c.recs, r.Clone())
	c.mu.Unlock()
	if c.Handler.Enabled(ctx, r.Level) {
		return c.Handler.Handle(ctx, r)
	}
	return nil
}

func (c logCapture) WithAttrs(as []slog.Attr) slog.Handler {
	return logCapture{Handler: c.Handler.WithAttrs(as), mu: c.mu, recs: c.recs}
}

// find returns the attributes of the first record at level whose message
// contains msg.
func (c logCapture) find(level slog.Level, msg string) (map[string]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range *c.recs {
		if r.Level == level && strings.Contains(r.Message, msg) {
			attrs := map[string]string{}
			r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
			return attrs, true
		}
	}
	return nil, false
}

// TestIntegrationBridgeSessionTakeoverUnbound: on a broker that lets any
// client use the bridge's id (the embedded broker without the binding), a
// rogue reconnecting as the bridge for 4 s makes the bridge log a session
// takeover at error level with the broker and client id, count it, and
// back off: a handful of reconnects, not thousands. After the rogue stops,
// the bridge reconnects and subscribes again.
func TestIntegrationBridgeSessionTakeoverUnbound(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	mqttURL := devtest.MQTT(t)
	logs := newLogCapture()
	cfg := e.config(mqttURL, "drover-bridge-victim")
	cfg.Log = slog.New(logs)
	b, _ := runBridge(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var r rogue
	addr := strings.TrimPrefix(mqttURL, "tcp://")
	var d net.Dialer
	r.run(ctx, cfg.ClientID, []rogueAttempt{{dial: func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}})

	takeovers := counterValue(t, b.m.takeovers)
	conns := b.connections.Load()
	t.Logf("rogue: %d connections; bridge: %d takeovers, %d connections in 4 s", r.connected.Load(), int(takeovers), conns)
	if takeovers < 1 {
		t.Fatal("the bridge counted no session takeover (drover_bridge_mqtt_session_takeovers_total)")
	}
	attrs, ok := logs.find(slog.LevelError, "session taken over")
	if !ok {
		t.Fatal("no error-level log line about the session takeover")
	}
	if attrs["broker"] != mqttURL || attrs["client_id"] != cfg.ClientID {
		t.Errorf("takeover log attributes %v: want broker %s and client_id %s", attrs, mqttURL, cfg.ClientID)
	}
	// 250 ms, doubling per short-lived connection: at most 6 in 4 s. Without
	// the back-off the bridge reconnected at once, every time.
	if conns > 10 {
		t.Errorf("the bridge connected %d times in 4 s of takeovers: no back-off", conns)
	}
	if got := counterValue(t, b.m.reconnects); got != float64(conns-1) {
		t.Errorf("drover_bridge_mqtt_reconnects_total = %v, want %d (connections after the first)", got, conns-1)
	}
	waitFor(t, 60*time.Second, "bridge back after the rogue stopped", func() bool { return b.Ready(context.Background()) == nil })
}

// TestDefaultClientIDIsReserved: the bridge's default client id is under
// the prefix the embedded broker reserves (and the shipped brokers bind).
func TestDefaultClientIDIsReserved(t *testing.T) {
	if id := DefaultClientID(); !strings.HasPrefix(id, devstack.BridgePrincipal+"-") {
		t.Fatalf("DefaultClientID() = %q, not under %s-", id, devstack.BridgePrincipal)
	}
}

// takeoverBroker is a broker under attack: where the bridge, the publisher
// and the rogue connect.
type takeoverBroker struct {
	bridgeURL       string
	bridgeTLS       *tls.Config
	bridgeUser      string
	bridgePassword  string
	publisher       autopaho.ClientConfig
	deviceTopic     string // where the publisher may publish
	rogueAttempts   []rogueAttempt
	rogueMayConnect bool // on mosquitto's device listener the rogue gets its own session
}

// TestIntegrationBridgeSessionTakeoverRefused: the embedded broker of
// `drover dev` and a real mosquitto with the shipped staging configuration
// (compose/config/mosquitto/mosquitto.tls.conf) refuse a rogue that
// reconnects with the bridge's client id, whoever it authenticates as, for
// 4 s while 300 QoS 1 messages are published: the bridge is never taken
// over and every acknowledged message reaches Kafka.
func TestIntegrationBridgeSessionTakeoverRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	for name, setup := range map[string]func(*testing.T) takeoverBroker{"embedded": embeddedTakeoverBroker, "mosquitto": shippedMosquitto} {
		t.Run(name, func(t *testing.T) {
			br := setup(t)
			e := newEnv(t)
			cfg := e.config(br.bridgeURL, devstack.BridgePrincipal+"-under-attack")
			cfg.TLS, cfg.Username, cfg.Password = br.bridgeTLS, br.bridgeUser, []byte(br.bridgePassword)
			b, _ := runBridge(t, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			var r rogue
			rogueDone := make(chan struct{})
			go func() { defer close(rogueDone); r.run(ctx, cfg.ClientID, br.rogueAttempts) }()
			const n = 300
			acked := publishPaced(t, br.publisher, br.deviceTopic, n, 4*time.Second)
			<-rogueDone

			t.Logf("rogue: %d refused, %d connected, %d messages received; bridge: %d connections, %d messages acked by Kafka",
				r.refused.Load(), r.connected.Load(), r.received.Load(), b.connections.Load(), acked)
			if acked != n {
				t.Fatalf("%d of %d publishes acknowledged", acked, n)
			}
			if r.received.Load() != 0 {
				t.Errorf("the rogue received %d messages", r.received.Load())
			}
			if !br.rogueMayConnect && r.connected.Load() != 0 {
				t.Errorf("the rogue connected %d times with the bridge's client id", r.connected.Load())
			}
			if r.refused.Load() == 0 {
				t.Error("the rogue was never refused")
			}
			if got := counterValue(t, b.m.takeovers); got != 0 || b.connections.Load() != 1 {
				t.Errorf("bridge: %v takeovers, %d connections; want 0 and 1", got, b.connections.Load())
			}
			collect(t, e, n, 60*time.Second) // every acknowledged message is in Kafka
		})
	}
}

// embeddedTakeoverBroker is the embedded broker as `drover dev` starts it:
// the drover-bridge client ids reserved to the bridge principal; devices
// anonymous. The rogue tries without credentials and with a wrong password.
func embeddedTakeoverBroker(t *testing.T) takeoverBroker {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := devstack.NewMQTT(l, devtest.Logger(), devstack.ReserveClientIDs(devstack.BridgePrincipal, devstack.BridgePrincipal, []byte("s3cret")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addr := l.Addr().String()
	u, _ := url.Parse("tcp://" + addr)
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	return takeoverBroker{
		bridgeURL: "tcp://" + addr, bridgeUser: devstack.BridgePrincipal, bridgePassword: "s3cret",
		publisher:   autopaho.ClientConfig{ServerUrls: []*url.URL{u}, ClientConfig: paho.ClientConfig{ClientID: "takeover-pub"}},
		deviceTopic: "devices/farm1/cow-1/sensor",
		rogueAttempts: []rogueAttempt{{dial: dial}, {dial: dial, username: devstack.BridgePrincipal, password: "guess"},
			{dial: dial, username: "cow-1", password: "x"}},
	}
}

// shippedMosquitto starts a real mosquitto with the shipped staging
// configuration, its paths and ports rewritten for the test: devices on one
// listener (the dynamic security plugin, as the registry renders it;
// use_username_as_clientid), the bridge on the other (only the bridge's
// password file). The rogue is a device with valid credentials: on the
// device listener mosquitto gives it its own session (its user name), on
// the bridge listener it is refused, as is a wrong bridge password.
func shippedMosquitto(t *testing.T) takeoverBroker {
	dir, err := os.MkdirTemp("", "drover-takeover-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	_ = os.Chmod(dir, 0o755) // mosquitto may read as another user
	certs := devtest.WriteCerts(t, dir)
	passwd := func(file string, userPass ...string) {
		p := filepath.Join(dir, file)
		for i := 0; i < len(userPass); i += 2 {
			args := []string{"-b", p, userPass[i], userPass[i+1]}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd (apt-get install -y mosquitto): %v: %s", err, out)
			}
		}
		_ = os.Chmod(p, 0o644)
	}
	passwd("mosquitto_bridge_passwd", devstack.BridgePrincipal, "bridge-pw")
	// The devices' listener: dynamic security with two devices, each bound
	// to its client id and allowed its own topics (registry/dynsec renders
	// the same for registered devices).
	var devices []dynsec.Service
	for _, d := range []string{"cow-1", "cow-2"} {
		key := "farm1/" + d
		devices = append(devices, dynsec.Service{Username: key, Secret: d + "-pw-0123456789", ClientID: key, Role: "device:" + key,
			ACLs: dynsec.RoleACLs(registry.ACL{Publish: []string{"devices/" + key + "/#"}}, false)})
	}
	dsConf, err := dynsec.RenderConfig(nil, devices)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dynamic-security.json"), dsConf, 0o644); err != nil {
		t.Fatal(err)
	}
	plugin, err := dynsec.PluginPath()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("../compose/config/mosquitto/mosquitto.tls.conf")
	if err != nil {
		t.Fatal(err)
	}
	acl, _ := filepath.Abs("../compose/config/mosquitto/acl.conf")
	devicePort, bridgePort := devtest.FreePort(t), devtest.FreePort(t)
	conf := strings.NewReplacer(
		"listener 8883", fmt.Sprintf("listener %d 127.0.0.1", devicePort),
		"listener 8884", fmt.Sprintf("listener %d 127.0.0.1", bridgePort),
		"/run/secrets/ca.pem", certs.CA, "/run/secrets/mosquitto_cert.pem", certs.ServerCert,
		"/run/secrets/mosquitto_key.pem", certs.ServerKey, "/run/secrets/", dir+"/",
		"/mosquitto/config/acl.conf", acl, "/mosquitto/data/", dir+"/",
		"/usr/lib/mosquitto_dynamic_security.so", plugin,
		"log_dest stdout", "log_dest stderr",
	).Replace(string(shipped))
	devtest.MosquittoConf(t, conf, bridgePort)

	pem, _ := os.ReadFile(certs.CA)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	deviceAddr, bridgeAddr := fmt.Sprintf("127.0.0.1:%d", devicePort), fmt.Sprintf("127.0.0.1:%d", bridgePort)
	dialer := func(addr string) func(ctx context.Context) (net.Conn, error) {
		return func(ctx context.Context) (net.Conn, error) {
			d := tls.Dialer{Config: tc}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	pu, _ := url.Parse("mqtts://" + deviceAddr)
	return takeoverBroker{
		bridgeURL: "mqtts://" + bridgeAddr, bridgeTLS: tc, bridgeUser: devstack.BridgePrincipal, bridgePassword: "bridge-pw",
		publisher: autopaho.ClientConfig{ServerUrls: []*url.URL{pu}, TlsCfg: tc, ConnectUsername: "farm1/cow-1",
			ConnectPassword: []byte("cow-1-pw-0123456789"), ClientConfig: paho.ClientConfig{ClientID: "farm1/cow-1"}},
		deviceTopic: "devices/farm1/cow-1/sensor",
		rogueAttempts: []rogueAttempt{
			{dial: dialer(deviceAddr), username: "farm1/cow-2", password: "cow-2-pw-0123456789"},
			{dial: dialer(bridgeAddr), username: "farm1/cow-2", password: "cow-2-pw-0123456789"},
			{dial: dialer(bridgeAddr), username: devstack.BridgePrincipal, password: "guess"},
		},
		rogueMayConnect: true,
	}
}

// publishPaced publishes seqs [0, n) at QoS 1 to topic, spread over d, and
// returns how many the broker acknowledged.
func publishPaced(t *testing.T, cfg autopaho.ClientConfig, topic string, n int, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg.KeepAlive, cfg.CleanStartOnInitialConnection, cfg.ConnectTimeout = 30, true, 10*time.Second
	cfg.ReconnectBackoff = autopaho.NewConstantBackoff(100 * time.Millisecond)
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cm.Disconnect(context.Background()) }()
	actx, ac := context.WithTimeout(ctx, 30*time.Second)
	defer ac()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	nowMS := time.Now().UnixMilli()
	acked := 0
	for seq := 0; seq < n; seq++ {
		pctx, pc := context.WithTimeout(ctx, 30*time.Second)
		resp, err := cm.Publish(pctx, &paho.Publish{Topic: topic, QoS: 1,
			Payload: fmt.Appendf(nil, `{"ts":%d,"metric":"seq","value":%d,"unit":"count"}`, nowMS, seq)})
		pc()
		switch {
		case err != nil:
			t.Errorf("publish %d: %v", seq, err)
		case resp.ReasonCode >= 0x80:
			t.Errorf("publish %d: refused with %#x", seq, resp.ReasonCode)
		default:
			acked++
		}
		time.Sleep(d / time.Duration(n))
	}
	return acked
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
