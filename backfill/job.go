package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Job is one media backfill: list the objects of Buckets (under Prefix)
// whose LastModified lies in [Start, End) and publish their records.
// Fill the fields, then call Run once.
type Job struct {
	S3 *s3.Client
	// Kafka produces the records; unused (may be nil) with DryRun.
	Kafka *kgo.Client
	// Serde encodes records; unused (may be nil) with DryRun.
	Serde   *schemas.Serde
	Mapping *Mapping
	Buckets []string
	Prefix  string
	// Start is inclusive, End exclusive.
	Start, End time.Time
	// DryRun lists and maps but produces nothing and writes no checkpoint.
	DryRun bool
	// Rate caps objects listed per second (0 = no cap).
	Rate float64
	// StateDir holds the checkpoint file ("" = no checkpoint).
	StateDir string
	// Concurrency is the number of prefixes listed at once (default 4).
	Concurrency int
	// NoPrune lists every key under Prefix instead of the window's date
	// partitions.
	NoPrune bool
	// DLQTopic receives unmappable objects (default dlq.events).
	DLQTopic string
	// Now is the clock (default time.Now); ingested_at comes from it.
	Now func() time.Time
	Log *slog.Logger

	// Stats counts progress; safe to read while Run runs.
	Stats Stats

	ckpt *checkpoint
	lim  *limiter
}

// Stats are the job's counters.
type Stats struct {
	// Prefixes planned and done.
	Prefixes, PrefixesDone atomic.Int64
	// Listed objects, and of those: Matched (in the window), Skipped
	// (outside it), Published (acknowledged by Kafka, or would be with
	// DryRun), Unmappable (dead-lettered), Errors (HEAD, list or produce
	// failures).
	Listed, Matched, Skipped, Published, Unmappable, Errors atomic.Int64
	// Resumed is the number of prefixes a checkpoint let the job skip or
	// continue.
	Resumed atomic.Int64
}

// Summary is a snapshot of Stats.
type Summary struct {
	Prefixes   int64 `json:"prefixes"`
	Listed     int64 `json:"listed"`
	Matched    int64 `json:"matched"`
	Published  int64 `json:"published"`
	Skipped    int64 `json:"skipped"`
	Unmappable int64 `json:"unmappable"`
	Errors     int64 `json:"errors"`
	Resumed    int64 `json:"resumed_prefixes"`
	DryRun     bool  `json:"dry_run"`
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() Summary {
	return Summary{Prefixes: s.Prefixes.Load(), Listed: s.Listed.Load(), Matched: s.Matched.Load(), Published: s.Published.Load(),
		Skipped: s.Skipped.Load(), Unmappable: s.Unmappable.Load(), Errors: s.Errors.Load(), Resumed: s.Resumed.Load()}
}

// ErrJobFailed is returned by Run when some objects failed (see
// Summary.Errors); what succeeded is checkpointed.
var ErrJobFailed = errors.New("backfill finished with errors")

// ErrInterrupted is returned by the command when the job was stopped
// (SIGTERM, Ctrl-C) before it finished; it exits 1, not 0.
var ErrInterrupted = errors.New("backfill interrupted before it finished")

func (j *Job) validate() error {
	switch {
	case j.S3 == nil:
		return errors.New("backfill: no S3 client")
	case j.Mapping == nil:
		return errors.New("backfill: no mapping")
	case len(j.Buckets) == 0:
		return errors.New("backfill: no bucket")
	case !j.Start.Before(j.End):
		return fmt.Errorf("backfill: window start %s is not before end %s", j.Start.Format(time.RFC3339), j.End.Format(time.RFC3339))
	case !j.DryRun && (j.Kafka == nil || j.Serde == nil):
		return errors.New("backfill: no Kafka client or serde")
	}
	return nil
}

// Run runs the job. It returns the summary and nil, ErrJobFailed when
// some objects failed, or the context's error when cancelled (after
// draining what was produced and saving the checkpoint).
func (j *Job) Run(ctx context.Context) (Summary, error) {
	if err := j.validate(); err != nil {
		return Summary{}, err
	}
	if j.Now == nil {
		j.Now = time.Now
	}
	if j.Log == nil {
		j.Log = slog.New(slog.DiscardHandler)
	}
	if j.DLQTopic == "" {
		j.DLQTopic = topics.DLQ
	}
	if j.Concurrency <= 0 {
		j.Concurrency = 4
	}
	j.lim = newLimiter(j.Rate)
	if j.StateDir != "" && !j.DryRun {
		c, err := openCheckpoint(j.StateDir, j.identity())
		if err != nil {
			return Summary{}, err
		}
		j.ckpt = c
	}

	type unit struct{ bucket, prefix string }
	var units []unit
	for _, b := range j.Buckets {
		ps, err := j.plan(ctx, b)
		if err != nil {
			return j.summary(), err
		}
		for _, p := range ps {
			units = append(units, unit{b, p})
		}
	}
	j.Stats.Prefixes.Store(int64(len(units)))
	j.Log.Info("backfill planned", "buckets", j.Buckets, "prefixes", len(units),
		"window_start", j.Start.UTC().Format(time.RFC3339), "window_end", j.End.UTC().Format(time.RFC3339), "dry_run", j.DryRun)

	work := make(chan unit)
	var wg sync.WaitGroup
	for range min(j.Concurrency, max(1, len(units))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				if err := j.runUnit(ctx, u.bucket, u.prefix); err != nil && ctx.Err() == nil {
					j.Stats.Errors.Add(1)
					j.Log.Error("listing failed", "bucket", u.bucket, "prefix", u.prefix, "err", err)
				}
				j.Stats.PrefixesDone.Add(1)
			}
		}()
	}
