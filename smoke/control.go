package smoke

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// smokeDesiredKey is the desired-state key of the shadow check.
const smokeDesiredKey = "smoke_interval"

// controlDevice is the run's control-channel device: it connects as
// itself, subscribes to its commands and shadow delta, replies
// "succeeded" to each command (MQTT v5: Response Topic and Correlation
// Data) and records the deltas it gets.
type controlDevice struct {
	key    string
	cm     *autopaho.ConnectionManager
	mu     sync.Mutex
	deltas []map[string]string
	cmds   []string
}

func (d *controlDevice) seen() ([]string, []map[string]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.cmds...), append([]map[string]string(nil), d.deltas...)
}

func dialControlDevice(ctx context.Context, c Config, p *plan) (*controlDevice, error) {
	d := &controlDevice{key: identity.Key(p.tenant, p.ctl)}
	u, err := url.Parse(c.MQTTURL)
	if err != nil {
		return nil, err
	}
	user, pass := c.MQTTUser, c.MQTTPassword
	if s, ok := p.secrets[p.ctl]; ok {
		user, pass = d.key, s
	}
	subs := []paho.SubscribeOptions{{Topic: "devices/" + d.key + "/commands/+", QoS: 1}, {Topic: control.ShadowDeltaTopic(p.tenant, p.ctl), QoS: 1}}
	cc := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true, ConnectTimeout: 5 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
		},
		ClientConfig: paho.ClientConfig{ClientID: d.key, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				m := pr.Packet
				if strings.HasSuffix(m.Topic, "/shadow/delta") {
					var delta struct {
						State map[string]string `json:"state"`
					}
					if json.Unmarshal(m.Payload, &delta) == nil {
						d.mu.Lock()
						d.deltas = append(d.deltas, delta.State)
						d.mu.Unlock()
					}
					return true, nil
				}
				var cmd struct {
					ID         string `json:"command_id"`
					ReplyTopic string `json:"reply_topic"`
				}
				if json.Unmarshal(m.Payload, &cmd) != nil || cmd.ID == "" {
					return true, nil
				}
				d.mu.Lock()
				d.cmds = append(d.cmds, cmd.ID)
				d.mu.Unlock()
				topic, corr := cmd.ReplyTopic, []byte(cmd.ID)
				if m.Properties != nil && m.Properties.ResponseTopic != "" {
					topic, corr = m.Properties.ResponseTopic, m.Properties.CorrelationData
				}
				go pr.Client.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(`{"status":"succeeded","result":"smoke"}`),
					Properties: &paho.PublishProperties{CorrelationData: corr}})
				return true, nil
			}}},
	}
	if user != "" {
		cc.ConnectUsername, cc.ConnectPassword = user, []byte(pass)
	}
	if d.cm, err = autopaho.NewConnection(ctx, cc); err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, reachWait)
	defer cancel()
	if err := d.cm.AwaitConnection(actx); err != nil {
		return nil, fmt.Errorf("device %s: not connected within %s: %w", d.key, reachWait, err)
	}
	return d, nil
}

func (d *controlDevice) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.cm.Disconnect(ctx)
}

