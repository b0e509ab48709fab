package backfill

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestParseS3Event(t *testing.T) {
	at := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		doc     string
		wantKey string
		wantEv  string
		wantErr string
	}{
		{name: "aws", doc: `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-22T10:00:00.123Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"image2d/farm/cow+1/2026/11/22/a%3Db.jpg","size":12,"eTag":"0123abc","sequencer":"0A1B"}}}]}`,
			wantKey: "image2d/farm/cow 1/2026/11/22/a=b.jpg", wantEv: "ObjectCreated:Put"},
		{name: "minio", doc: `{"EventName":"s3:ObjectCreated:Put","Key":"media/x.jpg","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventTime":"2026-11-22T10:00:00.000Z","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"x.jpg","size":3,"eTag":"\"e\"","contentType":"image/jpeg","userMetadata":{"X-Amz-Meta-Device-Id":"cam-1","content-type":"image/jpeg"},"sequencer":"1"}}}]}`,
			wantKey: "x.jpg", wantEv: "ObjectCreated:Put"},
		{name: "seaweedfs delete", doc: `{"Records":[{"eventName":"ObjectRemoved:Delete","eventTime":"2026-11-22T10:00:00Z","s3":{"bucket":{"name":"m"},"object":{"key":"k"}}}]}`,
			wantKey: "k", wantEv: "ObjectRemoved:Delete"},
		{name: "not json", doc: `nope`, wantErr: "not an S3 event"},
		{name: "no records", doc: `{"Records":[]}`, wantErr: "no Records"},
		{name: "no bucket", doc: `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`, wantErr: "bucket name, object key"},
		{name: "bad time", doc: `{"Records":[{"eventName":"ObjectCreated:Put","eventTime":"yesterday","s3":{"bucket":{"name":"m"},"object":{"key":"k"}}}]}`, wantErr: "eventTime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs, err := ParseS3Event([]byte(c.doc), at)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Key != c.wantKey || evs[0].EventName != c.wantEv || evs[0].Raw == "" || evs[0].EventID == "" {
				t.Fatalf("events %+v", evs)
			}
			again, _ := ParseS3Event([]byte(c.doc), at.Add(time.Hour))
			if again[0].EventID != evs[0].EventID {
				t.Fatal("event id depends on receive time")
			}
		})
	}
}

// waitEnd waits until the topics hold at least n records in all.
func waitEnd(t *testing.T, e *kafkaEnv, n int64, ts ...string) {
	t.Helper()
	adm := kadm.NewClient(e.client(t))
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := adm.ListEndOffsets(ctx, ts...)
		cancel()
		var sum int64
		if err == nil {
			ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		}
		if sum >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v hold %d records, want %d (err %v)", ts, sum, n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIntegrationLiveRecordsEqualBackfill(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	at := time.Now().UTC()
	dir := t.TempDir()
	n := NewNotifier(devtest.Logger())
	// The notification's time is the stored object's LastModified (the
	// newest file under dir when the hook runs), as on a real store.
	n.Now = func() time.Time {
		var newest time.Time
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !strings.Contains(p, "metadata") {
				if fi, err := d.Info(); err == nil && fi.ModTime().After(newest) {
					newest = fi.ModTime()
				}
			}
			return nil
		})
		return newest
	}
	srv, err := devstack.NewS3(dir, n.ObjectCreated, "media")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	s3c := devtest.S3Client(t, hs.URL)
	objs := []struct {
		key  string
		meta map[string]string
	}{
		{"image2d/farm/cow-1/" + at.Format("2006/01/02") + "/a.jpg", nil},
		{"video3d/farm/cow-2/" + at.Format("2006/01/02") + "/b.mkv", nil},
		{"uploads/c.ply", map[string]string{"device-id": "scanner-1", "tenant": "farm"}},
		{"uploads/unknown.bin", nil},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for _, o := range objs {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("media"), Key: aws.String(o.key),
			Body: bytes.NewReader([]byte("x" + o.key)), Metadata: o.meta}); err != nil {
			t.Fatal(err)
		}

	}

	live := newKafkaEnv(t)
	nctx, ncancel := context.WithCancel(ctx)
	defer ncancel()
	go func() { _ = n.Run(nctx, live.client(t), live.serde) }()
	waitEnd(t, live, int64(len(objs)), topics.MediaEvents)
	st := &Stage{Kafka: live.client(t, StageKafkaOpts("test-media")...), Serde: live.serde, Log: devtest.Logger(),
		Now: func() time.Time { return at.Add(time.Minute) }}
	sdone := make(chan error, 1)
	go func() { sdone <- st.Run(nctx) }()
	waitEnd(t, live, int64(len(objs)), append(mediaTopics, topics.DLQ)...)
	ncancel()
	if err := <-sdone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stage: %v", err)
	}

	replay := newKafkaEnv(t)
	j := &Job{S3: s3c, Mapping: DefaultMapping(), Buckets: []string{"media"}, Start: at.Add(-time.Hour), End: at.Add(time.Hour), NoPrune: true,
		Kafka: replay.client(t), Serde: replay.serde, Now: func() time.Time { return at.Add(time.Hour) }, Log: devtest.Logger()}
	if sum := runJob(t, j); sum.Published != 3 || sum.Unmappable != 1 {
		t.Fatalf("backfill %+v", sum)
	}
	a := live.readAll(t, append(mediaTopics, topics.DLQ)...)
	b := replay.readAll(t, append(mediaTopics, topics.DLQ)...)
	if len(a) != len(b) || len(a) != len(objs) {
		t.Fatalf("live %d records, backfill %d, want %d", len(a), len(b), len(objs))
	}
	for i := range a {
		if a[i].rec.Topic != b[i].rec.Topic || string(a[i].rec.Key) != string(b[i].rec.Key) {
			t.Fatalf("record %d: live %s/%s, backfill %s/%s", i, a[i].rec.Topic, a[i].rec.Key, b[i].rec.Topic, b[i].rec.Key)
		}
		if a[i].dead != nil {
			if a[i].dead.Reason != b[i].dead.Reason || a[i].dead.Stage != StageMedia || b[i].dead.Stage != StageBackfill {
				t.Fatalf("dead letters %+v vs %+v", a[i].dead, b[i].dead)
			}
			continue
		}
		la, lb := *a[i].media, *b[i].media
		if la.Replayed || !lb.Replayed {
			t.Fatalf("replayed flags: live %v backfill %v", la.Replayed, lb.Replayed)
		}
		la.IngestedAt, lb.IngestedAt, la.Replayed, lb.Replayed = time.Time{}, time.Time{}, false, false
		if mediaString(&la) != mediaString(&lb) {
			t.Fatalf("live and backfill records differ:\n%s\n%s", mediaString(&la), mediaString(&lb))
		}
	}
	if st.Stats.Published.Load() != 3 || st.Stats.Unmappable.Load() != 1 {
		t.Fatalf("stage stats published %d unmappable %d", st.Stats.Published.Load(), st.Stats.Unmappable.Load())
	}
}

