package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// rawTopics are the topics the bridge writes to.
var rawTopics = []string{topics.RawSensor, topics.RawGPS, topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D, topics.DLQ}

// env is a test environment: Kafka with the bridge's topics, a registry
// with the schemas registered, and a serde.
type env struct {
	brokers []string
	kafka   *kfake.Cluster
	serde   *schemas.Serde
	regURL  string
}

func newEnv(t testing.TB, kopts ...kfake.Opt) *env {
	t.Helper()
	c := devtest.Kafka(t, append([]kfake.Opt{kfake.SeedTopics(4, append(rawTopics, topics.Commands, topics.CommandStatus, topics.StateLatest)...)}, kopts...)...)
	_, regURL := devtest.Registry(t)
	return &env{brokers: c.ListenAddrs(), kafka: c, serde: registerSchemas(t, regURL), regURL: regURL}
}

func registerSchemas(t testing.TB, regURL string) *schemas.Serde {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(regURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, cl, nil); err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	s, err := schemas.NewSerde(cl)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) config(mqttURL, clientID string) Config {
	return Config{
		MQTTURL:       mqttURL,
		ClientID:      clientID,
		KafkaOpts:     []kgo.Opt{kgo.SeedBrokers(e.brokers...)},
		Serde:         e.serde,
		DefaultTenant: "wildlife",
		Log:           devtest.Logger(),
		DrainTimeout:  20 * time.Second,
	}
}

// runBridge starts a bridge and returns it with a function that stops it
// and waits for Run to return (also registered as cleanup).
func runBridge(t testing.TB, cfg Config) (*Bridge, func()) {
	t.Helper()
	return runBridgeHook(t, cfg, nil)
}

func runBridgeHook(t testing.TB, cfg Config, hook func(*paho.Publish)) (*Bridge, func()) {
	t.Helper()
	return runBridgeSetup(t, cfg, func(b *Bridge) { b.testOnReceive = hook })
}

// runBridgeSetup is runBridge with setup called (to set test hooks) before
// the bridge runs.
func runBridgeSetup(t testing.TB, cfg Config, setup func(*Bridge)) (*Bridge, func()) {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	setup(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("bridge run: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Error("bridge did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	waitFor(t, 30*time.Second, "bridge ready", func() bool { return b.Ready(context.Background()) == nil })
	return b, stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publisher is a plain MQTT v5 client for tests.
type publisher struct {
	cm  *autopaho.ConnectionManager
	ctx context.Context // cancelled when the test ends
}

func newPublisher(t testing.TB, mqttURL, clientID string, onMsg func(*paho.Publish)) *publisher {
	t.Helper()
	u, err := url.Parse(mqttURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                10 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(100 * time.Millisecond),
		ClientConfig:                  paho.ClientConfig{ClientID: clientID},
	}
	if onMsg != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onMsg(pr.Packet)
			return true, nil
		}}
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cm.Disconnect(dctx)
		dc()
		cancel()
		<-cm.Done()
	})
	actx, ac := context.WithTimeout(ctx, 30*time.Second)
	defer ac()
	if err := cm.AwaitConnection(actx); err != nil {
		t.Fatalf("publisher connect: %v", err)
	}
	return &publisher{cm: cm, ctx: ctx}
}

func (p *publisher) publish(t testing.TB, topic string, payload []byte, props *paho.PublishProperties) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
		_, err := p.cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload, Properties: props})
		cancel()
		if err == nil || p.ctx.Err() != nil {
			return // published, or the test is over (publishers may run on their own goroutines)
		}
		if attempt > 50 {
			t.Errorf("publish %s: %v", topic, err) // not Fatal: publishers run on their own goroutines
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// consumed is one record read back from Kafka.
type consumed struct {
	rec     *kgo.Record
	headers map[string]string
	value   any // *schemas.SensorReading, *schemas.GPSFix, *schemas.MediaObject, *schemas.DeadLetter
}

// consumeAll reads every record of the bridge's topics until want records
// arrived (or the deadline passes), decoding values.
func (e *env) consume(t testing.TB, want int, d time.Duration) []consumed {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(rawTopics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []consumed
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records, want %d, before the deadline", len(out), want)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil && !errors.Is(ferr, context.DeadlineExceeded) {
			t.Fatalf("fetch: %v", ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			c := consumed{rec: r, headers: map[string]string{}}
			for _, h := range r.Headers {
				c.headers[h.Key] = string(h.Value)
			}
			var v any
			switch r.Topic {
			case topics.RawSensor:
				v = &schemas.SensorReading{}
			case topics.RawGPS:
				v = &schemas.GPSFix{}
			case topics.DLQ:
				v = &schemas.DeadLetter{}
			default:
				v = &schemas.MediaObject{}
			}
			if _, err := e.serde.Decode(ctx, r.Value, v); err != nil {
				t.Fatalf("decode %s record: %v", r.Topic, err)
			}
			c.value = v
			out = append(out, c)
		})
	}
	return out
}

// endOffsets sums the end offsets of the given topics.
func (e *env) endOffsets(t testing.TB, cl *kgo.Client, ts ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := listEnds(ctx, cl, ts...)
	if err != nil {
		return -1
	}
	return offs
}

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
