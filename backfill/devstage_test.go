package backfill

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationDevStage wires the media stage into the embedded stack
// the way drover dev should: the Notifier as OnObjectCreated, DevStage as
// a stage. A PUT to the embedded S3 becomes a raw.image2d.meta record.
func TestIntegrationDevStage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	n := NewNotifier(devtest.Logger())
	stack, err := devstack.Start(ctx, devstack.Config{DataDir: t.TempDir(), NoPostgres: true, OnObjectCreated: n.ObjectCreated, Logger: devtest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close(context.Background())
	ep := stack.Endpoints()
	if err := devstack.Provision(ctx, ep, devtest.Logger()); err != nil {
		t.Fatal(err)
	}
	// Objects put before the stage runs are queued, not lost.
	s3c := devtest.S3Client(t, ep.S3Endpoint)
	key := "image2d/farm/cow-7/" + time.Now().UTC().Format("2006/01/02") + "/a.jpg"
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(ep.S3Bucket), Key: aws.String(key), Body: bytes.NewReader([]byte("jpeg"))}); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- DevStage(n, "").Run(sctx, ep, devtest.Logger()) }()

	reg, _ := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	serde, _ := schemas.NewSerde(reg)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...), kgo.ConsumeTopics(topics.RawImage2D),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var m schemas.MediaObject
	for m.Key == "" {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no raw.image2d.meta record before the deadline")
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, err := serde.Decode(ctx, r.Value, &m); err != nil {
				t.Fatal(err)
			}
		})
	}
	if m.Key != key || m.DeviceID != "cow-7" || m.Replayed || m.Bucket != ep.S3Bucket || m.ETag == nil {
		t.Fatalf("record %+v", m)
	}
	scancel()
	if err := <-done; err != nil {
		t.Fatalf("stage: %v", err)
	}
}
