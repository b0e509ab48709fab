package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// unmarshal decodes a JSON payload into v and maps failures to reasons:
// syntax errors are not_json, type mismatches wrong_shape.
func unmarshal(b []byte, v any, what string) error {
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fail(StageDecode, ReasonNotJSON, "", "payload is not JSON: %v (offset %d)", se, se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fail(StageDecode, ReasonWrongShape, "", "%s payload must be %s, got a JSON %s", what, expectedShape(v), te.Value)
		}
		return fail(StageDecode, ReasonWrongShape, te.Field, "field %q: JSON %s where %s is expected", te.Field, te.Value, goTypeName(te.Type.String()))
	}
	// Truncated documents (unexpected EOF) and the like.
	return fail(StageDecode, ReasonNotJSON, "", "payload is not JSON: %v", err)
}

func expectedShape(v any) string {
	switch v.(type) {
	case *[]map[string]json.RawMessage, *[]json.RawMessage:
		return "a JSON array of objects"
	}
	return "a JSON object"
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "map["):
		return "an object"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case t == "string" || t == "*string":
		return "a string"
	case strings.Contains(t, "float") || strings.Contains(t, "int"):
		return "a number"
	case t == "bool" || t == "*bool":
		return "a boolean"
	}
	return t
}

// isNull reports whether a raw JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// parseTS parses ts: an RFC 3339 string or a number of epoch milliseconds,
// in the years 0001-9999.
func parseTS(raw json.RawMessage, field string) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return time.Time{}, fail(StageDecode, ReasonMissingField, field, "%s is missing", field)
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fail(StageDecode, ReasonInvalidTS, field, "%s: %v", field, err)
		}
		t, err := parseRFC3339(s)
		if err != nil {
			return time.Time{}, fail(StageDecode, ReasonInvalidTS, field, "%s %s is not an RFC 3339 time (e.g. 2026-05-01T12:00:00Z) or epoch milliseconds%s", field, quote(s, 64), err)
		}
		t = t.UTC().Truncate(time.Millisecond)
		if t.Before(minTS) || t.After(maxTS) {
			return time.Time{}, fail(StageDecode, ReasonInvalidTS, field, "%s %s is %s in UTC, outside the years 0001-9999", field, quote(s, 64), t.Format(time.RFC3339Nano))
		}
		return t, nil
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := parseFloat(raw)
		if err != nil || f < float64(minTS.UnixMilli()) || f > float64(maxTS.UnixMilli()) {
			return time.Time{}, fail(StageDecode, ReasonInvalidTS, field, "%s %s is not epoch milliseconds in the years 0001-9999 (%d to %d)", field, clip(string(raw), 64), minTS.UnixMilli(), maxTS.UnixMilli())
		}
		return time.UnixMilli(int64(math.Floor(f))).UTC(), nil
	case string(raw) == "null":
		return time.Time{}, fail(StageDecode, ReasonMissingField, field, "%s is null", field)
	}
	return time.Time{}, fail(StageDecode, ReasonInvalidTS, field, "%s must be an RFC 3339 string or epoch milliseconds, got %s", field, clip(string(raw), 64))
}

// rfc3339Error says what is wrong with a time that has the RFC 3339 shape;
// it renders as " (why)", or nothing.
type rfc3339Error string

func (e rfc3339Error) Error() string {
	if e == "" {
		return ""
	}
	return " (" + string(e) + ")"
}

// parseRFC3339 parses an RFC 3339 time as time.Parse does, with two
// corrections towards the RFC: a leap second (second 60, which Go refuses)
// is taken as the first instant of the next minute, as PostgreSQL takes
// it; an offset of 24 hours or more (which Go accepts) is refused.
func parseRFC3339(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && len(s) > 19 && s[16] == ':' && s[17:19] == "60" {
		if t2, err2 := time.Parse(time.RFC3339Nano, s[:17]+"59"+s[19:]); err2 == nil {
			t, err = t2.Add(time.Second), nil
		}
	}
	if err != nil {
		var pe *time.ParseError
		if errors.As(err, &pe) && pe.Message != "" {
			return t, rfc3339Error(strings.TrimPrefix(pe.Message, ": "))
		}
		return t, rfc3339Error("")
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return t, rfc3339Error("offset of 24 hours or more")
	}
	return t, nil
}

// parseNumber parses a required finite number.
func parseNumber(raw json.RawMessage, field string) (float64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, fail(StageDecode, ReasonMissingField, field, "%s is missing", field)
	}
	return numberValue(raw, field)
}

