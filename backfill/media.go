package backfill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Defaults of the live media stage.
const (
	DefaultMediaGroup     = "drover-media"
	DefaultMediaAdminAddr = ":9474"
)

// Stage is the live media stage: it consumes S3 notifications from
// media.object.events in a consumer group and writes, for each
// ObjectCreated event, the raw.{kind}.meta record backfill would write
// (replayed=false). Other events are counted and skipped; unmappable
// objects and undecodable events become dead letters (stage media).
// Offsets are committed only after Kafka acknowledged the outputs.
type Stage struct {
	// Kafka must consume MediaEvents in a group with auto-commit disabled
	// (see StageKafkaOpts); it also produces.
	Kafka    *kgo.Client
	Serde    *schemas.Serde
	Mapping  *Mapping
	DLQTopic string
	Now      func() time.Time
	Log      *slog.Logger
	// S3, if set, is asked (HeadObject) for the user metadata of objects
	// whose notification carries none (AWS does not send it; MinIO and
	// the embedded S3 do) when the mapping needs it, so live mapping
	// matches backfill's. Nil = use the notification only.
	S3 *s3.Client

	// Stats are safe to read while Run runs.
	Stats struct{ Events, Published, Ignored, Unmappable, Invalid atomic.Int64 }

	events  *prometheus.CounterVec
	ready   atomic.Bool
	prodErr atomic.Pointer[error]
}

// StageKafkaOpts are the client options the Stage needs for group.
func StageKafkaOpts(group string) []kgo.Opt {
	return []kgo.Opt{kgo.ConsumerGroup(group), kgo.ConsumeTopics(topics.MediaEvents), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

// Register adds the stage's metrics to reg and its readiness check to adm
// (either may be nil).
func (s *Stage) Register(reg prometheus.Registerer, adm *admin.Server) {
	s.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_media_events_total",
		Help: "media.object.events records handled, by result (published, ignored, unmappable, invalid)"}, []string{"result"})
	if reg != nil {
		reg.MustRegister(s.events)
	}
	if adm != nil {
		adm.AddCheck("media", func(ctx context.Context) error {
			if !s.ready.Load() {
				return errors.New("not consuming yet")
			}
			return s.Kafka.Ping(ctx)
		})
	}
}

func (s *Stage) count(result string, c *atomic.Int64) {
	c.Add(1)
	if s.events != nil {
		s.events.WithLabelValues(result).Inc()
	}
}

// Run consumes until ctx is cancelled, then commits what was processed.
func (s *Stage) Run(ctx context.Context) error {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.DLQTopic == "" {
		s.DLQTopic = topics.DLQ
	}
	if s.Mapping == nil {
		s.Mapping = DefaultMapping()
	}
	s.ready.Store(true)
	for {
		fs := s.Kafka.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return kgo.ErrClientClosed
		}
		fs.EachError(func(t string, p int32, err error) {
			s.Log.Error("fetch error", "topic", t, "partition", p, "err", err)
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		for _, r := range recs {
			if err := s.handle(ctx, r); err != nil {
				return err
			}
		}
		if err := s.Kafka.Flush(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // not committed: redelivered, same ids
			}
			return fmt.Errorf("media: flush: %w", err)
		}
		if perr := s.prodErr.Load(); perr != nil {
			// Not committed: the events are redelivered after a restart.
			return fmt.Errorf("media: produce: %w", *perr)
		}
		if err := s.Kafka.CommitRecords(context.WithoutCancel(ctx), recs...); err != nil {
			s.Log.Warn("commit failed; the events will be redelivered (same record ids)", "err", err)
		}
	}
}