feed:
	for _, u := range units {
		select {
		case work <- u:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()

	// Drain: wait for Kafka to acknowledge what was produced, even when
	// cancelled, so the checkpoint covers it.
	if j.Kafka != nil && !j.DryRun {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := j.Kafka.Flush(fctx); err != nil {
			j.Log.Error("flushing records", "err", err)
		}
		cancel()
	}
	if j.ckpt != nil {
		if err := j.ckpt.save(); err != nil {
			j.Log.Error("saving checkpoint", "err", err)
			j.Stats.Errors.Add(1)
		}
	}
	sum := j.summary()
	if ctx.Err() != nil {
		return sum, ctx.Err()
	}
	if sum.Errors > 0 {
		return sum, ErrJobFailed
	}
	if j.ckpt != nil {
		j.ckpt.markComplete()
		_ = j.ckpt.save()
	}
	return sum, nil
}

func (j *Job) summary() Summary {
	s := j.Stats.Snapshot()
	s.DryRun = j.DryRun
	return s
}

// identity is what makes two runs the same job for the checkpoint.
func (j *Job) identity() jobIdentity {
	bs := slices.Clone(j.Buckets)
	slices.Sort(bs)
	id := jobIdentity{Buckets: bs, Prefix: j.Prefix, Start: j.Start.UTC(), End: j.End.UTC(), NoPrune: j.NoPrune}
	if j.Mapping.Layout != nil {
		id.Layout = j.Mapping.Layout.String()
		id.Slack = j.Mapping.PartitionSlack.String()
	}
	return id
}

func compatible(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

// plan returns the prefixes of bucket to list: the window's date
// partitions under every identity prefix the layout's leading segments
// expand to, or just Prefix when the layout has no date or NoPrune.
func (j *Job) plan(ctx context.Context, bucket string) ([]string, error) {
	l := j.Mapping.Layout
	if j.NoPrune || !l.prunable() {
		return []string{j.Prefix}, nil
	}
	dates := l.datePrefixes(j.Start.Add(-j.Mapping.PartitionSlack), j.End)
	var out []string
	var walk func(level int, cur string) error
	walk = func(level int, cur string) error {
		if !compatible(cur, j.Prefix) {
			return nil
		}
		if level == l.dateAt {
			for _, d := range dates {
				p := cur + d
				if !compatible(p, j.Prefix) {
					continue
				}
				if len(j.Prefix) > len(p) {
					p = j.Prefix
				}
				out = append(out, p)
			}
			return nil
		}
		s := l.segs[level]
		if s.name == "" {
			return walk(level+1, cur+s.lit+"/")
		}
		subs, err := j.listDirs(ctx, bucket, cur)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if err := walk(level+1, sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(0, ""); err != nil {
		return nil, fmt.Errorf("planning s3://%s: %w", bucket, err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// listDirs returns the common prefixes ("directories") right under prefix.
func (j *Job) listDirs(ctx context.Context, bucket, prefix string) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(j.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, cp := range page.CommonPrefixes {
			out = append(out, aws.ToString(cp.Prefix))
		}
	}
	return out, nil
}

// page tracks the records of one listing page until Kafka acknowledged
// them all; pages of a unit complete in order for the checkpoint.
type page struct {
	lastKey string
	pending atomic.Int64
	failed  atomic.Bool
	done    chan struct{}
}

func (j *Job) runUnit(ctx context.Context, bucket, prefix string) error {
	after := ""
	if j.ckpt != nil {
		st := j.ckpt.unit(bucket, prefix)
		if st.Done {
			j.Stats.Resumed.Add(1)
			return nil
		}
		if st.After != "" {
			j.Stats.Resumed.Add(1)
			after = st.After
		}
	}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}
	if prefix != "" {
		in.Prefix = aws.String(prefix)
	}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	pager := s3.NewListObjectsV2Paginator(j.S3, in)
	// Pages are acknowledged in order by this goroutine's queue.
	var queue []*page
	advance := func(wait bool) bool {
		for len(queue) > 0 {
			pg := queue[0]
			if wait {
				select {
				case <-pg.done:
				case <-ctx.Done():
					return false
				}
			} else {
				select {
				case <-pg.done:
				default:
					return true
				}
			}
			if pg.failed.Load() {
				return false // stop advancing: a restart redoes this page
			}
			if j.ckpt != nil {
				j.ckpt.advance(bucket, prefix, pg.lastKey)
			}
			queue = queue[1:]
		}
		return true
	}
	ok := true
	for pager.HasMorePages() {
		if ctx.Err() != nil {
			break
		}
		out, err := pager.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		if len(out.Contents) == 0 {
			continue
		}
		pg := &page{done: make(chan struct{})}
		pg.pending.Store(1) // the page itself, released below
		for _, o := range out.Contents {
			if err := j.lim.wait(ctx); err != nil {
				break
			}
			j.Stats.Listed.Add(1)
			obj := Object{Bucket: bucket, Key: aws.ToString(o.Key), ETag: aws.ToString(o.ETag), Size: aws.ToInt64(o.Size), Time: aws.ToTime(o.LastModified)}
			pg.lastKey = obj.Key
			if obj.Time.Before(j.Start) || !obj.Time.Before(j.End) {
				j.Stats.Skipped.Add(1)
				continue
			}
			j.Stats.Matched.Add(1)
			j.handle(ctx, obj, pg)
		}
		j.release(pg)
		queue = append(queue, pg)
		if !advance(false) {
			ok = false
		}
	}
	if ctx.Err() != nil {
		// Let what was produced be acknowledged; Run flushes and saves.
		j.drainQueue(bucket, prefix, queue)
		return nil
	}
	if !advance(true) {
		ok = false
	}
	if ok && j.ckpt != nil {
		j.ckpt.finish(bucket, prefix)
	}
	return nil
}

// drainQueue records, after cancellation, the pages Kafka still
// acknowledges within the flush.
func (j *Job) drainQueue(bucket, prefix string, queue []*page) {
	if j.ckpt == nil || j.DryRun {
		return
	}
	for _, pg := range queue {
		select {
		case <-pg.done:
		case <-time.After(30 * time.Second):
			return
		}
		if pg.failed.Load() {
			return
		}
		j.ckpt.advance(bucket, prefix, pg.lastKey)
	}
}

func (j *Job) release(pg *page) {
	if pg.pending.Add(-1) == 0 {
		close(pg.done)
	}
}

// handle maps one in-window object and produces its record or dead letter.
func (j *Job) handle(ctx context.Context, obj Object, pg *page) {
	var meta map[string]string
	if j.Mapping.NeedsMetadata(obj.Bucket, obj.Key) {
		h, err := j.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)})
		if err != nil {
			if ctx.Err() == nil {
				j.Stats.Errors.Add(1)
				pg.failed.Store(true)
				j.Log.Error("head object failed", "bucket", obj.Bucket, "key", obj.Key, "err", err)
			}
			return
		}
		meta = h.Metadata
	}
	t, err := j.Mapping.Resolve(obj.Bucket, obj.Key, meta)
	now := j.Now()
	var rec *kgo.Record
	var ue *UnmappableError
	switch {
	case errors.As(err, &ue):
		j.Stats.Unmappable.Add(1)
		j.Log.Warn("object cannot be mapped", "bucket", obj.Bucket, "key", obj.Key, "reason", ue.Reason, "message", ue.Message)
		if j.DryRun {
			return
		}
		dl, hdr := deadLetter(StageBackfill, obj, ue, now)
		v, err := j.Serde.Encode(ctx, j.DLQTopic, &dl)
		if err != nil {
			j.fail(pg, obj, err)
			return
		}
		rec = &kgo.Record{Topic: j.DLQTopic, Key: []byte(obj.Bucket + "/" + obj.Key), Value: v, Headers: hdr}
	case err != nil:
		j.fail(pg, obj, err)
		return
	default:
		if j.DryRun {
			j.Stats.Published.Add(1)
			return
		}
		r := Record(t, obj, now, true)
		v, err := j.Serde.Encode(ctx, t.Topic, &r)
		if err != nil {
			j.fail(pg, obj, err)
			return
		}
		rec = &kgo.Record{Topic: t.Topic, Key: []byte(identity.Key(t.Tenant, t.DeviceID)), Value: v, Headers: []kgo.RecordHeader{
			{Key: ingest.HeaderTenant, Value: []byte(t.Tenant)},
			{Key: HeaderReplayed, Value: []byte("true")},
		}}
	}
	pg.pending.Add(1)
	isDLQ := ue != nil
	j.Kafka.Produce(ctx, rec, func(r *kgo.Record, err error) {
		if err != nil {
			j.Stats.Errors.Add(1)
			pg.failed.Store(true)
			if !errors.Is(err, context.Canceled) {
				j.Log.Error("produce failed", "topic", r.Topic, "key", obj.Key, "err", err)
			}
		} else if !isDLQ {
			j.Stats.Published.Add(1)
		}
		j.release(pg)
	})
}

func (j *Job) fail(pg *page, obj Object, err error) {
	j.Stats.Errors.Add(1)
	pg.failed.Store(true)
	j.Log.Error("object failed", "bucket", obj.Bucket, "key", obj.Key, "err", err)
}

// limiter paces calls to wait at rate per second (0 = no limit).
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func newLimiter(rate float64) *limiter {
	if rate <= 0 {
		return &limiter{}
	}
	return &limiter{interval: time.Duration(float64(time.Second) / rate)}
}

func (l *limiter) wait(ctx context.Context) error {
	if l.interval == 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	if l.next.Before(now) {
		l.next = now
	}
	at := l.next
	l.next = l.next.Add(l.interval)
	l.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
