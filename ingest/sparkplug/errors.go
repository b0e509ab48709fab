package sparkplug

import (
	"fmt"
	"strings"

	"github.com/drover-iot/drover/ingest/decode"
)

// Dead-letter reasons of Sparkplug B messages, beside the decode package's.
const (
	// ReasonInvalidTopic: a spBv1.0/ topic that is not a Sparkplug B
	// message drover reads (stage route).
	ReasonInvalidTopic decode.Reason = "sparkplug_invalid_topic"
	// ReasonInvalidPayload: the payload is not a Sparkplug B protobuf
	// Payload, or lacks a field the specification requires (seq; a
	// metric's name or alias).
	ReasonInvalidPayload decode.Reason = "sparkplug_invalid_payload"
	// ReasonNoBirth: a DATA (or DBIRTH, DDEATH) message of an edge node or
	// device with no BIRTH since the door started or since its DEATH.
	ReasonNoBirth decode.Reason = "sparkplug_no_birth"
	// ReasonUnknownAlias: a metric alias the BIRTH certificate did not
	// define.
	ReasonUnknownAlias decode.Reason = "sparkplug_unknown_alias"
)

// Reasons returns the reasons of this package.
func Reasons() []decode.Reason {
	return []decode.Reason{ReasonInvalidTopic, ReasonInvalidPayload, ReasonNoBirth, ReasonUnknownAlias}
}

func newErr(stage decode.Stage, reason decode.Reason, field, format string, args ...any) *decode.Error {
	msg := decode.Escape(fmt.Sprintf(format, args...))
	if len(msg) > decode.MaxMessage {
		msg = strings.ToValidUTF8(msg[:decode.MaxMessage], "")
	}
	return &decode.Error{Stage: stage, Reason: reason, Field: field, Message: msg}
}

func routeErr(reason decode.Reason, format string, args ...any) *decode.Error {
	return newErr(decode.StageRoute, reason, "", format, args...)
}

func decodeErr(reason decode.Reason, field, format string, args ...any) *decode.Error {
	return newErr(decode.StageDecode, reason, field, format, args...)
}
