package devstack_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

// The tests in this file hold the embedded broker (mochi, patched: see
// third_party/mochi-server/DROVER.md) to the MQTT 5 and 3.1.1
// specifications, with clients that share no code with drover or mochi —
// Python's paho-mqtt, mosquitto_pub and raw packets — and against a real
// mosquitto on the same inputs, so the two brokers agree wherever the
// specification leaves a choice.

// brokers starts the embedded broker and a real mosquitto and returns
// their host:port by name.
func brokers(t *testing.T) map[string]string {
	t.Helper()
	return map[string]string{
		"embedded":  strings.TrimPrefix(devtest.MQTT(t), "tcp://"),
		"mosquitto": strings.TrimPrefix(devtest.Mosquitto(t), "tcp://"),
	}
}

// pythonPaho returns a Python interpreter that has paho-mqtt (Debian's
// python3-paho-mqtt installs into the system Python, which a pyenv or venv
// python3 on PATH may hide).
func pythonPaho(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import paho.mqtt.client").Run() == nil {
			return py
		}
	}
	t.Fatal("no python3 with paho-mqtt: apt-get install -y python3-paho-mqtt (scripts/deps installs it)")
	return ""
}

// runPaho runs testdata/mqtt5_client.py for scenario against addr and
// decodes the JSON it prints into out.
func runPaho(t *testing.T, py, addr, scenario string, out any) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(py, filepath.Join("testdata", "mqtt5_client.py"), host, port, scenario)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("paho-mqtt %s against %s: %v\n%s", scenario, addr, err, stderr.String())
	}
	if err := json.Unmarshal(stdout, out); err != nil {
		t.Fatalf("paho-mqtt %s: %v: %s\n%s", scenario, err, stdout, stderr.String())
	}
}

type pahoProps struct {
	UserProperty          [][]string `json:"UserProperty"`
	ContentType           string     `json:"ContentType"`
	ResponseTopic         string     `json:"ResponseTopic"`
	CorrelationData       string     `json:"CorrelationData"`
	MessageExpiryInterval int        `json:"MessageExpiryInterval"`
	TopicAliasMaximum     int        `json:"TopicAliasMaximum"`
	ReasonString          string     `json:"ReasonString"`
}

type pahoAck struct {
	Codes      []int     `json:"codes"`
	Properties pahoProps `json:"properties"`
}

