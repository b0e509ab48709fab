package bridge

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// BenchmarkCommandRoundTrip sends b.N commands, one at a time, through
// Kafka, the bridge and the embedded broker to an answering MQTT v5 device
// and reports the round trip the lifecycle records (sent → reply, as the
// commands table's round_trip_ms) and the end-to-end time from producing
// the command to its succeeded record, p50 and p99.
func BenchmarkCommandRoundTrip(b *testing.B) {
	e := newEnv(b)
	mqttURL := devtest.MQTT(b)
	cfg := e.config(mqttURL, "bench-cmd-bridge")
	cfg.Downlink = true
	runBridge(b, cfg)
	connectDevice(b, mqttURL, "farm1/bench-1", true, false)
	time.Sleep(500 * time.Millisecond) // subscribed, and the bridge saw it
	pcl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer pcl.Close()
	st, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topics.CommandStatus), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var rtt, e2e []time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := "b-" + strconv.Itoa(i)
		now := time.Now().UTC().Truncate(time.Millisecond)
		exp := now.Add(time.Minute)
		c := schemas.DeviceCommand{CommandID: id, Tenant: "farm1", DeviceID: "bench-1", Name: "ping", Payload: `{}`, CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
		v, err := e.serde.Encode(ctx, topics.Commands, &c)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := pcl.ProduceSync(ctx, &kgo.Record{Topic: topics.Commands, Key: []byte("farm1/bench-1"), Value: v}).FirstErr(); err != nil {
			b.Fatal(err)
		}
		cmd := &control.Command{}
		for !cmd.Status.Terminal() {
			fs := st.PollFetches(ctx)
			if ctx.Err() != nil {
				b.Fatal("no outcome")
			}
			fs.EachRecord(func(r *kgo.Record) {
				var s schemas.CommandStatus
				if _, err := e.serde.Decode(ctx, r.Value, &s); err == nil && s.CommandID == id {
					control.Fold(cmd, &s)
				}
			})
		}
		e2e = append(e2e, time.Since(start))
		if cmd.Status != control.Succeeded {
			b.Fatalf("%s ended %s", id, cmd.Status)
		}
		rtt = append(rtt, cmd.RoundTrip())
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		slices.Sort(d)
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(rtt, 0.5), "rtt-p50-ms")
	b.ReportMetric(pct(rtt, 0.99), "rtt-p99-ms")
	b.ReportMetric(pct(e2e, 0.5), "e2e-p50-ms")
	b.ReportMetric(pct(e2e, 0.99), "e2e-p99-ms")
}

// BenchmarkBareMQTTRequestResponse is the baseline of
// BenchmarkCommandRoundTrip: a requester publishes a QoS 1 request with a
// Response Topic to an answering device on the same embedded broker and
// waits for the reply, with no Kafka and no bridge in between.
func BenchmarkBareMQTTRequestResponse(b *testing.B) {
	mqttURL := devtest.MQTT(b)
	connectDevice(b, mqttURL, "farm1/bench-1", true, false)
	replies := make(chan struct{}, 1)
	req := newPublisher(b, mqttURL, "requester", func(*paho.Publish) { replies <- struct{}{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := req.cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/farm1/bench-1/replies/+", QoS: 1}}}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	var rtt []time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := "b-" + strconv.Itoa(i)
		body := []byte(`{"command_id":"` + id + `","name":"ping","payload":{}}`)
		start := time.Now()
		if _, err := req.cm.Publish(ctx, &paho.Publish{Topic: "devices/farm1/bench-1/commands/" + id, QoS: 1, Payload: body,
			Properties: &paho.PublishProperties{ResponseTopic: control.ReplyTopic("farm1", "bench-1", id), CorrelationData: []byte(id)}}); err != nil {
			b.Fatal(err)
		}
		select {
		case <-replies:
		case <-ctx.Done():
			b.Fatal("no reply")
		}
		rtt = append(rtt, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(rtt)
	b.ReportMetric(float64(rtt[len(rtt)/2].Microseconds())/1000, "rtt-p50-ms")
	b.ReportMetric(float64(rtt[min(len(rtt)-1, len(rtt)*99/100)].Microseconds())/1000, "rtt-p99-ms")
}
