package controlcmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/bridge"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestParams(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    string
		wantErr string
	}{
		{name: "none", want: `{}`},
		{name: "typed", in: []string{"seconds=60", "on=true", "label=north field", "list=[1,2]", "empty="},
			want: `{"empty":"","label":"north field","list":[1,2],"on":true,"seconds":60}`},
		{name: "value with =", in: []string{"expr=a=b"}, want: `{"expr":"a=b"}`},
		{name: "no =", in: []string{"seconds"}, wantErr: "want KEY=VALUE"},
		{name: "empty key", in: []string{"=1"}, wantErr: "want KEY=VALUE"},
		{name: "twice", in: []string{"a=1", "a=2"}, wantErr: "a given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Params(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Params = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

type stack struct {
	brokers []string
	regURL  string
	mqttURL string
}

func run(t *testing.T, s *stack, args ...string) (string, string, int) {
	t.Helper()
	cmd := Command(&cli.Conn{})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(append(args, "--kafka-brokers", strings.Join(s.brokers, ","), "--schema-registry-url", s.regURL))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), cli.ExitCode(err)
}

// newStack starts Kafka, the schema registry, Mosquitto and a bridge with
// its downlink, and a device farm1/cow-1 that answers "ping" with
// succeeded and anything else with failed.
func newStack(t *testing.T) *stack {
	t.Helper()
	k := devtest.Kafka(t, kfake.SeedTopics(2, topics.Commands, topics.CommandStatus, topics.DLQ, topics.RawSensor))
	_, regURL := devtest.Registry(t)
	rcl, err := sr.NewClient(sr.URLs(regURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := schemas.Register(ctx, rcl, nil); err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(rcl)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{brokers: k.ListenAddrs(), regURL: regURL, mqttURL: devtest.Mosquitto(t)}
	device(t, ctx, s.mqttURL)
	b, err := bridge.New(bridge.Config{MQTTURL: s.mqttURL, ClientID: "cmd-bridge", KafkaOpts: []kgo.Opt{kgo.SeedBrokers(s.brokers...)},
		Serde: serde, Downlink: true, Presence: bridge.PresenceNone, ExpiryTick: 100 * time.Millisecond, Log: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	bctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(bctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("bridge did not stop")
		}
	})
	for b.Ready(ctx) != nil {
		if ctx.Err() != nil {
			t.Fatal("bridge not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func device(t *testing.T, ctx context.Context, mqttURL string) {
	t.Helper()
	u, _ := url.Parse(mqttURL)
	var cm *autopaho.ConnectionManager
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true, ConnectTimeout: 10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/farm1/cow-1/commands/+", QoS: 1}}})
		},
		ClientConfig: paho.ClientConfig{ClientID: "farm1/cow-1", OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				var m bridge.CommandMessage
				_ = json.Unmarshal(pr.Packet.Payload, &m)
				body := `{"status":"failed","message":"unknown command"}`
				if m.Name == "ping" {
					body = `{"status":"succeeded","result":` + string(m.Payload) + `}`
				}
				// pr.Client, not cm: NewConnection assigns cm, maybe after
				// the first command arrived (a data race).
				go pr.Client.Publish(ctx, &paho.Publish{Topic: pr.Packet.Properties.ResponseTopic, QoS: 1, Payload: []byte(body),
					Properties: &paho.PublishProperties{CorrelationData: pr.Packet.Properties.CorrelationData}})
				return true, nil
			}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // subscribed
}

// TestIntegrationCommandCLI sends commands with `drover command send
// --wait` through a bridge to a device, then reads them back with status
// and list.
func TestIntegrationCommandCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	out, errOut, code := run(t, s, "send", "farm1/cow-1", "ping", "--param", "n=7", "--wait", "--timeout", "20s", "--id", "p-1")
	if code != 0 {
		t.Fatalf("send --wait: exit %d\n%s\n%s", code, out, errOut)
	}
	var v View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("send --wait output %q: %v", out, err)
	}
	if v.ID != "p-1" || v.Status != "succeeded" || v.RoundTripMS == nil || v.SentAt == nil || v.DeliveredAt == nil ||
		!strings.Contains(out, `"result": {`) || !strings.Contains(out, `"n": 7`) {
		t.Errorf("send --wait printed %s", out)
	}
	out, errOut, code = run(t, s, "send", "farm1/cow-1", "reboot", "--wait", "--timeout", "20s")
	if code != 1 || !strings.Contains(out, `"status": "failed"`) || !strings.Contains(errOut, "command did not succeed") {
		t.Errorf("failing command: exit %d\n%s\n%s", code, out, errOut)
	}
	// A device that never answers: the command expires.
	out, errOut, code = run(t, s, "send", "farm1/cow-404", "ping", "--timeout", "1s", "--wait")
	if code != 1 || !strings.Contains(out, `"status": "expired"`) {
		t.Errorf("command to a silent device: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = run(t, s, "send", "farm1/cow-1", "ping", "--id", "p-2")
	if code != 0 || strings.TrimSpace(out) != "p-2" {
		t.Errorf("send without --wait: exit %d, %q", code, out)
	}
	var st View
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, errOut, code = run(t, s, "status", "p-2")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Status == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status p-2: exit %d %s %s", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, errOut, code = run(t, s, "list", "--device", "farm1/cow-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(out, "p-1") || strings.Contains(out, "cow-404") {
		t.Errorf("list --device: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code = run(t, s, "status", "no-such"); code != 1 || !strings.Contains(errOut, `no command "no-such"`) {
		t.Errorf("status of an unknown id: exit %d %s", code, errOut)
	}
}

func TestBadFlags(t *testing.T) {
	s := &stack{brokers: []string{"127.0.0.1:1"}, regURL: "http://127.0.0.1:1"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"send", "cow-1", "ping"}, "want TENANT/DEVICE"},
		{[]string{"send", "farm1/cow-1", "ping", "--timeout", "0s"}, "--timeout"},
		{[]string{"send", "farm1/cow-1", "ping", "--param", "x"}, "--param"},
		{[]string{"send", "farm1/cow-1", "ping", "--id", "a/b"}, "--id"},
		{[]string{"list", "--device", "farm1"}, "--device"},
		{[]string{"list", "--format", "xml"}, "--format"},
	} {
		if _, errOut, code := run(t, s, tt.args...); code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d %q, want 2 naming %s", tt.args, code, errOut, tt.want)
		}
	}
}