// parseOptNumber parses an optional finite number (absent or null = nil).
func parseOptNumber(raw json.RawMessage, field string) (*float64, error) {
	if isNull(raw) {
		return nil, nil
	}
	f, err := numberValue(bytes.TrimSpace(raw), field)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

func numberValue(raw json.RawMessage, field string) (float64, error) {
	switch c := raw[0]; {
	case c == '-' || (c >= '0' && c <= '9'):
		f, err := parseFloat(raw)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return 0, fail(StageValidate, ReasonInvalidValue, field, "%s %s overflows a 64-bit float (Infinity)", field, clip(string(raw), 64))
			}
			return 0, fail(StageDecode, ReasonNotJSON, field, "%s %s is not a JSON number", field, clip(string(raw), 64))
		}
		if f == 0 && !zeroDigits(raw) {
			return 0, fail(StageValidate, ReasonInvalidValue, field, "%s %s underflows a 64-bit float (it would be stored as 0)", field, clip(string(raw), 64))
		}
		return f, nil
	case c == '"':
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is a string (%s), not a finite number", field, clip(string(raw), 64))
	case string(raw) == "null":
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is null, not a finite number", field)
	case c == 't' || c == 'f':
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is a boolean, not a finite number", field)
	}
	return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is %s, not a finite number", field, jsonKind(raw))
}

// parseFloat is strconv.ParseFloat(string(num), 64), with a shortcut for
// the common case of an integer of at most 15 digits (an optional minus
// sign, then digits only), which a float64 holds exactly: the same value,
// -0 included, without the general parser (TestParseFloat).
func parseFloat(num []byte) (float64, error) {
	digits := num
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return strconv.ParseFloat(string(num), 64)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return strconv.ParseFloat(string(num), 64)
		}
		n = n*10 + int64(c-'0')
	}
	f := float64(n)
	if len(digits) < len(num) {
		f = -f // -0 for "-0", as ParseFloat
	}
	return f, nil
}

// zeroDigits reports whether the JSON number num has only zeros before its
// exponent: it means 0, and parsing it as 0 is no underflow.
func zeroDigits(num []byte) bool {
	for _, c := range num {
		switch {
		case c == 'e' || c == 'E':
			return true
		case c >= '1' && c <= '9':
			return false
		}
	}
	return true
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "not a number"
}

// checkDevice rejects a payload whose device_id or device field names
// another device than the topic.
func checkDevice(in *Input, fields ...json.RawMessage) error {
	names := [...]string{"device_id", "device"}
	for i, raw := range fields {
		if isNull(raw) {
			continue
		}
		raw = bytes.TrimSpace(raw)
		var got string
		if raw[0] == '"' {
			if err := json.Unmarshal(raw, &got); err != nil {
				return fail(StageDecode, ReasonWrongShape, names[i%2], "%s: %v", names[i%2], err)
			}
		} else {
			got = string(raw)
		}
		if err := checkNamedDevice(in, names[i%2], got); err != nil {
			return err
		}
	}
	return nil
}

// checkNamedDevice checks a device id a payload names in field: it must
// be a well-formed id (invalid_identity) and the topic's (device_mismatch).
func checkNamedDevice(in *Input, field, got string) error {
	if err := identity.ValidDevice(got); err != nil {
		return fail(StageValidate, ReasonBadIdentity, field, "payload field %s: %v", field, err)
	}
	if got != in.DeviceID {
		return fail(StageValidate, ReasonDeviceMismatch, field, "payload names device %s but the topic is for device %s", quote(got, 128), quote(in.DeviceID, 128))
	}
	return nil
}

func optString(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	v := *s
	return &v
}

// --- sensor ---

type sensorJSON struct {
	TS           json.RawMessage            `json:"ts"`
	Metric       *string                    `json:"metric"`
	Value        json.RawMessage            `json:"value"`
	Unit         *string                    `json:"unit"`
	Measurements map[string]json.RawMessage `json:"measurements"`
	Units        map[string]string          `json:"units"`
	DeviceID     json.RawMessage            `json:"device_id"`
	Device       json.RawMessage            `json:"device"`
	Attrs        map[string]string          `json:"attrs"`
}

// sensorFastPath is false only in the tests that hold the fast path to
// the general one.
var sensorFastPath = true

