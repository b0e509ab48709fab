package groupkit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// DeadLetterStage is the stage of every dead letter a processor group
// writes. It is not one of the bridge's stages (decode, validate, route,
// produce), so `drover dlq redrive`, which re-runs the bridge on an MQTT
// payload, counts these letters not redrivable instead of routing a Kafka
// record as if it came from MQTT.
const DeadLetterStage = "process"

// Dead-letter reasons for input a group cannot decode.
const (
	// ReasonUndecodable: the value is not in the Confluent wire format, or
	// its body does not match the schema its id names.
	ReasonUndecodable = "undecodable"
	// ReasonUnknownSchema: the value names a schema id the registry does
	// not know.
	ReasonUnknownSchema = "unknown_schema"
)

// DecodeReason returns the dead-letter reason for a permanent decoding
// error (see Permanent): ReasonUnknownSchema or ReasonUndecodable.
func DecodeReason(err error) string {
	var unknown *schemas.UnknownSchemaError
	if errors.As(err, &unknown) {
		return ReasonUnknownSchema
	}
	return ReasonUndecodable
}

// Origin says where an input record came from: its Kafka coordinates and
// key, and the group that read it.
type Origin struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Key       string
}

// DeadLetterID is the deterministic id of the dead letter of the input
// record at topic/partition/offset: hex of the first 16 bytes of
// SHA-256("kafka", topic, partition, offset). It leaves the group out, so
// the same bad record gets the same id whichever group (or a redelivery)
// writes it, and the sink stores it once.
func DeadLetterID(topic string, partition int32, offset int64) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "kafka\x00%s\x00%d\x00%d", topic, partition, offset))
	return hex.EncodeToString(sum[:16])
}

// NewDeadLetter returns the dead letter of an input record a group cannot
// process: stage DeadLetterStage, the reason and the cause's message, the
// original bytes, source "kafka:<topic>/<partition>@<offset>", headers
// naming the group and the coordinates, and the times set to now (UTC,
// milliseconds).
func NewDeadLetter(o Origin, raw []byte, reason string, cause error, now time.Time) *schemas.DeadLetter {
	now = now.UTC().Truncate(time.Millisecond)
	msg := reason
	if cause != nil {
		msg = cause.Error()
	}
	if raw == nil {
		raw = []byte{}
	}
	dl := &schemas.DeadLetter{
		ID:          DeadLetterID(o.Topic, o.Partition, o.Offset),
		Stage:       DeadLetterStage,
		Reason:      reason,
		Message:     msg,
		Source:      fmt.Sprintf("kafka:%s/%d@%d", o.Topic, o.Partition, o.Offset),
		Payload:     raw,
		PayloadSize: int64(len(raw)),
		Headers: map[string]string{
			"group":     o.Group,
			"topic":     o.Topic,
			"partition": strconv.Itoa(int(o.Partition)),
			"offset":    strconv.FormatInt(o.Offset, 10),
		},
		ReceivedAt: now,
		TS:         now,
		IngestedAt: now,
	}
	if o.Key != "" {
		k := o.Key
		dl.DeviceID = &k
	}
	return dl
}
