package dynsec_test

import (
	"context"
	"net"
	"net/url"
	"os/exec"
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

const (
	adminUser   = "drover-registry"
	adminSecret = "admin-secret-0123456789"
	bridgeUser  = "drover-bridge"
	bridgeSec   = "bridge-secret-0123456789"
)

// broker starts a real mosquitto with the dynamic security plugin, loaded
// from a configuration rendered from the registry, and a running sync.
func broker(t *testing.T, e *registrytest.Env) (string, *dynsec.Sync) {
	t.Helper()
	cfg, err := dynsec.RenderConfig(e.View.Devices(), []dynsec.Service{
		{Username: adminUser, Secret: adminSecret, Role: "drover-dynsec-admin", ACLs: dynsec.AdminACLs()},
		{Username: bridgeUser, Secret: bridgeSec, Role: "drover-bridge", ACLs: dynsec.RoleACLs(registry.BridgeACL(), true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	u := registrytest.Mosquitto(t, cfg)
	ctx := registrytest.Ctx(t)
	c, err := dynsec.Dial(ctx, dynsec.ClientConfig{URL: u, Username: adminUser, Password: []byte(adminSecret), Log: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := dynsec.NewSync(e.View, c, time.Hour, nil, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("dynsec sync: no full reconciliation within 30s")
	}
	return u, s
}

// mqttClient is a paho (MQTT v5) client and what it saw.
type mqttClient struct {
	*paho.Client
	msgs chan *paho.Publish
	down chan struct{}
}

func connect(t *testing.T, u, clientID, user, pass string) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	pu, _ := url.Parse(u)
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	mc := &mqttClient{msgs: make(chan *paho.Publish, 100), down: make(chan struct{}, 2)}
	signal := func() {
		select {
		case mc.down <- struct{}{}:
		default:
		}
	}
	mc.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			mc.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(*paho.Disconnect) { signal() },
		OnClientError:      func(error) { signal() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := mc.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != ""})
	if err != nil {
		return nil, ca, err
	}
	t.Cleanup(func() { _ = mc.Disconnect(&paho.Disconnect{}) })
	return mc, ca, nil
}

func mustConnect(t *testing.T, u, key, pass string) *mqttClient {
	t.Helper()
	mc, ca, err := connect(t, u, key, key, pass)
	if err != nil {
		t.Fatalf("connect %s: %v (connack %+v)", key, err, ca)
	}
	return mc
}

func refused(t *testing.T, u, clientID, user, pass string) {
	t.Helper()
	_, ca, err := connect(t, u, clientID, user, pass)
	if err == nil {
		t.Fatalf("%s (user %s) connected, want refused", clientID, user)
	}
	if ca == nil || ca.ReasonCode < 0x80 {
		t.Fatalf("%s: %v, connack %+v: want a refusal reason code", clientID, err, ca)
	}
}

func publish(t *testing.T, mc *mqttClient, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := mc.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr != nil {
		return pr.ReasonCode
	}
	t.Fatalf("publish %s: %v", topic, err)
	return 0
}

// expect waits for payload on the bridge; any other payload in between is a
// failure when it is one of forbidden.
func expect(t *testing.T, bridge *mqttClient, payload string, forbidden ...string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-bridge.msgs:
			got := string(p.Payload)
			for _, f := range forbidden {
				if got == f {
					t.Fatalf("the bridge received %q on %s, which the broker must have refused", got, p.Topic)
				}
			}
			if got == payload {
				return
			}
		case <-deadline:
			t.Fatalf("the bridge did not receive %q within 10s", payload)
		}
	}
}

func TestIntegrationDynsecMosquitto(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	cow := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-1"})
	e.AddDevice(t, registry.NewDevice{Tenant: "farm2", ID: "cow-1"})
	wf := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "wf-1", Type: registry.TypeWildFi})
	sus := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-2"})
	if _, err := e.Store.SetStatus(ctx, "farm1", "cow-2", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	u, sync := broker(t, e)

	bridge, ca, err := connect(t, u, "drover-bridge-0", bridgeUser, bridgeSec)
	if err != nil {
		t.Fatalf("bridge: %v %+v", err, ca)
	}
	sa, err := bridge.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "$share/ingestors/devices/#", QoS: 1}, {Topic: "$share/ingestors/wildfi/#", QoS: 1}}})
	if err != nil || sa.Reasons[0] >= 0x80 || sa.Reasons[1] >= 0x80 {
		t.Fatalf("bridge subscribe: %v %+v", err, sa)
	}

	t.Run("a registered device publishes", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/cow-1", cow.Secret)
		if rc := publish(t, dev, "devices/farm1/cow-1/sensor", "ok-1"); rc != 0 {
			t.Fatalf("PUBACK reason 0x%02x", rc)
		}
		expect(t, bridge, "ok-1")
	})
	t.Run("refused at CONNECT", func(t *testing.T) {
		refused(t, u, "farm1/cow-1", "farm1/cow-1", cow.Secret+"x")   // wrong secret
		refused(t, u, "farm1/cow-1", "farm1/cow-1", wf.Secret)        // another device's secret
		refused(t, u, "farm1/other", "farm1/cow-1", cow.Secret)       // client id of another device
		refused(t, u, "farm1/cow-2", "farm1/cow-2", sus.Secret)       // suspended
		refused(t, u, "farm9/cow-1", "farm9/cow-1", cow.Secret)       // unknown
		refused(t, u, "drover-bridge-1", "drover-bridge", cow.Secret) // a device's secret for the bridge
		refused(t, u, "anonymous", "", "")                            // anonymous
	})
	t.Run("another tenant's topic, MQTT v5: PUBACK 0x87", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/cow-1", cow.Secret)
		for _, topic := range []string{"devices/farm2/cow-1/sensor", "devices/farm1/cow-2/sensor", "wildfi/cow-1/gps"} {
			if rc := publish(t, dev, topic, "forbidden-v5"); rc != 0x87 {
				t.Errorf("publish to %s: PUBACK reason 0x%02x, want 0x87 (not authorized)", topic, rc)
			}
		}
		publish(t, dev, "devices/farm1/cow-1/sensor", "after-v5")
		expect(t, bridge, "after-v5", "forbidden-v5")
	})
	t.Run("another tenant's topic, MQTT v3.1.1: dropped", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(strings.TrimPrefix(u, "tcp://"))
		pub := func(topic, msg string) {
			out, err := exec.Command("mosquitto_pub", "-V", "mqttv311", "-h", host, "-p", port, "-q", "1",
				"-i", "farm1/cow-1", "-u", "farm1/cow-1", "-P", cow.Secret, "-t", topic, "-m", msg).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_pub %s: %v: %s", topic, err, out)
			}
		}
		pub("devices/farm2/cow-1/sensor", "forbidden-311") // acknowledged, never delivered
		pub("devices/farm1/cow-1/sensor", "after-311")
		expect(t, bridge, "after-311", "forbidden-311")
	})
	t.Run("WildFi device on its WildFi topic", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/wf-1", wf.Secret)
		if rc := publish(t, dev, "wildfi/wf-1/gps", "wf-ok"); rc != 0 {
			t.Fatalf("PUBACK reason 0x%02x", rc)
		}
		expect(t, bridge, "wf-ok")
	})
	t.Run("subscribes only to its own commands", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/cow-1", cow.Secret)
		sa, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: "devices/farm1/cow-1/commands/#", QoS: 1}, {Topic: "devices/farm1/cow-2/commands", QoS: 1}, {Topic: "devices/#", QoS: 1}}})
		if sa == nil {
			t.Fatal(err) // err is also set when only some filters were refused
		}
		if sa.Reasons[0] >= 0x80 || sa.Reasons[1] != 0x87 || sa.Reasons[2] != 0x87 {
			t.Fatalf("SUBACK reasons %x, want [<0x80 0x87 0x87]", sa.Reasons)
		}
		if rc := publish(t, bridge, "devices/farm1/cow-1/commands", "reboot"); rc != 0 {
			t.Fatalf("bridge downlink: 0x%02x", rc)
		}
		select {
		case p := <-dev.msgs:
			if string(p.Payload) != "reboot" {
				t.Fatalf("got %q", p.Payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the device did not receive its command")
		}
	})
	t.Run("a device added live gets its secret pushed", func(t *testing.T) {
		a := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-4"})
		if err := sync.PushSecret(ctx, "farm1/cow-4", a.Secret); err != nil {
			t.Fatal(err)
		}
		dev := mustConnect(t, u, "farm1/cow-4", a.Secret)
		publish(t, dev, "devices/farm1/cow-4/sensor", "cow-4")
		expect(t, bridge, "cow-4")

		// A rotation without the new secret in hand: the old secret
		// stops working at once, the device waits for its password.
		r, err := e.Store.Rotate(ctx, "farm1", "cow-4")
		if err != nil {
			t.Fatal(err)
		}
		waitDown(t, dev, "rotated device")
		eventually(t, func() bool { return contains(sync.Pending(), "farm1/cow-4") })
		refused(t, u, "farm1/cow-4", "farm1/cow-4", a.Secret)
		refused(t, u, "farm1/cow-4", "farm1/cow-4", r.Secret)
		if err := sync.PushSecret(ctx, "farm1/cow-4", r.Secret); err != nil {
			t.Fatal(err)
		}
		mustConnect(t, u, "farm1/cow-4", r.Secret)
		refused(t, u, "farm1/cow-4", "farm1/cow-4", a.Secret)
		if contains(sync.Pending(), "farm1/cow-4") {
			t.Fatal("still pending after the push")
		}
	})
	t.Run("added without its secret pushed: waits, refused", func(t *testing.T) {
		a := e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-5"})
		eventually(t, func() bool { return contains(sync.Pending(), "farm1/cow-5") })
		refused(t, u, "farm1/cow-5", "farm1/cow-5", a.Secret)
	})
	t.Run("full reconciliation repairs drift", func(t *testing.T) {
		c, err := dynsec.Dial(ctx, dynsec.ClientConfig{URL: u, Username: adminUser, Password: []byte(adminSecret), ClientID: "tamper"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rs, err := c.Do(ctx,
			dynsec.Command{"command": "addRoleACL", "rolename": dynsec.RoleName("farm2/cow-1"), "acltype": "publishClientSend", "topic": "devices/#", "allow": true},
			dynsec.Command{"command": "createClient", "username": "farm7/ghost", "password": "ghost-secret-0123456", "textname": dynsec.DeviceTextName},
			dynsec.Command{"command": "setClientId", "username": "farm2/cow-1", "clientid": "anything"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Err() != nil {
				t.Fatal(r.Err())
			}
		}
		if err := sync.Full(ctx); err != nil {
			t.Fatal(err)
		}
		rs, err = c.Do(ctx, dynsec.Command{"command": "getRole", "rolename": dynsec.RoleName("farm2/cow-1")},
			dynsec.Command{"command": "getClient", "username": "farm7/ghost"},
			dynsec.Command{"command": "getClient", "username": "farm2/cow-1"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rs[0].Data), `"devices/#"`) {
			t.Errorf("the widened role was not repaired: %s", rs[0].Data)
		}
		if !dynsec.IsNotFound(rs[1].Err()) {
			t.Errorf("a drover client the registry does not have was not deleted: %s %v", rs[1].Data, rs[1].Err())
		}
		if !strings.Contains(string(rs[2].Data), `"clientid":"farm2/cow-1"`) {
			t.Errorf("the client id binding was not restored: %s", rs[2].Data)
		}
	})
	t.Run("suspend and activate", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/cow-1", cow.Secret)
		if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusSuspended); err != nil {
			t.Fatal(err)
		}
		waitDown(t, dev, "suspended device")
		refused(t, u, "farm1/cow-1", "farm1/cow-1", cow.Secret)
		if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusActive); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() bool {
			_, _, err := connect(t, u, "farm1/cow-1", "farm1/cow-1", cow.Secret)
			return err == nil
		})
	})
	t.Run("revoked: disconnected within seconds, refused after", func(t *testing.T) {
		dev := mustConnect(t, u, "farm1/cow-1", cow.Secret)
		start := time.Now()
		if _, err := e.Store.SetStatus(ctx, "farm1", "cow-1", registry.StatusRevoked); err != nil {
			t.Fatal(err)
		}
		waitDown(t, dev, "revoked device")
		t.Logf("revoked device disconnected %s after the revocation was written", time.Since(start).Round(time.Millisecond))
		refused(t, u, "farm1/cow-1", "farm1/cow-1", cow.Secret)
	})
}

func waitDown(t *testing.T, mc *mqttClient, what string) {
	t.Helper()
	select {
	case <-mc.down:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still connected 5s after the change", what)
	}
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
