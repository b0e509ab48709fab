package decode

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Device events arrive on devices/{tenant}/{device_id}/events: discrete
// things that happened (tamper, collar_removed, button, door_open), not
// measurements. One JSON object, or an array of objects (several events in
// one message):
//
//	{"ts": 1777636800000, "event": "tamper", "severity": "warning",
//	 "message": "case opened", "value": 1, "attrs": {"zone": "b"}}
//
// Each event becomes one raw.sensor reading with metric "event.<name>",
// value (default 1), attrs["severity"] (default info) and attrs["message"]
// (when given), so the sink stores it in sensor_readings, threshold rules
// can fire on it and the state group keeps the last one.

// Event payload limits.
const (
	// MaxEventName is the longest event name, in bytes.
	MaxEventName = 64
	// MaxEventMessage is the longest event message, in characters.
	MaxEventMessage = 256
	// EventMetricPrefix prefixes an event's name to form its metric.
	EventMetricPrefix = "event."
	// DefaultEventSeverity is the severity of an event that names none.
	DefaultEventSeverity = "info"
)

// EventSeverities are the accepted event severities, lowest first (the
// alert rules' severities).
func EventSeverities() []string { return []string{"info", "warning", "critical"} }

type eventJSON struct {
	TS       json.RawMessage   `json:"ts"`
	Event    *string           `json:"event"`
	Value    json.RawMessage   `json:"value"`
	Unit     *string           `json:"unit"`
	Severity *string           `json:"severity"`
	Message  *string           `json:"message"`
	DeviceID json.RawMessage   `json:"device_id"`
	Device   json.RawMessage   `json:"device"`
	Attrs    map[string]string `json:"attrs"`
}

// decodeEvent accepts one event object or a non-empty array of them.
func decodeEvent(in *Input, out *Output) error {
	b := bytes.TrimLeft(in.Payload, " \t\r\n")
	if len(b) == 0 || b[0] != '[' {
		return decodeOneEvent(in, in.Payload, 0, false, out)
	}
	var elems []json.RawMessage
	if err := unmarshal(in.Payload, &elems, "event"); err != nil {
		return err
	}
	if len(elems) == 0 {
		return fail(StageValidate, ReasonNoRecords, "", "event array is empty")
	}
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		if len(e) == 0 || e[0] != '{' {
			return fail(StageDecode, ReasonWrongShape, elemField(i, ""), "event %d of the array is %s, want an object", i, jsonElemKind(e))
		}
		if err := decodeOneEvent(in, e, i, true, out); err != nil {
			return err
		}
	}
	return nil
}

func jsonElemKind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch c := raw[0]; {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	}
	return "a number"
}

// elemField names field of array element i: "[i].field".
func elemField(i int, field string) string {
	p := "[" + strconv.Itoa(i) + "]"
	if field == "" {
		return p
	}
	return p + "." + field
}

func decodeOneEvent(in *Input, raw []byte, index int, inArray bool, out *Output) error {
	err := decodeEventObject(in, raw, index, out)
	if err == nil || !inArray {
		return err
	}
	// Name the array element in the dead letter.
	if de, ok := err.(*Error); ok {
		de.Field = elemField(index, de.Field)
		de.Message = "event " + strconv.Itoa(index) + " of the array: " + de.Message
	}
	return err
}

func decodeEventObject(in *Input, raw []byte, index int, out *Output) error {
	var p eventJSON
	if err := unmarshal(raw, &p, "event"); err != nil {
		return err
	}
	if err := checkKeys(raw, &eventKeys); err != nil {
		return err
	}
	if err := checkDevice(in, p.DeviceID, p.Device); err != nil {
		return err
	}
	ts, err := parseTS(p.TS, "ts")
	if err != nil {
		return err
	}
	if p.Event == nil || strings.TrimSpace(*p.Event) == "" {
		return fail(StageDecode, ReasonMissingField, "event", "event (the event's name, e.g. \"tamper\") is missing or empty")
	}
	name := *p.Event
	if err := checkEventName(name); err != nil {
		return err
	}
	value := 1.0
	v, err := parseOptNumber(p.Value, "value")
	if err != nil {
		return err
	}
	if v != nil {
		value = *v
	}
	severity := DefaultEventSeverity
	if p.Severity != nil && *p.Severity != "" {
		severity = *p.Severity
		ok := false
		for _, s := range EventSeverities() {
			ok = ok || s == severity
		}
		if !ok {
			return fail(StageDecode, ReasonEventInvalidSeverity, "severity", "severity %q is not one of info, warning, critical", clip(severity, 64))
		}
	}
	attrs := cloneAttrs(p.Attrs)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["severity"] = severity
	if p.Message != nil && *p.Message != "" {
		if n := utf8.RuneCountInString(*p.Message); n > MaxEventMessage {
			return fail(StageDecode, ReasonEventMessageTooLong, "message", "message is %d characters, limit %d", n, MaxEventMessage)
		}
		attrs["message"] = *p.Message
	}
	metric := EventMetricPrefix + name
	out.addSensor(in, metric, value, optString(p.Unit), ts, index, attrs)
	return nil
}

// checkEventName accepts 1-64 bytes of [a-z0-9_.-] starting with a letter
// or digit.
func checkEventName(name string) error {
	if len(name) > MaxEventName {
		return fail(StageDecode, ReasonEventInvalidName, "event", "event name %q is %d bytes, limit %d", clip(name, 80), len(name), MaxEventName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return fail(StageDecode, ReasonEventInvalidName, "event",
				"event name %q: character %q at offset %d is not allowed (lower-case letters, digits, and _ . - after the first character)",
				clip(name, 80), firstRune(name[i:]), i)
		}
	}
	return nil
}

func firstRune(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return s[:1]
	}
	return string(r)
}