// decodeSensor accepts {"ts","metric","value","unit"?}, {"ts",
// "measurements":{name: value}, "units"?} or a SenML array.
func decodeSensor(in *Input, out *Output) error {
	if b := bytes.TrimLeft(in.Payload, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		return decodeSenML(in, out)
	}
	var p sensorJSON   // on the stack: only the general path's copy escapes
	var fs fastStrings // the metric (and unit) as read, p.Metric and p.Unit nil
	if !sensorFastPath || !fastSensorInto(in.Payload, &p, &fs) {
		slow := new(sensorJSON)
		if err := unmarshal(in.Payload, slow, "sensor"); err != nil {
			return err
		}
		if err := checkKeys(in.Payload, &sensorKeys); err != nil {
			return err
		}
		p = *slow
		fs = fastStrings{}
		if p.Metric != nil {
			fs.metric, fs.hasMetric = *p.Metric, true
		}
	} else if fs.hasUnit {
		u := fs.unit
		p.Unit = &u
	}
	if err := checkDevice(in, p.DeviceID, p.Device); err != nil {
		return err
	}
	ts, err := parseTS(p.TS, "ts")
	if err != nil {
		return err
	}
	if p.Measurements != nil {
		if fs.hasMetric || len(p.Value) > 0 {
			return fail(StageDecode, ReasonWrongShape, "measurements", "give either metric and value or measurements, not both")
		}
		if len(p.Measurements) == 0 {
			return fail(StageValidate, ReasonNoRecords, "measurements", "measurements is empty")
		}
		for i, name := range sortedKeys(p.Measurements) {
			v, err := parseNumber(p.Measurements[name], "measurements."+name)
			if err != nil {
				return err
			}
			var unit *string
			if u, ok := p.Units[name]; ok && u != "" {
				unit = &u
			}
			out.addSensor(in, name, v, unit, ts, i, cloneAttrs(p.Attrs))
		}
		return nil
	}
	if !fs.hasMetric {
		return fail(StageDecode, ReasonMissingField, "metric", "metric is missing (or give measurements)")
	}
	v, err := parseNumber(p.Value, "value")
	if err != nil {
		return err
	}
	unit := p.Unit // decoded for this reading alone: kept, not copied (optString's copy)
	if unit != nil && *unit == "" {
		unit = nil
	}
	out.addSensor(in, fs.metric, v, unit, ts, 0, p.Attrs)
	return nil
}

// cloneAttrs copies m (nil when empty: Avro writes a nil map as {}).
func cloneAttrs(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// --- gps ---

type gpsJSON struct {
	TS         json.RawMessage   `json:"ts"`
	Lat        json.RawMessage   `json:"lat"`
	Lon        json.RawMessage   `json:"lon"`
	Alt        json.RawMessage   `json:"alt"`
	HDOP       json.RawMessage   `json:"hdop"`
	Satellites json.RawMessage   `json:"satellites"`
	Speed      json.RawMessage   `json:"speed"`
	DeviceID   json.RawMessage   `json:"device_id"`
	Device     json.RawMessage   `json:"device"`
	Attrs      map[string]string `json:"attrs"`
}

func decodeGPS(in *Input, out *Output) error {
	var p gpsJSON
	if err := unmarshal(in.Payload, &p, "gps"); err != nil {
		return err
	}
	if err := checkKeys(in.Payload, &gpsKeys); err != nil {
		return err
	}
	if err := checkDevice(in, p.DeviceID, p.Device); err != nil {
		return err
	}
	ts, err := parseTS(p.TS, "ts")
	if err != nil {
		return err
	}
	fix, err := gpsFix(in, ts, p.Lat, p.Lon, p.Alt, p.HDOP, p.Satellites, p.Speed)
	if err != nil {
		return err
	}
	if p.Attrs != nil {
		fix.Attrs = p.Attrs
	}
	out.GPS = append(out.GPS, fix)
	return nil
}

func gpsFix(in *Input, ts time.Time, lat, lon, alt, hdop, sats, speed json.RawMessage) (schemas.GPSFix, error) {
	var fix schemas.GPSFix
	var err error
	if fix.Lat, err = parseNumber(lat, "lat"); err != nil {
		return fix, err
	}
	if fix.Lon, err = parseNumber(lon, "lon"); err != nil {
		return fix, err
	}
	if fix.Alt, err = parseOptNumber(alt, "alt"); err != nil {
		return fix, err
	}
	if fix.HDOP, err = parseOptNumber(hdop, "hdop"); err != nil {
		return fix, err
	}
	if fix.HDOP != nil && *fix.HDOP < 0 {
		return fix, fail(StageValidate, ReasonInvalidValue, "hdop", "hdop %v is negative", *fix.HDOP)
	}
	if fix.Speed, err = parseOptNumber(speed, "speed"); err != nil {
		return fix, err
	}
	if fix.Speed != nil && *fix.Speed < 0 {
		return fix, fail(StageValidate, ReasonInvalidValue, "speed", "speed %v is negative", *fix.Speed)
	}
	s, err := parseOptNumber(sats, "satellites")
	if err != nil {
		return fix, err
	}
	if s != nil {
		if *s < 0 || *s > 1024 || *s != math.Trunc(*s) {
			return fix, fail(StageValidate, ReasonInvalidValue, "satellites", "satellites %v is not a count", *s)
		}
		n := int32(*s)
		fix.Satellites = &n
	}
	fix.EventID = in.EventID("gps", ts, 0)
	fix.Tenant, fix.DeviceID, fix.TS, fix.IngestedAt, fix.Source = in.Tenant, in.DeviceID, ts, in.ReceivedAt, in.Source
	fix.Attrs = map[string]string{}
	return fix, nil
}

// --- media ---

type mediaJSON struct {
	TS          json.RawMessage   `json:"ts"`
	Bucket      *string           `json:"bucket"`
	Key         *string           `json:"key"`
	Size        json.RawMessage   `json:"size"`
	ContentType *string           `json:"content_type"`
	SHA256      *string           `json:"sha256"`
	ETag        *string           `json:"etag"`
	DeviceID    json.RawMessage   `json:"device_id"`
	Device      json.RawMessage   `json:"device"`
	Attrs       map[string]string `json:"attrs"`
}

// MediaKinds returns the media kinds the media decoder accepts.
func MediaKinds() []string { return []string{"image2d", "image3d", "video2d", "video3d"} }

func decodeMedia(in *Input, out *Output) error {
	known := false
	for _, k := range MediaKinds() {
		known = known || k == in.Kind
	}
	if !known {
		return fail(StageRoute, ReasonUnknownChannel, "", "unknown media kind %q (want image2d, image3d, video2d or video3d)", clip(in.Kind, 64))
	}
	var p mediaJSON
	if err := unmarshal(in.Payload, &p, "media"); err != nil {
		return err
	}
	if err := checkKeys(in.Payload, &mediaKeys); err != nil {
		return err
	}
	if err := checkDevice(in, p.DeviceID, p.Device); err != nil {
		return err
	}
	ts, err := parseTS(p.TS, "ts")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"bucket", p.Bucket}, {"key", p.Key}, {"content_type", p.ContentType}} {
		if f.v == nil || strings.TrimSpace(*f.v) == "" {
			return fail(StageDecode, ReasonMissingField, f.name, "%s is missing or empty", f.name)
		}
	}
	size, err := parseNumber(p.Size, "size")
	if err != nil {
		return err
	}
	if size < 0 || size != math.Trunc(size) || size > 1<<53 {
		return fail(StageValidate, ReasonInvalidValue, "size", "size %v is not a byte count", size)
	}
	if p.SHA256 != nil && !isHex(*p.SHA256, 64) {
		return fail(StageValidate, ReasonInvalidValue, "sha256", "sha256 %q is not 64 hexadecimal digits", clip(*p.SHA256, 80))
	}
	attrs := p.Attrs
	if attrs == nil {
		attrs = map[string]string{}
	}
	out.Media = append(out.Media, schemas.MediaObject{
		EventID:     in.EventID(*p.Bucket+"/"+*p.Key, ts, 0),
		Tenant:      in.Tenant,
		DeviceID:    in.DeviceID,
		TS:          ts,
		IngestedAt:  in.ReceivedAt,
		Kind:        in.Kind,
		Bucket:      *p.Bucket,
		Key:         *p.Key,
		Size:        int64(size),
		ContentType: *p.ContentType,
		SHA256:      optString(p.SHA256),
		ETag:        optString(p.ETag),
		Attrs:       attrs,
	})
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// --- heartbeat ---

