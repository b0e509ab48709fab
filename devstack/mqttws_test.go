package devstack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationMQTTWebSocket: Python's paho-mqtt speaks MQTT over
// WebSockets to the embedded broker and to a real mosquitto with a
// websockets listener (as compose's mosquitto.conf has): a QoS 1 publish over
// WebSockets is acknowledged and reaches a TCP subscriber, and a TCP publish
// reaches a WebSocket subscriber.
func TestIntegrationMQTTWebSocket(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	py := pythonPaho(t)

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := devstack.NewMQTT(tcp, devtest.Logger(), devstack.WithWebSocket(ws))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	wsPort := devtest.FreePort(t)
	mosq := strings.TrimPrefix(devtest.Mosquitto(t, fmt.Sprintf("listener %d 127.0.0.1", wsPort), "protocol websockets"), "tcp://")
	waitTCP(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(wsPort)))

	for name, addrs := range map[string][2]string{
		"embedded":  {ws.Addr().String(), tcp.Addr().String()},
		"mosquitto": {net.JoinHostPort("127.0.0.1", strconv.Itoa(wsPort)), mosq},
	} {
		t.Run(name, func(t *testing.T) {
			wsHost, wsPortS, _ := net.SplitHostPort(addrs[0])
			tcpHost, tcpPort, _ := net.SplitHostPort(addrs[1])
			cmd := exec.Command(py, filepath.Join("testdata", "mqtt_ws_client.py"), wsHost, wsPortS, devstack.MQTTWebSocketPath, tcpHost, tcpPort)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
			defer timer.Stop()
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("paho-mqtt over websockets: %v\n%s", err, stderr.String())
			}
			var r struct {
				PubAck bool   `json:"puback"`
				TCPGot string `json:"tcp_got"`
				WSGot  string `json:"ws_got"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if !r.PubAck || r.TCPGot != `{"metric":"t","value":21.5}` || r.WSGot != `{"metric":"t","value":7}` {
				t.Fatalf("result %+v\n%s", r, stderr.String())
			}
		})
	}
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
