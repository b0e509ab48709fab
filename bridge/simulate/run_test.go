package simulate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/devstack/devtest"
)

// subscriber counts what arrives on devices/# and wildfi/# with QoS 1.
type subscriber struct {
	mu   sync.Mutex
	got  map[string]int // topic + "\x00" + sha256(payload) → count
	msgs []Message
	n    int
}

func subscribe(t *testing.T, brokerURL string) *subscriber {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	s := &subscriber{got: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan error, 1)
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         600,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				_, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
					{Topic: "devices/#", QoS: 1}, {Topic: "wildfi/#", QoS: 1},
				}})
				select {
				case subscribed <- err:
				default:
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: fmt.Sprintf("sim-test-sub-%d", time.Now().UnixNano()),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				sum := sha256.Sum256(pr.Packet.Payload)
				s.mu.Lock()
				s.got[pr.Packet.Topic+"\x00"+hex.EncodeToString(sum[:])]++
				s.msgs = append(s.msgs, Message{Topic: pr.Packet.Topic, Payload: append([]byte(nil), pr.Packet.Payload...)})
				s.n++
				s.mu.Unlock()
				return true, nil
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cm.Disconnect(dctx)
		dcancel()
		cancel()
		<-cm.Done()
	})
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("subscriber not subscribed within 30s")
	}
	return s
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func key(m Message) string {
	sum := sha256.Sum256(m.Payload)
	return m.Topic + "\x00" + hex.EncodeToString(sum[:])
}

// TestIntegrationPublish publishes through the embedded broker and a real
// mosquitto and checks that every message the generator made for the run
// (recomputed from the same seed and a frozen clock) arrived, invalid ones
// included, the oversized payload too.
func TestIntegrationPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	brokers := []struct {
		name  string
		start func(testing.TB) string
	}{
		{"embedded", func(t testing.TB) string { return devtest.MQTT(t) }},
		{"mosquitto", func(t testing.TB) string { return devtest.Mosquitto(t) }},
	}
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			broker := b.start(t)
			sub := subscribe(t, broker)
			cfg := Config{
				MQTTURL: broker, Devices: 40, Rate: 5000, Burst: 200, Count: 1500, InvalidRatio: 0.1,
				MediaRatio: -1, Seed: 99, Clock: newFakeClock(epoch), SummaryEvery: -1,
			}
			sum, err := Run(context.Background(), cfg, devtest.Logger())
			if err != nil {
				t.Fatal(err)
			}
			if sum.Total() != 1500 || sum.PublishErrors != 0 {
				t.Fatalf("summary: %s", sum)
			}
			if sum.InvalidTotal() < 100 || len(sum.Invalid) != len(Classes()) {
				t.Fatalf("invalid by class: %v", sum.Invalid)
			}
			// The expected traffic, from the same seed and frozen clock.
			g, err := NewGenerator(cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{}
			for range 1500 {
				m, ok := g.Next(epoch)
				if !ok {
					t.Fatal("generator fell silent")
				}
				want[key(m)]++
			}
			waitFor(t, "all 1500 messages at the subscriber", 60*time.Second, func() bool { return sub.count() >= 1500 })
			sub.mu.Lock()
			defer sub.mu.Unlock()
			for k, n := range want {
				if sub.got[k] < n {
					topic, _, _ := strings.Cut(k, "\x00")
					t.Errorf("message on %s arrived %d times, sent %d", topic, sub.got[k], n)
				}
			}
			if sub.n != 1500 {
				t.Errorf("subscriber got %d messages, want 1500 (duplicates?)", sub.n)
			}
		})
	}
}

