package devstack_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

// v5Client connects an MQTT 5 client (paho.golang) whose received
// messages arrive on the returned channel.
func v5Client(t *testing.T, url, id string) (*paho.Client, <-chan *paho.Publish) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 1000)
	c := paho.NewClient(paho.ClientConfig{
		ClientID: id,
		Conn:     pahopackets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil },
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ack.ReasonCode != 0 {
		t.Fatalf("connack %s: %d", id, ack.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, msgs
}

func v5Subscribe(t *testing.T, c *paho.Client, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
}

func v5Publish(t *testing.T, c *paho.Client, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func receive(t *testing.T, ch <-chan *paho.Publish) *paho.Publish {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

// client311 is a minimal MQTT 3.1.1 client built on mochi's packet codec,
// as paho.golang speaks only MQTT 5.
type client311 struct {
	conn net.Conn
	r    *bufio.Reader
}

func dial311(t *testing.T, url, id string) *client311 {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client311{conn: conn, r: bufio.NewReader(conn)}
	c.send(t, packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 4,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: true, Keepalive: 30},
	})
	if pk := c.read(t); pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("connack: %+v", pk)
	}
	return c
}

func (c *client311) send(t *testing.T, pk packets.Packet) {
	t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
}

func (c *client311) read(t *testing.T) packets.Packet {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadByte()
	if err != nil {
		t.Fatal(err)
	}
	var pk packets.Packet
	if err := pk.FixedHeader.Decode(b); err != nil {
		t.Fatal(err)
	}
	n, mul := 0, 1
	for {
		d, err := c.r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		n += int(d&127) * mul
		if d&128 == 0 {
			break
		}
		mul *= 128
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	pk.ProtocolVersion = 4
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func TestIntegrationMQTTVersions(t *testing.T) {
	url := devtest.MQTT(t)

	// v3.1.1 subscriber, v5 publisher.
	old := dial311(t, url, "old")
	old.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "devices/t1/+/sensor", Qos: 1}}})
	if pk := old.read(t); pk.FixedHeader.Type != packets.Suback || len(pk.ReasonCodes) != 1 || pk.ReasonCodes[0] != 1 {
		t.Fatalf("suback: %+v", pk)
	}
	v5, msgs := v5Client(t, url, "new")
	v5Subscribe(t, v5, "devices/t1/+/gps")
	v5Publish(t, v5, "devices/t1/d1/sensor", "from v5")
	pk := old.read(t)
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 1 || string(pk.Payload) != "from v5" {
		t.Fatalf("v3.1.1 received %+v", pk)
	}
	old.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})

	// v3.1.1 publisher (QoS 1, PUBACK expected), v5 subscriber.
	old.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
		TopicName: "devices/t1/d1/gps", Payload: []byte("from v3.1.1")})
	if pk := old.read(t); pk.FixedHeader.Type != packets.Puback || pk.PacketID != 7 {
		t.Fatalf("puback: %+v", pk)
	}
	if p := receive(t, msgs); string(p.Payload) != "from v3.1.1" || p.QoS != 1 {
		t.Fatalf("v5 received %+v", p)
	}
}

func TestIntegrationMQTTSharedSubscription(t *testing.T) {
	url := devtest.MQTT(t)
	a, msgsA := v5Client(t, url, "ingestor-a")
	b, msgsB := v5Client(t, url, "ingestor-b")
	v5Subscribe(t, a, "$share/ingestors/devices/#")
	v5Subscribe(t, b, "$share/ingestors/devices/#")
	pub, _ := v5Client(t, url, "device")
	const n = 40
	for i := 0; i < n; i++ {
		v5Publish(t, pub, fmt.Sprintf("devices/t1/d%d/sensor", i), fmt.Sprint(i))
	}
	seen := map[string]string{} // payload -> subscriber
	count := map[string]int{}
	deadline := time.After(10 * time.Second)
	for len(seen) < n {
		var p *paho.Publish
		var who string
		select {
		case p = <-msgsA:
			who = "a"
		case p = <-msgsB:
			who = "b"
		case <-deadline:
			t.Fatalf("received %d of %d messages", len(seen), n)
		}
		if prev, dup := seen[string(p.Payload)]; dup {
			t.Fatalf("message %s delivered to %s and %s", p.Payload, prev, who)
		}
		seen[string(p.Payload)] = who
		count[who]++
	}
	select { // nothing more arrives
	case p := <-msgsA:
		t.Fatalf("extra message %s", p.Payload)
	case p := <-msgsB:
		t.Fatalf("extra message %s", p.Payload)
	case <-time.After(200 * time.Millisecond):
	}
	if count["a"] == 0 || count["b"] == 0 {
		t.Fatalf("messages not split between the group members: %v", count)
	}
	t.Logf("split: %v", count)
}

// TestIntegrationMQTTReservedClientIDs: with ReserveClientIDs the embedded
// broker refuses a client id under the prefix unless the client
// authenticates as the principal (MQTT 5 and 3.1.1, so no device can take
// the bridge's session over); every other id stays open to anonymous
// clients.
func TestIntegrationMQTTReservedClientIDs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := devstack.NewMQTT(l, devtest.Logger(), devstack.ReserveClientIDs(devstack.BridgePrincipal, devstack.BridgePrincipal, []byte("pw")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	addr := l.Addr().String()
	for _, tc := range []struct {
		name, id, user, pass string
		want                 byte // CONNACK reason code
	}{
		{"bridge id, anonymous", "drover-bridge-1", "", "", 0x86},
		{"bridge id, wrong password", "drover-bridge-1", devstack.BridgePrincipal, "guess", 0x86},
		{"bridge id, another user", "drover-bridge-1", "cow-1", "pw", 0x86},
		{"bare prefix", devstack.BridgePrincipal, "", "", 0x86},
		{"bridge id, the bridge", "drover-bridge-1", devstack.BridgePrincipal, "pw", 0},
		{"device, anonymous", "cow-1", "", "", 0},
		{"device with the bridge's credentials", "cow-2", devstack.BridgePrincipal, "pw", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := paho.NewClient(paho.ClientConfig{ClientID: tc.id, Conn: pahopackets.NewThreadSafeConn(conn)})
			cp := &paho.Connect{ClientID: tc.id, CleanStart: true, KeepAlive: 30}
			if tc.user != "" {
				cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = tc.user, true, []byte(tc.pass), true
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ack, err := c.Connect(ctx, cp)
			if ack == nil {
				t.Fatalf("no CONNACK: %v", err)
			}
			if ack.ReasonCode != tc.want {
				t.Fatalf("CONNACK %#x (%v), want %#x", ack.ReasonCode, err, tc.want)
			}
		})
	}
	// MQTT 3.1.1: refused with return code 5 (not authorized).
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client311{conn: conn, r: bufio.NewReader(conn)}
	c.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "drover-bridge-1", Clean: false, Keepalive: 30}})
	if pk := c.read(t); pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 5 {
		t.Fatalf("v3.1.1 CONNACK %+v, want return code 5", pk)
	}
}
