package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// clock is a settable time source for gofakes3's backend (LastModified)
// and for the job (ingested_at).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time                  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *clock) Set(t time.Time)                 { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// fakeS3 is gofakes3 (in-memory backend with a settable clock) behind a
// real HTTP server.
type fakeS3 struct {
	backend  *s3mem.Backend
	clock    *clock
	url      string
	client   *s3.Client
	requests sync.Map // method+query kind → count, see countingHandler
}

func newFakeS3(t testing.TB, buckets ...string) *fakeS3 {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	be := s3mem.New(s3mem.WithTimeSource(clk))
	for _, b := range buckets {
		if err := be.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	f := gofakes3.New(be, gofakes3.WithAutoBucket(false), gofakes3.WithTimeSkewLimit(0))
	srv := httptest.NewServer(f.Server())
	t.Cleanup(srv.Close)
	fs := &fakeS3{backend: be, clock: clk, url: srv.URL}
	fs.client = devtest.S3Client(t, srv.URL)
	return fs
}

// put stores an object with LastModified = at (bypassing HTTP: fast for
// thousands of objects).
func (f *fakeS3) put(t testing.TB, bucket, key string, at time.Time, meta map[string]string) {
	t.Helper()
	f.clock.Set(at)
	body := []byte("body of " + key)
	if meta == nil {
		meta = map[string]string{}
	}
	if _, err := f.backend.PutObject(bucket, key, meta, bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
}

// kafkaEnv is kfake with the catalogue's media and DLQ topics, a registry
// with every schema registered, and a serde.
type kafkaEnv struct {
	brokers []string
	cluster *kfake.Cluster
	serde   *schemas.Serde
	regURL  string
}

var mediaTopics = []string{topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D}

func newKafkaEnv(t testing.TB, extraTopics ...string) *kafkaEnv {
	t.Helper()
	c := devtest.Kafka(t, kfake.SeedTopics(3, append(append([]string{topics.DLQ, topics.MediaEvents}, mediaTopics...), extraTopics...)...))
	_, regURL := devtest.Registry(t)
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
	return &kafkaEnv{brokers: c.ListenAddrs(), cluster: c, serde: s, regURL: regURL}
}

func (e *kafkaEnv) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

type got struct {
	rec     *kgo.Record
	headers map[string]string
	media   *schemas.MediaObject
	dead    *schemas.DeadLetter
}

// readAll returns every record currently in the topics (up to the end
// offsets at the call), decoded, sorted by topic, key and event id.
func (e *kafkaEnv) readAll(t testing.TB, ts ...string) []got {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(e.client(t))
	ends, err := adm.ListEndOffsets(ctx, ts...)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	if want == 0 {
		return nil
	}
	cl := e.client(t, kgo.ConsumeTopics(ts...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []got
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records before the deadline", len(out), want)
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("fetch: %v", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			g := got{rec: r, headers: map[string]string{}}
			for _, h := range r.Headers {
				g.headers[h.Key] = string(h.Value)
			}
			if r.Topic == topics.DLQ {
				g.dead = &schemas.DeadLetter{}
				if _, err := e.serde.Decode(ctx, r.Value, g.dead); err != nil {
					t.Fatalf("decode dead letter: %v", err)
				}
			} else {
				g.media = &schemas.MediaObject{}
				if _, err := e.serde.Decode(ctx, r.Value, g.media); err != nil {
					t.Fatalf("decode %s: %v", r.Topic, err)
				}
			}
			out = append(out, g)
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.rec.Topic != b.rec.Topic {
			return a.rec.Topic < b.rec.Topic
		}
		if ka, kb := string(a.rec.Key), string(b.rec.Key); ka != kb {
			return ka < kb
		}
		return id(a) < id(b)
	})
	return out
}

func id(g got) string {
	if g.media != nil {
		return g.media.EventID
	}
	return g.dead.ID
}

// newJob returns a job over the fake S3 and Kafka env (nil env: dry run).
func newJob(t testing.TB, f *fakeS3, e *kafkaEnv, start, end time.Time) *Job {
	t.Helper()
	j := &Job{S3: f.client, Mapping: DefaultMapping(), Buckets: []string{"media"}, Start: start, End: end,
		Now: func() time.Time { return time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC) }, Log: devtest.Logger()}
	if e == nil {
		j.DryRun = true
		return j
	}
	j.Kafka = e.client(t)
	j.Serde = e.serde
	return j
}

func runJob(t testing.TB, j *Job) Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	sum, err := j.Run(ctx)
	if err != nil {
		t.Fatalf("job: %v (summary %+v)", err, sum)
	}
	return sum
}

// mediaString prints every field of m, pointers dereferenced.
func mediaString(m *schemas.MediaObject) string {
	c := *m
	etag, sha := "<nil>", "<nil>"
	if c.ETag != nil {
		etag = *c.ETag
	}
	if c.SHA256 != nil {
		sha = *c.SHA256
	}
	c.ETag, c.SHA256 = nil, nil
	return fmt.Sprintf("%+v etag=%s sha256=%s", c, etag, sha)
}