// TestIntegrationMediaUpload checks that media objects land in S3 and that
// their metadata messages name the right bucket, key, size and SHA-256.
func TestIntegrationMediaUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker, endpoint := devtest.MQTT(t), devtest.S3(t)
	sub := subscribe(t, broker)
	cfg := Config{
		MQTTURL: broker, Devices: 1, Rate: 100, Count: 8, MediaRatio: 1, SenMLRatio: -1, WildFiRatio: -1,
		Tenant: "farm7", S3: S3Config{Endpoint: endpoint, PathStyle: true}, Clock: newFakeClock(epoch), SummaryEvery: -1,
	}
	sum, err := Run(context.Background(), cfg, devtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if sum.MediaUploads != 8 || sum.Sent[ChannelMedia] != 8 || sum.UploadErrors != 0 {
		t.Fatalf("summary: %s", sum)
	}
	waitFor(t, "8 media messages", 60*time.Second, func() bool { return sub.count() >= 8 })
	cl := devtest.S3Client(t, endpoint)
	keyRE := regexp.MustCompile(`^(image2d|image3d|video2d|video3d)/farm7/collar-0001/2026/05/01/[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.(jpg|ply|mp4|mkv)$`)
	sub.mu.Lock()
	msgs := append([]Message(nil), sub.msgs...)
	sub.mu.Unlock()
	for _, m := range msgs {
		var meta struct {
			TS          int64  `json:"ts"`
			Bucket      string `json:"bucket"`
			Key         string `json:"key"`
			Size        int64  `json:"size"`
			ContentType string `json:"content_type"`
			SHA256      string `json:"sha256"`
		}
		if err := json.Unmarshal(m.Payload, &meta); err != nil {
			// RFC 3339 ts: decode without it.
			var alt map[string]any
			if err2 := json.Unmarshal(m.Payload, &alt); err2 != nil {
				t.Fatalf("metadata %s: %v", m.Payload, err2)
			}
			meta.Bucket, _ = alt["bucket"].(string)
			meta.Key, _ = alt["key"].(string)
			size, _ := alt["size"].(float64)
			meta.Size = int64(size)
			meta.ContentType, _ = alt["content_type"].(string)
			meta.SHA256, _ = alt["sha256"].(string)
		}
		kind := strings.TrimPrefix(m.Topic, "devices/farm7/collar-0001/media/")
		if meta.Bucket != DefaultBucket || !keyRE.MatchString(meta.Key) || !strings.HasPrefix(meta.Key, kind+"/") {
			t.Fatalf("metadata on %s names s3://%s/%s", m.Topic, meta.Bucket, meta.Key)
		}
		obj, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(meta.Bucket), Key: aws.String(meta.Key)})
		if err != nil {
			t.Fatalf("get s3://%s/%s: %v", meta.Bucket, meta.Key, err)
		}
		body, err := io.ReadAll(obj.Body)
		obj.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if int64(len(body)) != meta.Size || hex.EncodeToString(sum[:]) != meta.SHA256 || aws.ToString(obj.ContentType) != meta.ContentType {
			t.Fatalf("object %s: %d bytes, sha256 %x, type %s; metadata says %d, %s, %s",
				meta.Key, len(body), sum, aws.ToString(obj.ContentType), meta.Size, meta.SHA256, meta.ContentType)
		}
	}
}

// TestIntegrationRateAndStop checks the token bucket over a bounded window
// (never more than burst + rate × elapsed) and a stop through the context:
// Run returns promptly, nil, and everything it counted as sent arrived.
func TestIntegrationRateAndStop(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := devtest.MQTT(t)
	sub := subscribe(t, broker)

	const rate, burst = 20.0, 2
	start := time.Now()
	sum, err := Run(context.Background(), Config{MQTTURL: broker, Devices: 5, Rate: rate, Burst: burst, Duration: 3 * time.Second,
		MediaRatio: -1, SummaryEvery: -1}, devtest.Logger())
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if limit := int64(burst + rate*elapsed.Seconds() + 1); sum.Total() > limit {
		t.Fatalf("sent %d in %s at %v msg/s (burst %d): above the token bucket's %d", sum.Total(), elapsed, rate, burst, limit)
	}
	if sum.Total() < 20 { // 60 expected; a loaded machine may lag, but not by two thirds
		t.Fatalf("sent only %d in %s at %v msg/s", sum.Total(), elapsed, rate)
	}
	waitFor(t, "the rate run's messages", 60*time.Second, func() bool { return sub.count() == int(sum.Total()) })

	// Stop through the context once messages flow.
	before := sub.count()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Run(ctx, Config{MQTTURL: broker, Devices: 5, Rate: 200, MediaRatio: -1, SummaryEvery: -1}, devtest.Logger())
		done <- result{s, err}
	}()
	waitFor(t, "messages from the open-ended run", 60*time.Second, func() bool { return sub.count() >= before+50 })
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(DrainTimeout + 10*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if r.err != nil || r.sum.Total() < 50 || r.sum.PublishErrors != 0 {
		t.Fatalf("after cancel: %v, %s", r.err, r.sum)
	}
	waitFor(t, "every acknowledged message at the subscriber", 60*time.Second, func() bool { return sub.count() == before+int(r.sum.Total()) })
}

func TestIntegrationBrokerUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	// Nothing listens on port 1 of the loopback.
	dead := "tcp://127.0.0.1:1"
	_, err := Run(context.Background(), Config{MQTTURL: dead, ConnectTimeout: time.Second, MediaRatio: -1}, devtest.Logger())
	if !errors.Is(err, ErrNotConnected) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error = %v, want ErrNotConnected naming the broker", err)
	}
}

// TestIntegrationProgressLog checks the periodic one-line summary and the
// final one in the JSON log.
func TestIntegrationProgressLog(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker := devtest.MQTT(t)
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	sum, err := Run(context.Background(), Config{MQTTURL: broker, Rate: 50, Duration: 1500 * time.Millisecond, InvalidRatio: 0.2,
		MediaRatio: -1, SummaryEvery: 300 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	var progress, final int
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		switch {
		case strings.HasPrefix(msg, "simulate: sent "):
			progress++
			for _, k := range []string{"sent", "invalid", "publish_errors", "sent_sensor", "sent_gps", "sent_heartbeat"} {
				if _, ok := rec[k]; !ok {
					t.Fatalf("progress line lacks %s: %s", k, line)
				}
			}
		case strings.HasPrefix(msg, "simulate: done (duration reached): sent "):
			final++
			if rec["sent"].(float64) != float64(sum.Total()) {
				t.Fatalf("final line says %v sent, summary %d", rec["sent"], sum.Total())
			}
		}
	}
	if progress < 2 || final != 1 {
		t.Fatalf("%d progress lines and %d final lines in:\n%s", progress, final, buf.String())
	}
}
