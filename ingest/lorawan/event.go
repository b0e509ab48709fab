package lorawan

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
)

// Network is the network server a webhook came from.
type Network string

// The network servers drover reads.
const (
	ChirpStack Network = "chirpstack" // ChirpStack v4, HTTP integration, JSON encoding
	TTS        Network = "tts"        // The Things Stack v3 webhooks
)

// Kind is what an event reports.
type Kind string

// Event kinds. Other events (ChirpStack ack, txack, log, location,
// integration; TTS downlink and service events) are [KindIgnored]: the
// door answers them as accepted and counts them, and they yield no record.
const (
	KindUp      Kind = "up"
	KindJoin    Kind = "join"
	KindStatus  Kind = "status"
	KindIgnored Kind = "ignored"
)

// Rx is one gateway's reception of an uplink.
type Rx struct {
	Gateway string
	RSSI    *float64
	SNR     *float64
}

// Status is a device-status answer (ChirpStack's status event).
type Status struct {
	Margin                  *float64
	ExternalPowerSource     bool
	BatteryLevelUnavailable bool
	BatteryLevel            *float64 // percent
}

// Event is one parsed webhook call.
type Event struct {
	Network Network
	Kind    Kind
	DevEUI  string    // 16 lowercase hex digits
	Time    time.Time // when the network server received the frame (or the join)
	DevAddr string
	FCnt    *uint32
	FPort   *uint32
	Data    []byte          // FRMPayload (raw)
	Object  json.RawMessage // the decoded payload; nil when the device profile has no codec
	Rx      []Rx
	Status  *Status
}

// ParseEUI returns a DevEUI in the registry's form (16 lowercase hex
// digits), or an error.
func ParseEUI(s string) (string, error) {
	if len(s) != 16 {
		return "", fmt.Errorf("DevEUI %q is not 16 hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", fmt.Errorf("DevEUI %q is not 16 hex digits", s)
	}
	return strings.ToLower(s), nil
}

func parseJSON(body []byte, v any, what string) error {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		var se *json.SyntaxError
		if bytesTrimmedEmpty(body) || errorsAs(err, &se) {
			return newErr(decode.StageDecode, decode.ReasonNotJSON, "", "%s body is not JSON: %v", what, err)
		}
		return newErr(decode.StageDecode, decode.ReasonWrongShape, "", "%s body has the wrong shape: %v", what, err)
	}
	if d.More() {
		return newErr(decode.StageDecode, decode.ReasonNotJSON, "", "%s body has data after its JSON object", what)
	}
	return nil
}

func bytesTrimmedEmpty(b []byte) bool { return len(bytes.TrimSpace(b)) == 0 }

func eui(s, field string) (string, error) {
	if s == "" {
		return "", newErr(decode.StageDecode, decode.ReasonMissingField, field, "%s is missing", field)
	}
	e, err := ParseEUI(s)
	if err != nil {
		return "", newErr(decode.StageRoute, decode.ReasonBadIdentity, field, "%v", err)
	}
	return e, nil
}

func rfc3339(s, field string) (time.Time, error) {
	if s == "" {
		return time.Time{}, newErr(decode.StageDecode, decode.ReasonMissingField, field, "%s is missing", field)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, newErr(decode.StageDecode, decode.ReasonInvalidTS, field, "%s %q is not an RFC 3339 time", field, s)
	}
	return t, nil
}

// objectField returns raw when it is a JSON object, nil when absent or null.
func objectField(raw json.RawMessage, field string) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, newErr(decode.StageDecode, decode.ReasonWrongShape, field, "%s is not a JSON object", field)
	}
	return raw, nil
}
