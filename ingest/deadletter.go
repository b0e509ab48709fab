package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
)

// Kafka record headers of drover records and dead letters (the MQTT
// bridge's, which tools such as drover tail and dlq re-drive read).
const (
	HeaderTenant     = "drover.tenant"
	HeaderDoor       = "drover.door"
	HeaderStage      = "drover.stage"
	HeaderReason     = "drover.reason"
	HeaderSource     = "drover.source"
	HeaderMessage    = "drover.message"
	HeaderReceivedAt = "drover.received_at"
	HeaderDevice     = "drover.device_id"
	HeaderPayloadLen = "drover.payload_size"
	// HeaderMQTTTopic is the MQTT topic of a record or dead letter that
	// came through the MQTT bridge.
	HeaderMQTTTopic = "mqtt.topic"
)

// MaxDeadLetterPayload is the most payload bytes a dead letter keeps; a
// longer payload is cut (Truncated) so the dead letter fits a Kafka record.
const MaxDeadLetterPayload = 768 << 10

// Letter describes the message a dead letter is for.
type Letter struct {
	// ID overrides the dead letter's id ("" = a hash of source, stage,
	// reason and payload); for stages whose input has an identity of its
	// own (an S3 object's etag, a Kafka offset).
	ID string
	// Source is the MQTT topic, or for other doors the device topic the
	// message stands for (devices/{tenant}/{device}/{channel}), so a
	// re-drive routes it like an MQTT message.
	Source         string
	Door           string
	Tenant, Device string // "" when not known
	Payload        []byte
	ContentType    string
	Headers        map[string]string // door-specific (mqtt.qos, http.path, ...)
	// RecordHeaders lead the Kafka headers of the dead letter's record
	// (the MQTT bridge's mqtt.topic, content type and user properties).
	RecordHeaders []kgo.RecordHeader
	ReceivedAt    time.Time
	// MaxPayload is the size limit of the door (0 = MaxDeadLetterPayload).
	MaxPayload int
}

// DeadLetter builds the dead letter of l for the rejection de, and the
// headers of its Kafka record: the one builder for every door and stage.
// Its id is a hash of source, stage, reason and payload, so the same
// rejection of the same message is recognisable. now is ingested_at.
func DeadLetter(l Letter, de *decode.Error, now time.Time) (schemas.DeadLetter, []kgo.RecordHeader) {
	payload, truncated := l.Payload, false
	limit := MaxDeadLetterPayload
	if l.MaxPayload > 0 {
		limit = min(limit, l.MaxPayload)
	}
	if len(payload) > limit {
		payload, truncated = payload[:limit], true
	}
	recv := l.ReceivedAt.UTC().Truncate(time.Millisecond)
	msg := decode.Escape(de.Message)
	id := l.ID
	if id == "" {
		h := sha256.New()
		for _, s := range []string{l.Source, string(de.Stage), string(de.Reason)} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Write(l.Payload)
		id = hex.EncodeToString(h.Sum(nil)[:16])
	}
	dl := schemas.DeadLetter{
		ID: id, Stage: string(de.Stage), Reason: string(de.Reason), Message: msg,
		Source: l.Source, Payload: payload, PayloadSize: int64(len(l.Payload)), Truncated: truncated,
		Headers: map[string]string{}, ReceivedAt: recv, TS: recv, IngestedAt: now.UTC().Truncate(time.Millisecond),
	}
	for k, v := range l.Headers {
		dl.Headers[k] = v
	}
	if l.Door != "" {
		dl.Headers[HeaderDoor] = l.Door
	}
	if l.Tenant != "" {
		t := l.Tenant
		dl.Tenant = &t
	}
	if l.Device != "" {
		d := l.Device
		dl.DeviceID = &d
	}
	if l.ContentType != "" {
		ct := l.ContentType
		dl.ContentType = &ct
	}
	headers := slices.Clip(l.RecordHeaders)
	if l.Tenant != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTenant, Value: []byte(l.Tenant)})
	}
	if l.Door != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDoor, Value: []byte(l.Door)})
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(de.Stage)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(de.Reason)},
		kgo.RecordHeader{Key: HeaderSource, Value: []byte(l.Source)},
		kgo.RecordHeader{Key: HeaderMessage, Value: []byte(clipUTF8(msg, 1024))},
		kgo.RecordHeader{Key: HeaderReceivedAt, Value: []byte(recv.Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderPayloadLen, Value: []byte(strconv.Itoa(len(l.Payload)))},
	)
	if l.Device != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDevice, Value: []byte(l.Device)})
	}
	return dl, headers
}

// DeadLetterRecord is [DeadLetter] encoded as the Kafka record of topic
// (dlq.events): its key is TENANT/DEVICE when both are known, else the
// source.
func DeadLetterRecord(ctx context.Context, serde *schemas.Serde, topic string, l Letter, de *decode.Error, now time.Time) (*kgo.Record, error) {
	dl, headers := DeadLetter(l, de, now)
	buf, err := serde.AppendEncode(ctx, nil, topic, &dl)
	if err != nil {
		return nil, err
	}
	key := l.Source
	if l.Device != "" && l.Tenant != "" {
		key = identity.Key(l.Tenant, l.Device)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: buf, Headers: headers}, nil
}

func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
