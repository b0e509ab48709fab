package bridge

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/topics"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIntegrationBridgeDevStage runs the `drover dev` stage on the embedded
// stack: it registers the schemas itself, bridges a message into Kafka,
// logs its summary line and stops cleanly.
func TestIntegrationBridgeDevStage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx := context.Background()
	s, err := devstack.Start(ctx, devstack.Config{DataDir: t.TempDir(), NoPostgres: true,
		KafkaOpts: []kfake.Opt{kfake.SeedTopics(1, append(rawTopics, topics.Commands, topics.CommandStatus)...)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ep := s.Endpoints()
	var logs syncBuf
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- DevStage(200*time.Millisecond).Run(runCtx, ep, log) }()
	waitFor(t, 60*time.Second, "stage subscribed", func() bool { return strings.Contains(logs.String(), `"msg":"mqtt subscribed"`) })

	pub := newPublisher(t, ep.MQTTURL, "dev-pub", nil)
	pub.publish(t, "devices/farm1/cow-1/gps", fmt.Appendf(nil, `{"ts":%d,"lat":47.1,"lon":8.5}`, time.Now().UnixMilli()), nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...), kgo.ConsumeTopics(topics.RawGPS), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pc := context.WithTimeout(ctx, 60*time.Second)
	defer pc()
	if fs := cl.PollRecords(pctx, 1); fs.NumRecords() != 1 {
		t.Fatalf("no record on raw.gps: %v", fs.Err0())
	}
	waitFor(t, 30*time.Second, "summary line", func() bool {
		return strings.Contains(logs.String(), `"msg":"bridge summary"`) && strings.Contains(logs.String(), `raw.gps=1`)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stage returned %v, want nil", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("stage did not stop")
	}
}