// TestIntegrationMQTTPythonPaho: Python's paho-mqtt publishes with every
// PUBLISH property at QoS 1 and 2 and gets its messages back with the
// properties intact; SUBACK and UNSUBACK carry the right reason codes and do
// not echo the request's user properties; a QoS 1/2 publish to $SYS is
// answered for MQTT 5 and 3.1.1; a topic alias above the announced maximum
// is a protocol error. Before the fixes the embedded broker answered the
// QoS 1 publish with PUBACK reason 0x01 plus the echoed user properties,
// which made paho-mqtt's network thread die (AssertionError), and left the
// $SYS publishes unanswered.
func TestIntegrationMQTTPythonPaho(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	py := pythonPaho(t)
	for name, addr := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			var p struct {
				Alive   bool `json:"alive"`
				Connack struct {
					RC         int       `json:"rc"`
					Properties pahoProps `json:"properties"`
				} `json:"connack"`
				QoS1     struct{ Published bool } `json:"qos1"`
				QoS2     struct{ Published bool } `json:"qos2"`
				Received []struct {
					Topic      string    `json:"topic"`
					QoS        int       `json:"qos"`
					Properties pahoProps `json:"properties"`
				} `json:"received"`
				Suback   pahoAck `json:"suback"`
				Unsuback pahoAck `json:"unsuback"`
			}
			runPaho(t, py, addr, "properties", &p)
			if p.Connack.RC != 0 || p.Connack.Properties.TopicAliasMaximum != 10 {
				t.Errorf("CONNACK rc %d, Topic Alias Maximum %d; want 0 and 10", p.Connack.RC, p.Connack.Properties.TopicAliasMaximum)
			}
			if !p.QoS1.Published || !p.QoS2.Published || !p.Alive {
				t.Errorf("publish with properties: QoS 1 completed %v, QoS 2 completed %v, client alive %v", p.QoS1.Published, p.QoS2.Published, p.Alive)
			}
			want := pahoProps{UserProperty: [][]string{{"source", "paho-python"}, {"k", "v"}}, ContentType: "application/json",
				ResponseTopic: "replies/python", CorrelationData: "corr-42", MessageExpiryInterval: 3600}
			if len(p.Received) != 2 {
				t.Fatalf("received %d of 2 messages back: %+v", len(p.Received), p.Received)
			}
			for _, m := range p.Received {
				// The expiry counts down while the message waits in the
				// broker; it is forwarded, not reset.
				if got := m.Properties; got.MessageExpiryInterval < 3590 || got.MessageExpiryInterval > 3600 {
					t.Errorf("%s: message expiry %d, want about 3600", m.Topic, got.MessageExpiryInterval)
				}
				m.Properties.MessageExpiryInterval = 3600
				if fmt.Sprint(m.Properties) != fmt.Sprint(want) {
					t.Errorf("%s: properties delivered %+v, want %+v", m.Topic, m.Properties, want)
				}
			}
			if !slices.Equal(p.Suback.Codes, []int{2, 1}) || p.Suback.Properties.UserProperty != nil {
				t.Errorf("SUBACK %+v, want codes [2 1] and no user properties", p.Suback)
			}
			if !slices.Equal(p.Unsuback.Codes, []int{0, 0x11}) || p.Unsuback.Properties.UserProperty != nil {
				t.Errorf("UNSUBACK %+v, want codes [0 0x11] and no user properties", p.Unsuback)
			}

			for _, scenario := range []string{"sys5", "sys311"} {
				var s map[string]struct{ Answered, Alive bool }
				runPaho(t, py, addr, scenario, &s)
				for _, qos := range []string{"qos1", "qos2"} {
					// mosquitto closes the connection after refusing a
					// publish (see TestIntegrationMQTTRawAgreesWithMosquitto),
					// so there paho-mqtt never completes a QoS 2 one (it
					// waits for a PUBCOMP); the embedded broker keeps the
					// connection.
					if name == "mosquitto" && qos == "qos2" {
						continue
					}
					if !s[qos].Answered || (name == "embedded" && !s[qos].Alive) {
						t.Errorf("%s: publish to $SYS at %s: answered %v, connection kept %v", scenario, qos, s[qos].Answered, s[qos].Alive)
					}
				}
			}

			var a struct {
				Max        int  `json:"topic_alias_maximum"`
				Disconnect *int `json:"disconnect"`
			}
			runPaho(t, py, addr, "alias", &a)
			switch {
			case a.Disconnect == nil:
				t.Errorf("topic alias %d (above the maximum %d): still connected", a.Max+1, a.Max)
			case name == "embedded" && *a.Disconnect != 0x94:
				// mosquitto closes the socket right after its DISCONNECT,
				// and paho may see only the lost connection.
				t.Errorf("topic alias above the maximum: disconnected with %#x, want 0x94", *a.Disconnect)
			}
		})
	}
}

