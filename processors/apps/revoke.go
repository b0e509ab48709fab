package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Event types apps write to topics.ThirdPartySharing (Envelope records).
const (
	EventEvidence = "sharing.evidence" // records shared under an agreement in one hour
	EventRevoked  = "sharing.revoked"  // an agreement was revoked: its apps stop sharing
)

// Revocation is the payload of an EventRevoked record.
type Revocation struct {
	Agreement string    `json:"agreement"`
	Reason    string    `json:"reason,omitempty"`
	RevokedAt time.Time `json:"revoked_at"`
}

// NewRevocation returns the Envelope that revokes agreement, by actor, at
// now; its event id is derived from the agreement and the time.
func NewRevocation(agreement, reason, actor string, now time.Time) (*schemas.Envelope, error) {
	if agreement == "" {
		return nil, errors.New("empty agreement id")
	}
	now = now.UTC().Truncate(time.Millisecond)
	payload, err := json.Marshal(Revocation{Agreement: agreement, Reason: reason, RevokedAt: now})
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte(EventRevoked + "\x00" + agreement + "\x00" + strconv.FormatInt(now.UnixMilli(), 10)))
	env := &schemas.Envelope{EventID: hex.EncodeToString(h[:16]), EventType: EventRevoked, TS: now, IngestedAt: now,
		Subject: &agreement, Payload: string(payload), Attributes: map[string]string{"agreement": agreement}}
	if actor != "" {
		env.Actor = &actor
	}
	return env, nil
}

// Revocations is the set of revoked agreements, kept up to date from
// topics.ThirdPartySharing by Run. It is safe for concurrent use.
type Revocations struct {
	kopts []kgo.Opt
	serde *schemas.Serde
	log   *slog.Logger

	mu      sync.RWMutex
	revoked map[string]time.Time
	caught  chan struct{} // closed once the topic was read up to its end offsets at start
	once    sync.Once
}

// NewRevocations returns the set; Run fills it.
func NewRevocations(kopts []kgo.Opt, serde *schemas.Serde, log *slog.Logger) *Revocations {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Revocations{kopts: kopts, serde: serde, log: log, revoked: map[string]time.Time{}, caught: make(chan struct{})}
}

// Revoked reports whether agreement is revoked, and since when.
func (r *Revocations) Revoked(agreement string) (time.Time, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.revoked[agreement]
	return t, ok
}

// Wait blocks until Run has read every revocation written before it
// started (or ctx is done), so an app never shares under an agreement
// revoked before a restart.
func (r *Revocations) Wait(ctx context.Context) error {
	select {
	case <-r.caught:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Caught reports whether Run has read every revocation written before it
// started (the /readyz check).
func (r *Revocations) Caught() bool {
	select {
	case <-r.caught:
		return true
	default:
		return false
	}
}

// Run reads topics.ThirdPartySharing from its start, without a consumer
// group, until ctx is done.
func (r *Revocations) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(r.kopts, kgo.ConsumeTopics(topics.ThirdPartySharing),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("revocations: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics.ThirdPartySharing)
	if err != nil {
		return fmt.Errorf("revocations: end offsets of %s: %w", topics.ThirdPartySharing, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		r.once.Do(func() { close(r.caught) })
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			r.log.Warn("revocations: fetch failed", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(func(rec *kgo.Record) {
			r.apply(ctx, rec)
			if end, ok := want[rec.Partition]; ok && rec.Offset+1 >= end {
				delete(want, rec.Partition)
				if len(want) == 0 {
					r.once.Do(func() { close(r.caught) })
				}
			}
		})
	}
}

func (r *Revocations) apply(ctx context.Context, rec *kgo.Record) {
	var env schemas.Envelope
	if _, err := r.serde.Decode(ctx, rec.Value, &env); err != nil {
		r.log.Warn("revocations: skipping an undecodable record", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return
	}
	if env.EventType != EventRevoked {
		return
	}
	var rv Revocation
	if err := json.Unmarshal([]byte(env.Payload), &rv); err != nil || rv.Agreement == "" {
		r.log.Warn("revocations: skipping a revocation without an agreement", "offset", rec.Offset, "err", err)
		return
	}
	r.add(rv)
}

func (r *Revocations) add(rv Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.revoked[rv.Agreement]; !dup {
		r.revoked[rv.Agreement] = rv.RevokedAt
		r.log.Info("agreement revoked: its apps stop sharing", "agreement", rv.Agreement, "revoked_at", rv.RevokedAt)
	}
}

// Revoke writes the revocation of agreement to topics.ThirdPartySharing
// (key = the agreement) and waits for Kafka's acknowledgement. Apps sharing
// under the agreement stop within seconds (Revocations); the record is the
// revocation's evidence.
func Revoke(ctx context.Context, cl *kgo.Client, serde *schemas.Serde, agreement, reason, actor string, now time.Time) (*schemas.Envelope, error) {
	env, err := NewRevocation(agreement, reason, actor, now)
	if err != nil {
		return nil, err
	}
	b, err := serde.Encode(ctx, topics.ThirdPartySharing, env)
	if err != nil {
		return nil, fmt.Errorf("encoding the revocation: %w", err)
	}
	rec := &kgo.Record{Topic: topics.ThirdPartySharing, Key: []byte(agreement), Value: b}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return nil, fmt.Errorf("writing the revocation to %s: %w", topics.ThirdPartySharing, err)
	}
	return env, nil
}
