package simulate

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// commandFilter is the subscription of a device that answers commands.
func commandFilter(key string) string { return "devices/" + key + "/commands/+" }

// command is what the simulator reads of a command the bridge published.
type command struct {
	ID         string          `json:"command_id"`
	Name       string          `json:"name"`
	Payload    json.RawMessage `json:"payload"`
	ReplyTopic string          `json:"reply_topic"`
}

// answer replies to a command like a cooperative device: a command named
// "fail" fails, every other succeeds with {"command": NAME, "params":
// PAYLOAD}. MQTT v5: to the Response Topic with the Correlation Data; the
// body's reply_topic otherwise. It runs on its own goroutine (publishing
// from paho's handler would wait on paho's own reader).
func answer(ctx context.Context, cm *autopaho.ConnectionManager, pub *paho.Publish, log *slog.Logger, m *metrics) {
	var c command
	if err := json.Unmarshal(pub.Payload, &c); err != nil || c.ID == "" {
		log.Warn("simulate: command not understood", "topic", pub.Topic, "err", err)
		return
	}
	topic, corr := c.ReplyTopic, []byte(c.ID)
	if p := pub.Properties; p != nil && p.ResponseTopic != "" {
		topic = p.ResponseTopic
		if len(p.CorrelationData) > 0 {
			corr = p.CorrelationData
		}
	}
	if topic == "" {
		log.Warn("simulate: command without a reply topic", "topic", pub.Topic)
		return
	}
	params := c.Payload
	if len(params) == 0 {
		params = json.RawMessage("null")
	}
	body, _ := json.Marshal(map[string]any{"status": "succeeded", "result": map[string]any{"command": c.Name, "params": params}})
	if c.Name == "fail" {
		body, _ = json.Marshal(map[string]any{"status": "failed", "message": "simulated failure"})
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: body,
		Properties: &paho.PublishProperties{CorrelationData: corr, ContentType: "application/json"}}); err != nil {
		log.Warn("simulate: command reply not published", "command_id", c.ID, "err", err)
		return
	}
	m.commands.Inc()
}

// shadowFilter is the subscription of a device that follows its shadow.
func shadowFilter(key string) string { return "devices/" + key + "/shadow/delta" }

// delta is what the simulator reads of a shadow delta the bridge published.
type delta struct {
	Version int64             `json:"version"`
	State   map[string]string `json:"state"`
}

// follow applies a shadow delta like a cooperative device and reports it
// back in one sensor message on devices/{key}/sensor: every key whose
// desired value is a number as a measurement of that name, "firmware" as
// the firmware attribute, and the delta's version as the measurement
// shadow_version. The state processor compares exactly these (metrics by
// name, firmware), so the delta clears; a key with a value that is neither
// stays in the delta. It runs on its own goroutine.
func follow(ctx context.Context, cm *autopaho.ConnectionManager, key string, pub *paho.Publish, log *slog.Logger, m *metrics) {
	var d delta
	if err := json.Unmarshal(pub.Payload, &d); err != nil || len(d.State) == 0 {
		log.Warn("simulate: shadow delta not understood", "topic", pub.Topic, "err", err)
		return
	}
	meas := map[string]float64{"shadow_version": float64(d.Version)}
	attrs := map[string]string{}
	for k, v := range d.State {
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			meas[k] = f
		} else if k == "firmware" {
			attrs[k] = v
		}
	}
	msg := map[string]any{"ts": time.Now().UnixMilli(), "measurements": meas}
	if len(attrs) > 0 {
		msg["attrs"] = attrs
	}
	body, _ := json.Marshal(msg)
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: "devices/" + key + "/sensor", QoS: 1, Payload: body}); err != nil {
		log.Warn("simulate: shadow report not published", "device", key, "err", err)
		return
	}
	m.deltas.Inc()
}