// TestIntegrationMQTTMosquittoPub: mosquitto_pub -V mqttv5 with user and
// content-type properties (the acknowledgement's reason code printed with
// -d), and publishes to $SYS refused with 0x87 over MQTT 5 and acknowledged
// over MQTT 3.1.1, on both brokers.
func TestIntegrationMQTTMosquittoPub(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Fatal("mosquitto_pub not found: apt-get install -y mosquitto-clients (scripts/deps installs it)")
	}
	// mosquitto 2.0.11 with max_queued_messages 0 (drover's setting) closes
	// the connection after refusing a publish, so a v3.1.1 QoS 2 publish to
	// $SYS never sees its PUBCOMP there: embedded lists what only the
	// embedded broker must also print.
	cases := []struct {
		name     string
		args     []string
		wants    []string
		embedded []string
	}{
		{"v5 QoS 1 with properties, no subscriber", []string{"-V", "mqttv5", "-q", "1", "-t", "devices/t1/d1/sensor",
			"-D", "publish", "user-property", "source", "mosquitto_pub", "-D", "publish", "content-type", "application/json"},
			[]string{"received PUBACK (Mid: 1, RC:16)"}, nil},
		{"v5 QoS 2 with properties", []string{"-V", "mqttv5", "-q", "2", "-t", "devices/t1/d1/sensor",
			"-D", "publish", "user-property", "source", "mosquitto_pub", "-D", "publish", "message-expiry-interval", "60"},
			[]string{"received PUBREC (Mid: 1)", "received PUBCOMP (Mid: 1, RC:0)"}, nil},
		{"v5 QoS 1 to $SYS", []string{"-V", "mqttv5", "-q", "1", "-t", "$SYS/drover/x"},
			[]string{"received PUBACK (Mid: 1, RC:135)", "Publish 1 failed: Not authorized"}, nil},
		{"v5 QoS 2 to $SYS", []string{"-V", "mqttv5", "-q", "2", "-t", "$SYS/drover/x"},
			[]string{"received PUBREC (Mid: 1", "Publish 1 failed: Not authorized"}, nil},
		{"v3.1.1 QoS 1 to $SYS", []string{"-V", "mqttv311", "-q", "1", "-t", "$SYS/drover/x"}, []string{"received PUBACK (Mid: 1"}, nil},
		{"v3.1.1 QoS 2 to $SYS", []string{"-V", "mqttv311", "-q", "2", "-t", "$SYS/drover/x"}, []string{"received PUBREC (Mid: 1)"},
			[]string{"received PUBCOMP (Mid: 1"}},
	}
	for name, addr := range brokers(t) {
		host, port, _ := net.SplitHostPort(addr)
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				args := append([]string{"-h", host, "-p", port, "-d", "-m", `{"ts":1,"metric":"x","value":1}`}, tc.args...)
				cmd := exec.Command("mosquitto_pub", args...)
				timer := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
				out, _ := cmd.CombinedOutput()
				timer.Stop()
				wants := tc.wants
				if name == "embedded" {
					wants = append(slices.Clone(wants), tc.embedded...)
				}
				for _, w := range wants {
					if !strings.Contains(string(out), w) {
						t.Errorf("mosquitto_pub %s: output lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
					}
				}
			})
		}
	}
}

// rawMQTT builds MQTT packets byte by byte, to send what clients refuse to
// send (wildcards in a topic, aliases out of range) and see exactly what a
// broker answers.
type rawMQTT struct{}

func (rawMQTT) vbi(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		if b = append(b, d); n == 0 {
			return b
		}
	}
}

func (rawMQTT) str(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func (r rawMQTT) packet(first byte, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	return append(append([]byte{first}, r.vbi(len(b))...), b...)
}

func (r rawMQTT) connect(version byte) []byte {
	props := []byte{}
	if version == 5 {
		props = []byte{0}
	}
	return r.packet(0x10, r.str("MQTT"), []byte{version, 0x02, 0, 30}, props, r.str("raw-probe"))
}

// publish is a PUBLISH with packet id 7 (QoS > 0) and the given MQTT 5
// properties (nil for MQTT 3.1.1).
func (r rawMQTT) publish(qos byte, topic string, props []byte) []byte {
	id := []byte{}
	if qos > 0 {
		id = []byte{0, 7}
	}
	var p []byte
	if props != nil {
		p = append(r.vbi(len(props)), props...)
	}
	return r.packet(0x30|qos<<1, r.str(topic), id, p, []byte("x"))
}

func (r rawMQTT) alias(n uint16) []byte { return []byte{0x23, byte(n >> 8), byte(n)} }

func (r rawMQTT) userProp(k, v string) []byte {
	return append(append([]byte{0x26}, r.str(k)...), r.str(v)...)
}

// exchange connects to addr with the protocol version, sends packets and
// returns every packet the broker sent back within a short wait, each as
// "TYPE" or "TYPE 0xRC" (reason code; for SUBACK/UNSUBACK the codes, and
// "+props" when the packet carries properties other than a reason string),
// then "closed" if the broker closed the connection.
func (r rawMQTT) exchange(t *testing.T, addr string, version byte, packets ...[]byte) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := conn.Write(r.connect(version)); err != nil {
		t.Fatal(err)
	}
	if got := r.read(t, conn, br, version, 5*time.Second); len(got) == 0 || got[0] != "CONNACK" {
		t.Fatalf("CONNACK: %v", got)
	}
	for _, p := range packets {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	return r.read(t, conn, br, version, 700*time.Millisecond)
}

func (r rawMQTT) read(t *testing.T, conn net.Conn, br *bufio.Reader, version byte, wait time.Duration) []string {
	t.Helper()
	names := map[byte]string{2: "CONNACK", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP", 9: "SUBACK", 11: "UNSUBACK", 14: "DISCONNECT"}
	var out []string
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	for {
		h, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
				out = append(out, "closed")
			}
			return out
		}
		n, mul := 0, 1
		for {
			d, err := br.ReadByte()
			if err != nil {
				t.Fatal(err)
			}
			n, mul = n+int(d&127)*mul, mul*128
			if d&128 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			t.Fatal(err)
		}
		out = append(out, r.describe(names[h>>4], version, body))
		if h>>4 == 2 {
			return out
		}
	}
}

