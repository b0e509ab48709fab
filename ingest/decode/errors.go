package decode

import "fmt"

// Stage is the pipeline stage at which a message was rejected.
type Stage string

// Stages, as written to DeadLetter.stage and the drover.stage header.
const (
	StageDecode   Stage = "decode"
	StageValidate Stage = "validate"
	StageRoute    Stage = "route"
	StageProduce  Stage = "produce"
)

// Reason is the machine-readable code of a rejection (DeadLetter.reason,
// header drover.reason). The table in bridge/README.md lists them all.
type Reason string

// Reasons of the decode stage.
const (
	ReasonEmptyPayload     Reason = "empty_payload"      // zero-length payload
	ReasonPayloadTooLarge  Reason = "payload_too_large"  // payload above the size limit
	ReasonNotUTF8          Reason = "not_utf8"           // bytes are not valid UTF-8
	ReasonNotJSON          Reason = "not_json"           // not a JSON document
	ReasonWrongShape       Reason = "wrong_shape"        // valid JSON, wrong structure or field type
	ReasonMissingField     Reason = "missing_field"      // ts, metric, value, lat, lon, bucket, ... absent
	ReasonInvalidTS        Reason = "invalid_ts"         // ts not RFC 3339 or epoch milliseconds, or outside years 0001-9999
	ReasonDuplicateKey     Reason = "duplicate_key"      // an object names one field twice (JSON leaves the outcome undefined)
	ReasonSenMLMissingName Reason = "senml_missing_name" // SenML record without bn+n
	ReasonSenMLInvalidName Reason = "senml_invalid_name" // SenML name with characters RFC 8428 forbids
	ReasonSenMLUnknownUnit Reason = "senml_unknown_unit" // SenML unit not in the SenML units registry
	ReasonSenMLUnsupported Reason = "senml_unsupported"  // string/data values, must-understand fields, newer bver

	ReasonEventInvalidName     Reason = "event_invalid_name"     // event name outside [a-z0-9][a-z0-9_.-]*, or longer than 64 bytes
	ReasonEventInvalidSeverity Reason = "event_invalid_severity" // event severity not info, warning or critical
	ReasonEventMessageTooLong  Reason = "event_message_too_long" // event message longer than MaxEventMessage characters
)

// Reasons of the validate stage.
const (
	ReasonInvalidValue   Reason = "invalid_value"            // not a finite number (string, null, NaN, Infinity, overflow)
	ReasonOutOfRange     Reason = "coordinates_out_of_range" // latitude or longitude out of range
	ReasonTSFuture       Reason = "ts_in_future"             // ts later than now + max skew
	ReasonTSTooOld       Reason = "ts_too_old"               // ts earlier than now - max age
	ReasonEmptyMetric    Reason = "empty_metric"             // metric name empty or blank
	ReasonInvalidMetric  Reason = "invalid_metric"           // metric name over MaxMetric bytes or with non-printable characters
	ReasonDeviceMismatch Reason = "device_mismatch"          // payload names another device than the topic
	ReasonSchemaInvalid  Reason = "schema_invalid"           // record does not encode with the topic's Avro schema
	ReasonNoRecords      Reason = "no_records"               // a well-formed payload that carries no value at all

	// ReasonDuplicateTimestamp: two records of one message would be one
	// row downstream (same metric and ts; GPS fixes with the same ts).
	ReasonDuplicateTimestamp Reason = "duplicate_timestamp"
)

// Reasons of the route stage.
const (
	ReasonUnknownTopic   Reason = "unknown_topic"   // MQTT topic matches no route and names no device
	ReasonUnknownChannel Reason = "unknown_channel" // device topic with a channel (or media kind, WildFi type) no route knows
	// ReasonBadIdentity: a tenant or device id outside the identity
	// alphabet (package identity): from the topic, the default tenant, a
	// route's fixed tenant (stage route) or a payload's device_id (stage
	// validate).
	ReasonBadIdentity Reason = "invalid_identity"
	// ReasonUnknownDevice: the device is not in the device registry
	// (--registry enforce).
	ReasonUnknownDevice Reason = "unknown_device"
	// ReasonDeviceRevoked: the device is suspended or revoked in the
	// device registry (--registry enforce).
	ReasonDeviceRevoked Reason = "device_revoked"
)

// ReasonInternalError is a decoder failure that is a bug in drover (a
// recovered panic): the message is kept as a dead letter for a re-drive
// after the fix.
const ReasonInternalError Reason = "internal_error"

// Reasons of the produce stage.
const (
	ReasonProduceFailed Reason = "produce_failed" // Kafka refused the record for good (e.g. too large)
)

// Reasons returns every reason of this package, in the order of the
// reason table in bridge/README.md (a test keeps the list complete).
func Reasons() []Reason {
	return []Reason{
		ReasonEmptyPayload, ReasonPayloadTooLarge, ReasonNotUTF8, ReasonNotJSON, ReasonWrongShape,
		ReasonMissingField, ReasonInvalidTS, ReasonDuplicateKey, ReasonSenMLMissingName, ReasonSenMLInvalidName,
		ReasonSenMLUnknownUnit, ReasonSenMLUnsupported, ReasonEventInvalidName, ReasonEventInvalidSeverity,
		ReasonEventMessageTooLong, ReasonInvalidValue, ReasonOutOfRange, ReasonTSFuture, ReasonTSTooOld,
		ReasonEmptyMetric, ReasonInvalidMetric, ReasonDuplicateTimestamp, ReasonDeviceMismatch, ReasonNoRecords,
		ReasonSchemaInvalid, ReasonInternalError, ReasonUnknownTopic, ReasonUnknownChannel, ReasonBadIdentity,
		ReasonUnknownDevice, ReasonDeviceRevoked, ReasonProduceFailed,
	}
}

// Error is a rejected message: the stage and reason for the dead letter and
// a human-readable message. Field names the offending payload field, if any.
type Error struct {
	Stage   Stage
	Reason  Reason
	Field   string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Stage, e.Reason, e.Message)
}

// fail builds an *Error. The message is passed through Escape and clipped
// to MaxMessage, so whatever device-supplied text a format inserts, a dead
// letter's message never carries a control character, a bidi override or
// invalid UTF-8 to an operator's terminal or a database; quote values
// with quote (or %q) so that they are also visibly delimited.
func fail(stage Stage, reason Reason, field, format string, args ...any) *Error {
	return &Error{Stage: stage, Reason: reason, Field: Escape(clip(field, 128)), Message: clip(Escape(fmt.Sprintf(format, args...)), MaxMessage)}
}