func TestIntegrationEventsHandler(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newKafkaEnv(t)
	at := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	h := httptest.NewServer(EventsHandler(e.client(t), e.serde, func() time.Time { return at }, devtest.Logger()))
	defer h.Close()
	minio := `{"EventName":"s3:ObjectCreated:Put","Key":"media/a.jpg","Records":[
	  {"eventName":"s3:ObjectCreated:Put","eventTime":"2026-11-23T04:59:59.500Z","s3":{"bucket":{"name":"media"},"object":{"key":"a.jpg","size":3,"eTag":"e1","userMetadata":{"X-Amz-Meta-Device-Id":"cam-1"},"sequencer":"1"}}},
	  {"eventName":"s3:ObjectRemoved:Delete","eventTime":"2026-11-23T05:00:00Z","s3":{"bucket":{"name":"media"},"object":{"key":"b.jpg","sequencer":"2"}}}]}`
	cases := []struct {
		name, method, body string
		want               int
	}{
		{"minio document", "POST", minio, 202},
		{"not an event", "POST", `{"hello":1}`, 400},
		{"not json", "POST", `<xml/>`, 400},
		{"get", "GET", "", 405},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, h.URL, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	cl := e.client(t, kgo.ConsumeTopics(topics.MediaEvents), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []schemas.MediaObjectEvent
	for len(got) < 2 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d events", len(got))
		}
		fs.EachRecord(func(r *kgo.Record) {
			var ev schemas.MediaObjectEvent
			if _, err := e.serde.Decode(ctx, r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
		})
	}
	// The two objects' events are keyed by object, so they may sit on two
	// partitions and arrive in either order.
	slices.SortFunc(got, func(a, b schemas.MediaObjectEvent) int { return strings.Compare(a.Key, b.Key) })
	if got[0].Key != "a.jpg" || got[0].EventName != "ObjectCreated:Put" || got[0].UserMetadata["X-Amz-Meta-Device-Id"] != "cam-1" ||
		!got[0].EventTime.Equal(time.Date(2026, 11, 23, 4, 59, 59, 500e6, time.UTC)) || !got[0].IngestedAt.Equal(at) {
		t.Fatalf("event %+v", got[0])
	}
	if got[1].Key != "b.jpg" || got[1].EventName != "ObjectRemoved:Delete" {
		t.Fatalf("event %+v", got[1])
	}
}

func TestIntegrationStageHeadsObjectsWithoutMetadata(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	f.put(t, "media", "uploads/a.mp4", at, map[string]string{"X-Amz-Meta-Device-Id": "cam-9", "X-Amz-Meta-Tenant": "farm"})
	for _, c := range []struct {
		name   string
		head   bool
		topic  string
		reason string
	}{
		{name: "with HEAD", head: true, topic: topics.RawVideo2D},
		{name: "notification only", head: false, topic: topics.DLQ, reason: ReasonNoTenant},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newKafkaEnv(t)
			// An AWS notification: no userMetadata.
			evs, err := ParseS3Event(S3EventJSON("media", "uploads/a.mp4", 22, "e1", "", nil, at), at)
			if err != nil {
				t.Fatal(err)
			}
			v, _ := e.serde.Encode(context.Background(), topics.MediaEvents, &evs[0])
			if err := e.client(t).ProduceSync(context.Background(), &kgo.Record{Topic: topics.MediaEvents, Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
			st := &Stage{Kafka: e.client(t, StageKafkaOpts("g")...), Serde: e.serde, Log: devtest.Logger()}
			if c.head {
				st.S3 = f.client
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- st.Run(ctx) }()
			waitEnd(t, e, 1, append(mediaTopics, topics.DLQ)...)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			recs := e.readAll(t, append(mediaTopics, topics.DLQ)...)
			if len(recs) != 1 || recs[0].rec.Topic != c.topic {
				t.Fatalf("records %+v", recs)
			}
			if c.reason != "" && recs[0].dead.Reason != c.reason {
				t.Fatalf("dead letter %+v", recs[0].dead)
			}
			if c.reason == "" && (recs[0].media.DeviceID != "cam-9" || recs[0].media.Tenant != "farm") {
				t.Fatalf("record %s", mediaString(recs[0].media))
			}
		})
	}
}