type heartbeatJSON struct {
	TS       json.RawMessage   `json:"ts"`
	Battery  json.RawMessage   `json:"battery"`
	RSSI     json.RawMessage   `json:"rssi"`
	Uptime   json.RawMessage   `json:"uptime"`
	Firmware *string           `json:"firmware"`
	DeviceID json.RawMessage   `json:"device_id"`
	Device   json.RawMessage   `json:"device"`
	Attrs    map[string]string `json:"attrs"`
}

// heartbeatMetric is the metric of the record that marks a heartbeat.
const heartbeatMetric = "heartbeat"

func decodeHeartbeat(in *Input, out *Output) error {
	var p heartbeatJSON
	if err := unmarshal(in.Payload, &p, "heartbeat"); err != nil {
		return err
	}
	if err := checkKeys(in.Payload, &beatKeys); err != nil {
		return err
	}
	if err := checkDevice(in, p.DeviceID, p.Device); err != nil {
		return err
	}
	ts, err := parseTS(p.TS, "ts")
	if err != nil {
		return err
	}
	attrs := cloneAttrs(p.Attrs)
	if p.Firmware != nil && *p.Firmware != "" {
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["firmware"] = *p.Firmware
	}
	out.addSensor(in, heartbeatMetric, 1, nil, ts, 0, attrs)
	for i, f := range []struct {
		name, unit string
		raw        json.RawMessage
	}{{"battery", "%", p.Battery}, {"rssi", "dBm", p.RSSI}, {"uptime", "s", p.Uptime}} {
		v, err := parseOptNumber(f.raw, f.name)
		if err != nil {
			return err
		}
		if v == nil {
			continue
		}
		unit := f.unit
		out.addSensor(in, f.name, *v, &unit, ts, i+1, cloneAttrs(p.Attrs))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	return keys
}
