package backfill

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// ErrNotS3Event is returned by ParseS3Event for JSON that holds no S3
// event records.
var ErrNotS3Event = errors.New("not an S3 event notification")

// s3EventJSON is the bucket notification document AWS S3, MinIO and
// SeaweedFS send: {"Records": [...]} (MinIO adds EventName and Key at the
// top level, ignored here).
type s3EventJSON struct {
	Records []s3EventRecord `json:"Records"`
}

type s3EventRecord struct {
	EventName string `json:"eventName"`
	EventTime string `json:"eventTime"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key          string            `json:"key"`
			Size         int64             `json:"size"`
			ETag         string            `json:"eTag"`
			ContentType  string            `json:"contentType"`
			UserMetadata map[string]string `json:"userMetadata"`
			Sequencer    string            `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

// ParseS3Event turns an S3 event notification document into one
// MediaObjectEvent per record. Keys are URL-decoded (S3 sends them
// form-encoded); Raw holds the record's own JSON; event_id is derived from
// bucket, key, ETag, event name and sequencer, so a redelivered
// notification has the same id. ingestedAt is the receive time.
func ParseS3Event(doc []byte, ingestedAt time.Time) ([]schemas.MediaObjectEvent, error) {
	var ev s3EventJSON
	if err := json.Unmarshal(doc, &ev); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotS3Event, err)
	}
	if len(ev.Records) == 0 {
		return nil, fmt.Errorf("%w: no Records", ErrNotS3Event)
	}
	var raws struct {
		Records []json.RawMessage `json:"Records"`
	}
	_ = json.Unmarshal(doc, &raws)
	out := make([]schemas.MediaObjectEvent, 0, len(ev.Records))
	for i, r := range ev.Records {
		o := r.S3.Object
		if r.S3.Bucket.Name == "" || o.Key == "" || r.EventName == "" {
			return nil, fmt.Errorf("record %d: bucket name, object key and eventName are required", i)
		}
		key, err := url.QueryUnescape(o.Key)
		if err != nil {
			return nil, fmt.Errorf("record %d: object key %q: %w", i, o.Key, err)
		}
		et := ingestedAt
		if r.EventTime != "" {
			if et, err = time.Parse(time.RFC3339Nano, r.EventTime); err != nil {
				return nil, fmt.Errorf("record %d: eventTime %q: %w", i, r.EventTime, err)
			}
		}
		raw := ""
		if i < len(raws.Records) {
			raw = string(raws.Records[i])
		}
		out = append(out, newEvent(strings.TrimPrefix(r.EventName, "s3:"), r.S3.Bucket.Name, key, o.Size, normETag(o.ETag), o.ContentType, o.UserMetadata, et, ingestedAt, o.Sequencer, raw))
	}
	return out, nil
}

func newEvent(name, bucket, key string, size int64, etag, contentType string, meta map[string]string, eventTime, ingestedAt time.Time, seq, raw string) schemas.MediaObjectEvent {
	h := sha256.New()
	for _, s := range []string{name, bucket, key, etag, seq} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if meta == nil {
		meta = map[string]string{}
	}
	ev := schemas.MediaObjectEvent{
		EventID:      hex.EncodeToString(h.Sum(nil)[:16]),
		EventName:    name,
		Bucket:       bucket,
		Key:          key,
		Size:         size,
		EventTime:    eventTime.UTC().Truncate(time.Millisecond),
		TS:           eventTime.UTC().Truncate(time.Millisecond),
		IngestedAt:   ingestedAt.UTC().Truncate(time.Millisecond),
		UserMetadata: meta,
		Raw:          raw,
	}
	if etag != "" {
		ev.ETag = &etag
	}
	if contentType != "" {
		ev.ContentType = &contentType
	}
	return ev
}

// S3EventJSON renders one AWS-format ObjectCreated:Put notification
// document for an object, as the embedded S3 would send it.
func S3EventJSON(bucket, key string, size int64, etag, contentType string, meta map[string]string, at time.Time) []byte {
	var r s3EventRecord
	r.EventName = "ObjectCreated:Put"
	r.EventTime = at.UTC().Format("2006-01-02T15:04:05.000Z")
	r.S3.Bucket.Name = bucket
	r.S3.Object.Key = url.QueryEscape(key)
	r.S3.Object.Size = size
	r.S3.Object.ETag = etag
	r.S3.Object.ContentType = contentType
	r.S3.Object.UserMetadata = meta
	r.S3.Object.Sequencer = fmt.Sprintf("%016X", at.UnixNano())
	doc := map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
		"eventTime": r.EventTime, "eventName": r.EventName,
		"s3": map[string]any{
			"s3SchemaVersion": "1.0",
			"bucket":          map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object":          r.S3.Object,
		},
	}}}
	b, _ := json.Marshal(doc)
	return b
}

// IsObjectCreated reports whether an event name (with or without the s3:
// prefix) is an ObjectCreated event.
func IsObjectCreated(name string) bool {
	return strings.HasPrefix(strings.TrimPrefix(name, "s3:"), "ObjectCreated:")
}

// EventObject is the Object an event describes.
func EventObject(ev *schemas.MediaObjectEvent) Object {
	o := Object{Bucket: ev.Bucket, Key: ev.Key, Size: ev.Size, Time: ev.EventTime}
	if ev.ETag != nil {
		o.ETag = *ev.ETag
	}
	return o
}
