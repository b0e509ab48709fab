package backfill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
)

// Stages written to DeadLetter.stage by this package.
const (
	StageBackfill = "backfill" // drover backfill media
	StageMedia    = "media"    // drover media (live notifications)
)

// HeaderReplayed marks records written by the backfill job ("true").
const HeaderReplayed = "drover.replayed"

// Object is what the backfill job and the live stage know of an S3 object.
type Object struct {
	Bucket string
	Key    string
	// ETag is the entity tag without quotes.
	ETag string
	Size int64
	// Time is LastModified (backfill) or the event time (live).
	Time time.Time
}

// EventID returns the record id of an object: the first 16 bytes (hex) of
// SHA-256 over bucket, key and ETag. The same object always gets the same
// id, whether it was replayed or notified.
func EventID(bucket, key, etag string) string {
	h := sha256.New()
	for _, s := range []string{bucket, key, normETag(etag)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func normETag(etag string) string { return strings.Trim(etag, `"`) }

// Record builds the raw.{kind}.meta record of o. ts is the object's time
// truncated to the second (S3 keeps LastModified to the second, so live
// and replayed records agree); ingested_at is now; sha256 is left unset
// (S3 listings do not carry it; the device's own metadata message does).
func Record(t Target, o Object, now time.Time, replayed bool) schemas.MediaObject {
	etag := normETag(o.ETag)
	var etagp *string
	if etag != "" {
		etagp = &etag
	}
	return schemas.MediaObject{
		EventID:     EventID(o.Bucket, o.Key, etag),
		Tenant:      t.Tenant,
		DeviceID:    t.DeviceID,
		TS:          o.Time.UTC().Truncate(time.Second),
		IngestedAt:  now.UTC().Truncate(time.Millisecond),
		Kind:        t.Kind,
		Bucket:      o.Bucket,
		Key:         o.Key,
		Size:        o.Size,
		ContentType: t.ContentType,
		ETag:        etagp,
		Replayed:    replayed,
		Attrs:       map[string]string{},
	}
}

// deadLetter builds the dlq.events value for an unmappable object. Its id
// is deterministic (bucket, key, ETag, reason), its payload the object's
// description as JSON.
func deadLetter(stage string, o Object, ue *UnmappableError, now time.Time) (schemas.DeadLetter, []kgo.RecordHeader) {
	payload, _ := json.Marshal(map[string]any{
		"bucket": o.Bucket, "key": o.Key, "etag": normETag(o.ETag), "size": o.Size,
		"last_modified": o.Time.UTC().Format(time.RFC3339),
	})
	h := sha256.New()
	for _, s := range []string{o.Bucket, o.Key, normETag(o.ETag), ue.Reason} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	l := ingest.Letter{
		ID:          hex.EncodeToString(h.Sum(nil)[:16]),
		Source:      "s3://" + o.Bucket + "/" + o.Key,
		Payload:     payload,
		ContentType: "application/json",
		Headers:     map[string]string{"s3.bucket": o.Bucket, "s3.key": o.Key},
		ReceivedAt:  o.Time,
	}
	return ingest.DeadLetter(l, &decode.Error{Stage: decode.Stage(stage), Reason: decode.Reason(ue.Reason), Message: ue.Message}, now)
}
