package ingesttest

import (
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
)

// Case is one bad input: a payload on a device channel and the dead-letter
// reason every door must give it — the reason the MQTT bridge gives the
// same payload on devices/{tenant}/{device}/{channel}.
type Case struct {
	Name    string
	Device  string // "" = Registered
	Channel string
	Payload string
	Reason  decode.Reason
	// DoorMayRefuse marks a case a door may refuse itself before the core
	// sees it (over its size limit; a device that cannot authenticate):
	// the answer carries the reason, but there is no dead letter (the door
	// counts it), so an unauthenticated client cannot fill the dead-letter
	// topic.
	DoorMayRefuse bool
}

// Tenant and Registered are the tenant and the registered, active device
// the cases post as; Revoked is a registered device that is revoked.
const (
	Tenant     = "farm"
	Registered = "collar-1"
	Revoked    = "collar-old"
	Unknown    = "collar-ghost"
)

// BadInputs is the table of bad inputs every door is tested with (the
// MQTT bridge included: bridge's TestIntegrationBridgeSharedBadInputs).
// Payloads carry the current time, so only the fault named fails them.
func BadInputs() []Case {
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	return []Case{
		{Name: "empty", Channel: "sensor", Payload: "", Reason: decode.ReasonEmptyPayload},
		{Name: "not utf-8", Channel: "sensor", Payload: "\xff\xfe{}", Reason: decode.ReasonNotUTF8},
		{Name: "not json", Channel: "sensor", Payload: "{nope", Reason: decode.ReasonNotJSON},
		{Name: "duplicate key", Channel: "sensor", Payload: `{"metric":"t","metric":"u","value":1}`, Reason: decode.ReasonDuplicateKey},
		{Name: "value not a number", Channel: "sensor", Payload: `{"metric":"t","value":"hot","ts":` + ts + `}`, Reason: decode.ReasonInvalidValue},
		{Name: "ts in epoch seconds", Channel: "sensor", Payload: `{"metric":"t","value":1,"ts":1700000000}`, Reason: decode.ReasonTSTooOld},
		{Name: "latitude out of range", Channel: "gps", Payload: `{"lat":91,"lon":8,"ts":` + ts + `}`, Reason: decode.ReasonOutOfRange},
		{Name: "another device in the payload", Channel: "sensor", Payload: `{"device_id":"someone-else","metric":"t","value":1,"ts":` + ts + `}`, Reason: decode.ReasonDeviceMismatch},
		{Name: "unknown channel", Channel: "nosuch", Payload: `{"metric":"t","value":1,"ts":` + ts + `}`, Reason: decode.ReasonUnknownChannel},
		{Name: "unknown device", Device: Unknown, Channel: "sensor", Payload: `{"metric":"t","value":1,"ts":` + ts + `}`, Reason: ingest.ReasonUnknownDevice, DoorMayRefuse: true},
		{Name: "revoked device", Device: Revoked, Channel: "sensor", Payload: `{"metric":"t","value":1,"ts":` + ts + `}`, Reason: ingest.ReasonDeviceRevoked, DoorMayRefuse: true},
		{Name: "too large", Channel: "sensor", Payload: `{"metric":"t","value":1,"pad":"` + strings.Repeat("x", decode.DefaultMaxPayload) + `"}`,
			Reason: decode.ReasonPayloadTooLarge, DoorMayRefuse: true},
	}
}
