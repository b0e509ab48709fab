package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
)

// Message is one payload a door received for a device channel.
type Message struct {
	Door string // "mqtt", "http", "coap", "lorawan", "sparkplug": metrics and dead letters name it
	// Tenant and Device are the identity the door established. Both are
	// empty for a network server's webhook (Door "lorawan"), whose body
	// names the device by DevEUI: the core resolves it in the registry.
	Tenant  string
	Device  string
	Channel string // "sensor", "gps", "media/image2d", ... as on MQTT
	Payload []byte
	// ReceivedAt becomes the records' ingested_at.
	ReceivedAt time.Time
	// Authenticated is set when the door verified the client as
	// Tenant/Device (secret, certificate, PSK); the core then still checks
	// that the device is registered and active.
	Authenticated bool
}

// ErrUnavailable is wrapped by an Ingest error that means "not now, retry
// later": the in-flight bound is reached, or Kafka did not acknowledge in
// time. Nothing was acknowledged, so the client must send again.
var ErrUnavailable = errors.New("ingest unavailable")

// Kind classifies the result of an Ingest call for a door's answer.
type Kind int

// The kinds of result.
const (
	Accepted        Kind = iota // Kafka acknowledged the records
	Refused                     // the payload was refused; its dead letter is written
	TooLarge                    // refused as over the size limit
	Unauthenticated             // unknown device
	Forbidden                   // suspended or revoked device, or another device's credentials
	Unavailable                 // retry later
	Internal                    // a bug or an unexpected failure
)

// Reasons of the identity checks, as the MQTT bridge writes them.
const (
	ReasonUnknownDevice    decode.Reason = "unknown_device"
	ReasonDeviceRevoked    decode.Reason = "device_revoked"
	ReasonIdentityMismatch decode.Reason = "identity_mismatch" // a door's credentials name another device
	ReasonUnavailable      decode.Reason = "unavailable"
)

// Outcome is what a door tells its client about one message.
type Outcome struct {
	Kind    Kind   `json:"-"`
	Reason  string `json:"reason,omitempty"`
	Stage   string `json:"stage,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message,omitempty"`
}

// Classify turns the error of an Ingest call into the answer's outcome.
func Classify(err error) Outcome {
	if err == nil {
		// Before de: errors.As moves it to the heap, an allocation per
		// accepted message otherwise.
		return Outcome{Kind: Accepted}
	}
	var de *decode.Error
	switch {
	case errors.As(err, &de):
		k := Refused
		if de.Reason == decode.ReasonPayloadTooLarge {
			k = TooLarge
		}
		if de.Reason == ReasonUnknownDevice {
			k = Unauthenticated
		}
		if de.Reason == ReasonDeviceRevoked || de.Reason == ReasonIdentityMismatch {
			k = Forbidden
		}
		return Outcome{Kind: k, Reason: string(de.Reason), Stage: string(de.Stage), Field: de.Field, Message: de.Message}
	case errors.Is(err, registry.ErrUnknownDevice):
		return Outcome{Kind: Unauthenticated, Reason: string(ReasonUnknownDevice), Message: err.Error()}
	case errors.Is(err, registry.ErrDeviceInactive):
		return Outcome{Kind: Forbidden, Reason: string(ReasonDeviceRevoked), Message: err.Error()}
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return Outcome{Kind: Unavailable, Reason: string(ReasonUnavailable), Message: "Kafka has not acknowledged; retry later"}
	}
	return Outcome{Kind: Internal, Reason: string(decode.ReasonInternalError), Message: "internal error"}
}