// handle maps one event record to its output record (produced, not yet
// acknowledged).
func (s *Stage) handle(ctx context.Context, r *kgo.Record) error {
	s.Stats.Events.Add(1)
	var ev schemas.MediaObjectEvent
	now := s.Now()
	if _, err := s.Serde.Decode(ctx, r.Value, &ev); err != nil || ev.Bucket == "" || ev.Key == "" {
		msg := "event has no bucket or key"
		if err != nil {
			msg = err.Error()
		}
		s.count("invalid", &s.Stats.Invalid)
		s.Log.Warn("invalid media event", "partition", r.Partition, "offset", r.Offset, "err", msg)
		l := ingest.Letter{ID: fmt.Sprintf("%s-%d-%d", r.Topic, r.Partition, r.Offset), Source: r.Topic, Payload: r.Value, ReceivedAt: r.Timestamp}
		dl, hdr := ingest.DeadLetter(l, &decode.Error{Stage: StageMedia, Reason: ReasonBadEvent, Message: msg}, now)
		return s.produce(ctx, s.DLQTopic, r.Key, &dl, hdr)
	}
	if !IsObjectCreated(ev.EventName) {
		s.count("ignored", &s.Stats.Ignored)
		return nil
	}
	obj := EventObject(&ev)
	meta := ev.UserMetadata
	if len(meta) == 0 && s.S3 != nil && s.Mapping.NeedsMetadata(ev.Bucket, ev.Key) {
		h, err := s.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(ev.Bucket), Key: aws.String(ev.Key)})
		switch {
		case err == nil:
			meta = h.Metadata
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			// Gone or unreadable: map without metadata (an unmappable
			// object becomes a dead letter; backfill can redo it).
			s.Log.Warn("head object failed", "bucket", ev.Bucket, "key", ev.Key, "err", err)
		}
	}
	t, err := s.Mapping.Resolve(ev.Bucket, ev.Key, meta)
	var ue *UnmappableError
	if errors.As(err, &ue) {
		s.count("unmappable", &s.Stats.Unmappable)
		s.Log.Warn("object cannot be mapped", "bucket", ev.Bucket, "key", ev.Key, "reason", ue.Reason, "message", ue.Message)
		dl, hdr := deadLetter(StageMedia, obj, ue, now)
		return s.produce(ctx, s.DLQTopic, []byte(ev.Bucket+"/"+ev.Key), &dl, hdr)
	}
	if err != nil {
		return err
	}
	rec := Record(t, obj, now, false)
	s.count("published", &s.Stats.Published)
	return s.produce(ctx, t.Topic, []byte(identity.Key(t.Tenant, t.DeviceID)), &rec, []kgo.RecordHeader{{Key: ingest.HeaderTenant, Value: []byte(t.Tenant)}})
}

func (s *Stage) produce(ctx context.Context, topic string, key []byte, v any, hdr []kgo.RecordHeader) error {
	b, err := s.Serde.Encode(ctx, topic, v)
	if err != nil {
		return fmt.Errorf("media: encode %s: %w", topic, err)
	}
	s.Kafka.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: b, Headers: hdr}, func(r *kgo.Record, err error) {
		if err != nil && ctx.Err() == nil {
			s.prodErr.CompareAndSwap(nil, &err)
			s.Log.Error("produce failed", "topic", r.Topic, "err", err)
		}
	})
	return nil
}

// Notifier turns the embedded S3's OnObjectCreated callback into
// media.object.events records (the AWS notification JSON in Raw). The
// callback only queues (it must return quickly); Run produces. Events
// queued before Run starts are kept; beyond 100000 queued events new ones
// are dropped and counted (backfill recovers them).
type Notifier struct {
	Now     func() time.Time
	Log     *slog.Logger
	queue   chan schemas.MediaObjectEvent
	Dropped atomic.Int64
}

// NewNotifier returns a Notifier; log may be nil.
func NewNotifier(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{Now: time.Now, Log: log, queue: make(chan schemas.MediaObjectEvent, 100000)}
}