// checkControl checks the control channel end to end: one command round
// trip (commands.devices → bridge → device → reply → succeeded on
// commands.status) and one shadow delta (desired state set → the state
// processor's shadow → the bridge's delta reaches the device → the device
// reports the value → the pending delta clears in state.latest).
func checkControl(w *waiter, c Config, p *plan, serde *schemas.Serde, log *slog.Logger) {
	const cmdName, sdName = "commands: one round trip (queued → sent → delivered → succeeded)", "shadow: desired state reaches the device as a delta and clears once reported"
	kopts := []kgo.Opt{kgo.SeedBrokers(c.KafkaBrokers...)}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		w.cl.Add(Result{Name: cmdName, Status: Fail, Detail: err.Error()})
		return
	}
	defer cl.Close()
	dev, err := dialControlDevice(w.parent, c, p)
	if err != nil {
		w.cl.Add(Result{Name: cmdName, Status: Fail, Detail: err.Error()})
		w.skip(sdName, "no device connection")
		return
	}
	defer dev.close()

	id := "smoke-" + p.run + "-ping"
	now := time.Now().UTC().Truncate(time.Millisecond)
	exp := now.Add(2 * time.Minute)
	cmd := schemas.DeviceCommand{CommandID: id, Tenant: p.tenant, DeviceID: p.ctl, Name: "ping", Payload: `{}`, CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
	// The parent context: after a run's deadline the checks still run once
	// and report what they see.
	pctx, pcancel := context.WithTimeout(w.parent, 20*time.Second)
	defer pcancel()
	v, err := serde.Encode(pctx, topics.Commands, &cmd)
	if err == nil {
		err = cl.ProduceSync(pctx, &kgo.Record{Topic: topics.Commands, Key: []byte(dev.key), Value: v}).FirstErr()
	}
	if err != nil {
		w.cl.Add(Result{Name: cmdName, Status: Fail, Detail: "producing the command: " + err.Error()})
	} else {
		w.check(cmdName, func() string {
			rctx, cancel := context.WithTimeout(w.parent, 10*time.Second)
			defer cancel()
			all, err := control.ReadAll(rctx, kopts, serde)
			if err != nil {
				return err.Error()
			}
			got, ok := all[id]
			cmds, _ := dev.seen()
			switch {
			case !ok:
				return "no record of " + id + " on " + topics.CommandStatus + " (is the bridge's downlink on?)"
			case got.Status != control.Succeeded:
				return fmt.Sprintf("%s is %s; the device got commands %v", id, got.Status, cmds)
			case got.SentAt.IsZero() || got.DeliveredAt.IsZero():
				return fmt.Sprintf("%s succeeded without sent/delivered: %+v", id, got)
			}
			return ""
		})
	}

	// A device's shadow is shown (and its delta sent) once it has sent a
	// reading: it reports another value first.
	want := "42"
	body := fmt.Appendf(nil, `{"ts":%d,"metric":%q,"value":10}`, time.Now().UnixMilli(), smokeDesiredKey)
	if _, err := dev.cm.Publish(pctx, &paho.Publish{Topic: "devices/" + dev.key + "/sensor", QoS: 1, Payload: body}); err != nil {
		w.cl.Add(Result{Name: sdName, Status: Fail, Detail: "the device's first reading: " + err.Error()})
		return
	}
	if _, err := control.SetDesired(pctx, cl, serde, p.tenant, p.ctl, map[string]string{smokeDesiredKey: want}, 2*time.Minute); err != nil {
		w.cl.Add(Result{Name: sdName, Status: Fail, Detail: "writing desired state: " + err.Error()})
		return
	}
	reported := false
	w.check(sdName, func() string {
		_, deltas := dev.seen()
		got := false
		for _, d := range deltas {
			got = got || d[smokeDesiredKey] == want
		}
		if !got {
			return fmt.Sprintf("the device got no delta with %s=%s (deltas %v; are the state processor and the bridge's --shadow-deltas on?)", smokeDesiredKey, want, deltas)
		}
		if !reported {
			body := fmt.Appendf(nil, `{"ts":%d,"metric":%q,"value":%s}`, time.Now().UnixMilli()+1, smokeDesiredKey, want)
			pctx, cancel := context.WithTimeout(w.parent, 10*time.Second)
			_, err := dev.cm.Publish(pctx, &paho.Publish{Topic: "devices/" + dev.key + "/sensor", QoS: 1, Payload: body})
			cancel()
			if err != nil {
				return "reporting the desired value: " + err.Error()
			}
			reported = true
		}
		lctx, cancel := context.WithTimeout(w.parent, 10*time.Second)
		defer cancel()
		ds, err := state.Lookup(lctx, kopts, serde, dev.key)
		if err != nil {
			return "state.latest: " + err.Error()
		}
		if ds.Desired[smokeDesiredKey] != want {
			return fmt.Sprintf("state.latest desired = %v, want %s=%s", ds.Desired, smokeDesiredKey, want)
		}
		if d := control.Delta(ds); len(d) > 0 {
			return fmt.Sprintf("pending delta %v after the device reported %s=%s", d, smokeDesiredKey, want)
		}
		return ""
	})
	log.Debug("smoke control checks done", "device", dev.key)
}