// describe summarises a received packet body (see exchange).
func (r rawMQTT) describe(typ string, version byte, body []byte) string {
	s := typ
	propsAt := -1
	switch typ {
	case "PUBACK", "PUBREC", "PUBCOMP":
		if len(body) > 2 {
			s += fmt.Sprintf(" %#02x", body[2])
			propsAt = 3
		}
	case "DISCONNECT":
		if len(body) > 0 {
			s += fmt.Sprintf(" %#02x", body[0])
			propsAt = 1
		}
	case "SUBACK", "UNSUBACK":
		codes := body[2:]
		if version == 5 {
			plen := int(body[2]) // every test property block is shorter than 128 bytes
			propsAt, codes = 2, body[3+plen:]
		}
		for _, c := range codes {
			s += fmt.Sprintf(" %#02x", c)
		}
	}
	if version == 5 && propsAt >= 0 && propsAt < len(body) {
		props := body[propsAt+1:]
		if int(body[propsAt]) < len(props) {
			props = props[:body[propsAt]]
		}
		if len(props) > 0 && props[0] != 0x1f { // anything but a reason string
			s += " +props"
		}
	}
	return s
}

// TestIntegrationMQTTRawAgreesWithMosquitto sends the edge cases of
// issue 14 (items 10 and 11) and their siblings as raw packets to both
// brokers and checks what comes back. Where the specification leaves a
// choice, the embedded broker answers as mosquitto does; the few remaining
// differences are allowed by the specification and listed in
// third_party/mochi-server/DROVER.md.
func TestIntegrationMQTTRawAgreesWithMosquitto(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	var r rawMQTT
	allProps := bytes.Join([][]byte{{0x03}, r.str("application/json"), {0x02, 0, 0, 0, 60}, {0x08}, r.str("resp/x"),
		{0x09}, r.str("corr"), r.userProp("k", "v")}, nil)
	subscribe := r.packet(0x82, []byte{0, 9}, []byte{byte(len(r.userProp("k", "v")))}, r.userProp("k", "v"), r.str("x/y"), []byte{1})
	unsubscribe := r.packet(0xa2, []byte{0, 10}, []byte{byte(len(r.userProp("k", "v")))}, r.userProp("k", "v"), r.str("x/y"))
	// want is what both brokers answer, unless embedded or mosquitto says
	// otherwise for one of them: mosquitto 2.0.11 with max_queued_messages
	// 0 (drover's setting) closes the connection after refusing a publish
	// ("Bad socket read/write" in its log), which the specification allows
	// and the embedded broker does not copy; the other differences are
	// choices the specification leaves and are listed in DROVER.md.
	cases := []struct {
		name      string
		version   byte
		packets   [][]byte
		want      []string
		embedded  []string
		mosquitto []string
	}{
		{"v5 QoS 1 with properties, no subscriber", 5, [][]byte{r.publish(1, "devices/t/d/sensor", allProps)}, []string{"PUBACK 0x10"}, nil, nil},
		{"v5 QoS 2 with properties", 5, [][]byte{r.publish(2, "devices/t/d/sensor", allProps), r.packet(0x62, []byte{0, 7})},
			[]string{"PUBREC", "PUBCOMP"}, nil, nil},
		{"v5 QoS 2 repeated before PUBREL", 5, [][]byte{r.publish(2, "a/b", []byte{}), r.publish(2, "a/b", []byte{})},
			[]string{"PUBREC", "PUBREC"}, nil, nil},
		{"v5 QoS 1 to $SYS", 5, [][]byte{r.publish(1, "$SYS/broker/x", []byte{})}, []string{"PUBACK 0x87"}, nil, []string{"PUBACK 0x87", "closed"}},
		{"v5 QoS 2 to $SYS", 5, [][]byte{r.publish(2, "$SYS/broker/x", []byte{})}, []string{"PUBREC 0x87"}, nil, []string{"PUBREC 0x87", "closed"}},
		{"v5 QoS 1 to $SYS with properties", 5, [][]byte{r.publish(1, "$SYS/x", allProps)}, []string{"PUBACK 0x87"}, nil, []string{"PUBACK 0x87", "closed"}},
		{"v5 QoS 1 to $share/g/t", 5, [][]byte{r.publish(1, "$share/g/t", []byte{})}, []string{"PUBACK 0x87"}, nil, []string{"PUBACK 0x87", "closed"}},
		{"v5 QoS 0 to $SYS", 5, [][]byte{r.publish(0, "$SYS/broker/x", []byte{})}, nil, nil, []string{"closed"}},
		{"v3.1.1 QoS 1 to $SYS", 4, [][]byte{r.publish(1, "$SYS/broker/x", nil)}, []string{"PUBACK"}, nil, []string{"PUBACK", "closed"}},
		{"v3.1.1 QoS 2 to $SYS", 4, [][]byte{r.publish(2, "$SYS/broker/x", nil), r.packet(0x62, []byte{0, 7})},
			[]string{"PUBREC", "PUBCOMP"}, nil, []string{"PUBREC", "closed"}},
		{"v5 wildcard + in the topic", 5, [][]byte{r.publish(1, "a/+/b", []byte{})}, []string{"DISCONNECT 0x82", "closed"}, nil, nil},
		{"v5 wildcard # in the topic", 5, [][]byte{r.publish(1, "a/#", []byte{})}, []string{"DISCONNECT 0x82", "closed"}, nil, nil},
		{"v3.1.1 wildcard in the topic", 4, [][]byte{r.publish(1, "a/+/b", nil)}, []string{"closed"}, nil, nil},
		{"v5 empty topic, no alias", 5, [][]byte{r.publish(1, "", []byte{})}, []string{"DISCONNECT 0x82", "closed"}, nil, nil},
		{"v3.1.1 empty topic", 4, [][]byte{r.publish(1, "", nil)}, []string{"closed"}, nil, nil},
		{"v5 topic alias above the maximum", 5, [][]byte{r.publish(1, "a/b", r.alias(11))}, []string{"DISCONNECT 0x94", "closed"}, nil, nil},
		{"v5 topic alias 65535", 5, [][]byte{r.publish(1, "a/b", r.alias(65535))}, []string{"DISCONNECT 0x94", "closed"}, nil, nil},
		{"v5 topic alias 0", 5, [][]byte{r.publish(1, "a/b", r.alias(0))}, []string{"DISCONNECT 0x81", "closed"},
			[]string{"DISCONNECT 0x94", "closed"}, nil},
		{"v5 empty topic with an alias never set", 5, [][]byte{r.publish(1, "", r.alias(3))}, []string{"DISCONNECT 0x82", "closed"}, nil, nil},
		{"v5 alias set, then used", 5, [][]byte{r.publish(1, "a/b", r.alias(1)), r.publish(1, "", r.alias(1))},
			[]string{"PUBACK 0x10", "PUBACK 0x10"}, nil, nil},
		{"v5 SUBSCRIBE and UNSUBSCRIBE with a user property", 5, [][]byte{subscribe, unsubscribe},
			[]string{"SUBACK 0x01", "UNSUBACK 0x00"}, nil, nil},
		{"v5 UNSUBSCRIBE of nothing", 5, [][]byte{unsubscribe}, []string{"UNSUBACK 0x11"}, nil, nil},
	}
	for name, addr := range brokers(t) {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				want := tc.want
				if name == "embedded" && tc.embedded != nil {
					want = tc.embedded
				}
				if name == "mosquitto" && tc.mosquitto != nil {
					want = tc.mosquitto
				}
				if got := r.exchange(t, addr, tc.version, tc.packets...); !slices.Equal(got, want) {
					t.Errorf("got %q, want %q", got, want)
				}
			})
		}
	}
}