// ObjectCreated has the signature of devstack.Config.OnObjectCreated.
func (n *Notifier) ObjectCreated(bucket, key string, size int64, etag, contentType string, meta map[string]string) {
	now := n.Now()
	m := make(map[string]string, len(meta))
	for k, v := range meta {
		m[strings.ToLower(strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-"))] = v
	}
	raw := S3EventJSON(bucket, key, size, etag, contentType, m, now)
	evs, err := ParseS3Event(raw, now)
	if err != nil || len(evs) != 1 {
		n.Log.Error("building the object event", "bucket", bucket, "key", key, "err", err)
		return
	}
	select {
	case n.queue <- evs[0]:
	default:
		n.Dropped.Add(1)
		n.Log.Warn("object event queue full; dropping the notification (backfill will find the object)", "bucket", bucket, "key", key)
	}
}

// Run produces queued events to media.object.events (key bucket/key)
// until ctx is cancelled.
func (n *Notifier) Run(ctx context.Context, kafka *kgo.Client, serde *schemas.Serde) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-n.queue:
			b, err := serde.Encode(ctx, topics.MediaEvents, &ev)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				n.Log.Error("encoding object event", "key", ev.Key, "err", err)
				continue
			}
			kafka.Produce(ctx, &kgo.Record{Topic: topics.MediaEvents, Key: []byte(ev.Bucket + "/" + ev.Key), Value: b}, func(r *kgo.Record, err error) {
				if err != nil && ctx.Err() == nil {
					n.Log.Error("producing object event", "key", string(r.Key), "err", err)
				}
			})
		}
	}
}

