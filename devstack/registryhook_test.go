package devstack_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

// registryBroker starts the embedded broker with the registry hook (and
// its kicker) on a free port.
func registryBroker(t *testing.T, e *registrytest.Env, services ...registry.Service) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return registryBrokerOn(t, e, l, services...)
}

// registryBrokerOn is registryBroker on listener l (a TLS listener for
// certificate devices).
func registryBrokerOn(t *testing.T, e *registrytest.Env, l net.Listener, services ...registry.Service) string {
	t.Helper()
	auth, err := registry.NewAuth(e.View, services...)
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: devtest.Logger()})
	hook := devstack.NewRegistryAuth(srv, auth, devtest.Logger())
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("tcp", l)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hook.RunKicker(ctx, e.View) }()
	t.Cleanup(func() { cancel(); <-done; _ = srv.Close() })
	return l.Addr().String()
}

type client struct {
	*paho.Client
	msgs chan *paho.Publish
	down chan struct{}
}

func dial(t *testing.T, addr, id, user, pass string) (*client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return dialConn(t, conn, id, user, pass)
}

// dialConn connects an MQTT v5 client over conn.
func dialConn(t *testing.T, conn net.Conn, id, user, pass string) (*client, error) {
	t.Helper()
	c := &client{msgs: make(chan *paho.Publish, 64), down: make(chan struct{}, 1)}
	signal := func() {
		select {
		case c.down <- struct{}{}:
		default:
		}
	}
	c.Client = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { signal() }, OnClientError: func(error) { signal() }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""}); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, nil
}

func pub(t *testing.T, c *client, topic, msg string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(msg)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

func await(t *testing.T, c *client, want string, forbidden ...string) {
	t.Helper()
	for {
		select {
		case p := <-c.msgs:
			for _, f := range forbidden {
				if string(p.Payload) == f {
					t.Fatalf("delivered %q on %s, which the broker must have refused", f, p.Topic)
				}
			}
			if string(p.Payload) == want {
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered within 10s", want)
		}
	}
}

func TestIntegrationEmbeddedBrokerRegistry(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	cow := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	other := e.AddDevice(t, registry.NewDevice{Tenant: "farm2", ID: "cow-1"})
	bh, _ := registry.HashSecret("bridge-secret-0123456789")
	addr := registryBroker(t, e, registry.Service{Name: "drover-bridge", Secret: bh, ClientIDPrefix: "drover-bridge", ACL: registry.BridgeACL()})

	bridge, err := dial(t, addr, "drover-bridge-0", "drover-bridge", "bridge-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := bridge.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/ingestors/devices/#", QoS: 1}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("bridge subscribe: %v %+v", err, sa)
	}
	dev, err := dial(t, addr, "farm1/cow-1", "farm1/cow-1", cow.Secret)
	if err != nil {
		t.Fatalf("registered device refused: %v", err)
	}
	if rc := pub(t, dev, "devices/farm1/cow-1/sensor", "ok"); rc >= 0x80 {
		t.Fatalf("own topic: 0x%02x", rc)
	}
	await(t, bridge, "ok")

	for _, c := range []struct{ id, user, pass string }{
		{"farm1/cow-1", "farm1/cow-1", cow.Secret + "x"}, // wrong secret
		{"farm1/cow-1", "farm1/cow-1", other.Secret},     // another device's secret
		{"farm9/x", "farm1/cow-1", cow.Secret},           // client id of another device
		{"anon", "", ""},                                 // anonymous
		{"drover-bridge-1", "drover-bridge", cow.Secret}, // wrong service secret
	} {
		if _, err := dial(t, addr, c.id, c.user, c.pass); err == nil {
			t.Errorf("%s (user %q) connected, want refused", c.id, c.user)
		}
	}

	// MQTT v5: another tenant's topic is refused with PUBACK 0x87.
	if rc := pub(t, dev, "devices/farm2/cow-1/sensor", "forbidden-v5"); rc != 0x87 {
		t.Fatalf("another tenant's topic: PUBACK 0x%02x, want 0x87", rc)
	}
	pub(t, dev, "devices/farm1/cow-1/sensor", "after-v5")
	await(t, bridge, "after-v5", "forbidden-v5")

	// MQTT v3.1.1 (mosquitto_pub, an independent client): refused too; mochi
	// closes the connection, as MQTT 3.1.1 allows [MQTT-3.3.5-2].
	host, port, _ := net.SplitHostPort(addr)
	out, _ := exec.Command("mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-q", "1", "-i", "farm1/cow-1",
		"-u", "farm1/cow-1", "-P", cow.Secret, "-t", "devices/farm2/cow-1/sensor", "-m", "forbidden-311").CombinedOutput()
	t.Logf("mosquitto_pub v3.1.1 to another tenant: %s", strings.TrimSpace(string(out)))
	dev2, err := dial(t, addr, "farm1/cow-1", "farm1/cow-1", cow.Secret)
	if err != nil {
		t.Fatal(err)
	}
	pub(t, dev2, "devices/farm1/cow-1/sensor", "after-311")
	await(t, bridge, "after-311", "forbidden-311")

	sa, err = dev2.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/farm1/cow-1/commands/#", QoS: 1}, {Topic: "devices/farm2/cow-1/commands", QoS: 1}}})
	if sa == nil || sa.Reasons[0] >= 0x80 || sa.Reasons[1] != 0x87 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}

	// Revoked: disconnected within seconds, refused after.
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev2.down:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked device still connected after 5s")
	}
	if _, err := dial(t, addr, "farm1/cow-1", "farm1/cow-1", cow.Secret); err == nil {
		t.Fatal("revoked device reconnected")
	}
}