// EventsHandler accepts S3 event notification documents by HTTP POST (a
// MinIO or SeaweedFS webhook target) and produces one media.object.events
// record per event; it answers 202 once Kafka acknowledged them.
func EventsHandler(kafka *kgo.Client, serde *schemas.Serde, now func() time.Time, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an S3 event notification", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		evs, err := ParseS3Event(body, now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		recs := make([]*kgo.Record, 0, len(evs))
		for i := range evs {
			b, err := serde.Encode(r.Context(), topics.MediaEvents, &evs[i])
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			recs = append(recs, &kgo.Record{Topic: topics.MediaEvents, Key: []byte(evs[i].Bucket + "/" + evs[i].Key), Value: b})
		}
		if err := kafka.ProduceSync(r.Context(), recs...).FirstErr(); err != nil {
			log.Error("producing object events", "err", err)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// MediaCommand returns `drover media`, the long-running live media stage.
func MediaCommand(conn *cli.Conn) *cobra.Command {
	var (
		group, mappingFile, adminAddr string
		headObjects                   bool
		creds                         S3Credentials
	)
	cmd := &cobra.Command{
		Use:   "media",
		Short: "Map S3 ObjectCreated notifications on media.object.events to raw.*.meta records",
		Long: `media consumes S3 bucket notifications (the AWS / MinIO / SeaweedFS event
JSON, as schemas.MediaObjectEvent records on media.object.events) in consumer
group --group and writes, for each ObjectCreated event, the same raw.{kind}.meta
record 'drover backfill media' would write for the object (same mapping, key and
event_id), with replayed=false. Objects that cannot be mapped go to dlq.events
(stage media). Offsets are committed after Kafka acknowledged the outputs.

The admin server also accepts notification documents by POST on /s3/events
(point a MinIO or SeaweedFS webhook target at it); they are written to
media.object.events.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			m := DefaultMapping()
			if mappingFile != "" {
				var err error
				if m, err = LoadMapping(mappingFile); err != nil {
					return cli.Usagef("--mapping: %w", err)
				}
			}
			if group == "" {
				return cli.Usagef("--group: empty")
			}
			adm := admin.New(adminAddr, conn.Logger())
			kc, err := conn.Kafka(append(StageKafkaOpts(group), adm.KafkaMetrics("media")("media"))...)
			if err != nil {
				return err
			}
			defer kc.Close()
			if err := conn.PingKafka(ctx, kc, 15*time.Second); err != nil {
				return err
			}
			reg, err := conn.Registry()
			if err != nil {
				return err
			}
			var s3c *s3.Client
			if headObjects {
				if s3c, err = NewS3Client(ctx, conn, creds); err != nil {
					return err
				}
			}
			return runStage(ctx, kc, reg, s3c, m, adm, true, conn.Logger())
		},
	}
	fs := cmd.Flags()
	conn.AddKafkaFlags(fs)
	conn.AddRegistryFlags(fs)
	fs.StringVar(&group, "group", DefaultMediaGroup, "consumer group")
	fs.StringVar(&mappingFile, "mapping", "", "mapping file (default: the embedded mapping.yaml; see drover backfill media)")
	fs.BoolVar(&headObjects, "head-objects", false, "HeadObject objects whose notification has no user metadata when the mapping needs it (AWS sends none); needs the S3 flags")
	conn.AddS3Flags(fs)
	creds.AddFlags(fs)
	admin.AddFlag(fs, &adminAddr, DefaultMediaAdminAddr)
	return cmd
}

// runStage runs the stage and its admin server adm (created by the caller,
// so the Kafka client could take its metrics, not yet listening); with
// strictAdmin false a taken address falls back to a free loopback port.
func runStage(ctx context.Context, kc *kgo.Client, reg *sr.Client, s3c *s3.Client, m *Mapping, adm *admin.Server, strictAdmin bool, log *slog.Logger) error {
	serde, err := schemas.NewSerde(reg, schemas.AutoRegister(true))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ts := append([]string{topics.MediaEvents, topics.DLQ}, mediaTopicNames()...)
	if err := serde.Prepare(pctx, ts...); err != nil {
		return fmt.Errorf("schema registry: %w", err)
	}
	if err := adm.Listen(); err != nil {
		if strictAdmin {
			return cli.Usagef("--admin-addr: %w", err)
		}
		ln, lerr := net.Listen("tcp", "127.0.0.1:0")
		if lerr != nil {
			return lerr
		}
		adm.UseListener(ln)
	}
	st := &Stage{Kafka: kc, Serde: serde, Mapping: m, Log: log, S3: s3c}
	st.Register(adm.Registry, adm)
	adm.Handle("/s3/events", EventsHandler(kc, serde, time.Now, log))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return adm.Run(gctx) })
	g.Go(func() error {
		err := st.Run(gctx)
		log.Info("media stage stopped", "events", st.Stats.Events.Load(), "published", st.Stats.Published.Load(),
			"ignored", st.Stats.Ignored.Load(), "unmappable", st.Stats.Unmappable.Load(), "invalid", st.Stats.Invalid.Load())
		return err
	})
	return g.Wait()
}

func mediaTopicNames() []string {
	out := make([]string, 0, len(mediaKinds))
	for _, k := range mediaKinds {
		t, _ := topics.MediaTopic(k)
		out = append(out, t)
	}
	return out
}

// DevStage returns the live media stage for `drover dev`, named "media":
// it produces n's queued object events (n.ObjectCreated is set as the
// stage's OnObjectCreated, so drover dev wires it to the embedded S3) to
// media.object.events and maps them to
// raw.*.meta records. Its admin server listens on adminAddr ("" = none; a
// taken port falls back to a free one).
func DevStage(n *Notifier, adminAddr string) devstage.Stage {
	var hook func(bucket, key string, size int64, etag, contentType string, meta map[string]string)
	if n != nil {
		hook = n.ObjectCreated
	}
	return devstage.Stage{
		Name:            "media",
		OnObjectCreated: hook,
		Run: func(ctx context.Context, ep devstage.Endpoints, log *slog.Logger) error {
			brokers := strings.Split(ep.KafkaBrokers, ",")
			reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
			if err != nil {
				return fmt.Errorf("media: registry: %w", err)
			}
			adm := admin.New(adminAddr, log)
			kc, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, StageKafkaOpts(DefaultMediaGroup)...),
				adm.KafkaMetrics("media")("media"))...)
			if err != nil {
				return fmt.Errorf("media: %w", err)
			}
			defer kc.Close()
			g, gctx := errgroup.WithContext(ctx)
			if n != nil {
				serde, err := schemas.NewSerde(reg, schemas.AutoRegister(true))
				if err != nil {
					return err
				}
				n.Log = log
				g.Go(func() error { return n.Run(gctx, kc, serde) })
			}
			g.Go(func() error { return runStage(gctx, kc, reg, nil, DefaultMapping(), adm, false, log) })
			return g.Wait()
		},
	}
}
