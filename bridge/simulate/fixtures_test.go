package simulate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/topics"
)

func TestFixturesCoverEveryClassAndForm(t *testing.T) {
	fx := Fixtures()
	seen := map[Class]int{}
	names := map[string]bool{}
	valid := 0
	for _, f := range fx {
		if names[f.Name] {
			t.Errorf("duplicate fixture name %q", f.Name)
		}
		names[f.Name] = true
		if f.Valid {
			valid++
			if f.Class != "" || f.ExpectTopic == topics.DLQ || f.Records < 1 {
				t.Errorf("%s: valid fixture with class %q, expect %q, records %d", f.Name, f.Class, f.ExpectTopic, f.Records)
			}
			continue
		}
		seen[f.Class]++
		if f.ExpectTopic != topics.DLQ {
			t.Errorf("%s: invalid fixture expects %q, want %q", f.Name, f.ExpectTopic, topics.DLQ)
		}
	}
	for _, c := range Classes() {
		if seen[c] == 0 {
			t.Errorf("class %s has no fixture", c)
		}
	}
	if seen[ClassSchemaInvalid] != 0 {
		t.Errorf("schema_invalid must have no fixture")
	}
	for _, kind := range MediaKinds {
		if !names["media/"+kind] {
			t.Errorf("no media fixture for %s", kind)
		}
	}
	if valid < 15 {
		t.Errorf("only %d valid fixtures", valid)
	}
}

// TestFixturesBridgeVerdict feeds every fixture to the bridge's decoders:
// valid ones must decode into the promised number of records for the
// promised topic, invalid ones must be rejected with their class as reason.
func TestFixturesBridgeVerdict(t *testing.T) {
	now := epoch
	for _, f := range FixturesAt(now, FixtureTenant, FixtureDevice) {
		t.Run(f.Name, func(t *testing.T) {
			kt, n, reason, err := bridgeVerdict(t, f.Topic, f.Payload, now)
			if f.Valid {
				if reason != "" {
					t.Fatalf("valid fixture rejected: %s (%v)\npayload %s", reason, err, f.Payload)
				}
				if kt != f.ExpectTopic || n != f.Records {
					t.Fatalf("landed %d records on %s, fixture promises %d on %s", n, kt, f.Records, f.ExpectTopic)
				}
				return
			}
			if string(reason) != string(f.Class) {
				t.Fatalf("rejected with %q (%v), fixture claims %q\npayload %.200s", reason, err, f.Class, f.Payload)
			}
		})
	}
}

// TestFixturesReallyMalformed checks the claims independently of the
// bridge's decoders, by parsing the payloads.
func TestFixturesReallyMalformed(t *testing.T) {
	now := epoch
	for _, f := range FixturesAt(now, FixtureTenant, FixtureDevice) {
		if f.Valid {
			if !json.Valid(f.Payload) || !utf8.Valid(f.Payload) || len(f.Payload) > MaxPayload {
				t.Errorf("%s: valid fixture is not small valid JSON", f.Name)
			}
			continue
		}
		var v any
		jsonErr := json.Unmarshal(f.Payload, &v)
		obj, _ := v.(map[string]any)
		arr, _ := v.([]any)
		ok := true
		switch f.Class {
		case ClassNotJSON:
			ok = utf8.Valid(f.Payload) && len(f.Payload) > 0 && !json.Valid(f.Payload)
		case ClassNotUTF8:
			ok = len(f.Payload) > 0 && !utf8.Valid(f.Payload)
		case ClassEmptyPayload:
			ok = len(f.Payload) == 0
		case ClassWrongShape:
			ok = jsonErr == nil && obj == nil && (arr == nil || strings.HasSuffix(f.Topic, "/gps"))
		case ClassMissingField:
			_, hasTS := obj["ts"]
			_, hasMetric := obj["metric"]
			_, hasValue := obj["value"]
			_, hasLat := obj["lat"]
			_, hasEvent := obj["event"]
			_, hasHz := obj["hz"]
			ok = jsonErr == nil && obj != nil && (!hasTS || (strings.HasSuffix(f.Topic, "/sensor") && (!hasMetric || !hasValue)) ||
				(strings.HasSuffix(f.Topic, "/gps") && !hasLat) || (strings.HasSuffix(f.Topic, "/events") && !hasEvent) ||
				(strings.HasPrefix(f.Topic, "wildfi/") && !hasHz && longArray(obj)))
		case ClassNotFinite:
			// a string, null, "NaN"/"Infinity", or a literal that overflows float64
			ok = bytes.Contains(f.Payload, []byte(`"38.5"`)) || bytes.Contains(f.Payload, []byte(`null`)) ||
				bytes.Contains(f.Payload, []byte(`"NaN"`)) || bytes.Contains(f.Payload, []byte(`"Infinity"`)) ||
				(jsonErr != nil && strings.Contains(jsonErr.Error(), "1e999")) || underflows(obj["value"])
		case ClassOutOfRange:
			lat, _ := obj["lat"].(float64)
			lon, _ := obj["lon"].(float64)
			ok = lat < -90 || lat > 90 || lon < -180 || lon > 180
		case ClassTSFuture, ClassTSPast:
			ts, err := parseAnyTS(obj["ts"])
			ok = err == nil && (f.Class == ClassTSFuture && ts.Sub(now).Hours() > 1 || f.Class == ClassTSPast && now.Sub(ts).Hours() > 24*31)
		case ClassDeviceMismatch:
			id, _ := obj["device_id"].(string)
			ok = id != "" && !strings.Contains(f.Topic, "/"+id+"/")
		case ClassUnknownChannel:
			ok = !strings.HasSuffix(f.Topic, "/sensor") && !strings.HasSuffix(f.Topic, "/gps") && !strings.HasSuffix(f.Topic, "/heartbeat") && !strings.HasSuffix(f.Topic, "/events")
		case ClassTooLarge:
			ok = len(f.Payload) > MaxPayload
		case ClassSenMLUnknownUnit:
			ok = len(arr) > 0 && arr[0].(map[string]any)["u"] == "furlong"
		case ClassEventInvalidName:
			name, _ := obj["event"].(string)
			ok = strings.HasSuffix(f.Topic, "/events") && name != "" && strings.ToLower(name) != name
		case ClassEventInvalidSeverity:
			sev, _ := obj["severity"].(string)
			ok = strings.HasSuffix(f.Topic, "/events") && sev != "" && sev != "info" && sev != "warning" && sev != "critical"
		case ClassEventMessageTooLong:
			msg, _ := obj["message"].(string)
			ok = strings.HasSuffix(f.Topic, "/events") && utf8.RuneCountInString(msg) > 256
		case ClassDuplicateTimestamp:
			ok = sameNameAndTime(arr)
		case ClassDuplicateKey:
			ok = repeatsKey(f.Payload) || strings.HasPrefix(f.Topic, "wildfi/") && obj["ts"] != nil && obj["timestamp"] != nil
		case ClassInvalidMetric:
			m, _ := obj["metric"].(string)
			ok = strings.IndexFunc(m, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0
		case ClassBadIdentity:
			seg := strings.Split(f.Topic, "/")
			ok = len(seg) > 2 && (len(seg[2]) > 128 || strings.IndexFunc(seg[2], func(r rune) bool {
				return !(r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._:-", r)))
			}) >= 0)
		case ClassSenMLMissingName:
			_, hasN := arr[0].(map[string]any)["n"]
			_, hasBN := arr[0].(map[string]any)["bn"]
			ok = len(arr) > 0 && !hasN && !hasBN
		}
		if !ok {
			t.Errorf("%s: payload is not malformed as %s claims: %.120q", f.Name, f.Class, f.Payload)
		}
	}
}

// longArray reports whether a WildFi object has an array of several samples.
func longArray(obj map[string]any) bool {
	for _, v := range obj {
		if a, ok := v.([]any); ok && len(a) > 1 {
			return true
		}
	}
	return false
}

// underflows reports whether v (decoded as float64) is 0 although never
// written as 0: json gives 0 for 1e-400.
func underflows(v any) bool {
	f, ok := v.(float64)
	return ok && f == 0
}

// sameNameAndTime reports whether two elements of a SenML pack or event
// array name the same thing at the same time (no t counts as t = 0).
func sameNameAndTime(arr []any) bool {
	seen := map[string]bool{}
	for _, e := range arr {
		m, _ := e.(map[string]any)
		name, _ := m["n"].(string)
		if ev, ok := m["event"].(string); ok {
			name = ev
		}
		k := fmt.Sprint(name, "@", m["t"], m["ts"])
		if seen[k] {
			return true
		}
		seen[k] = true
	}
	return false
}

// repeatsKey reports whether some object of the JSON document b names a
// key twice, reading b token by token.
func repeatsKey(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.key
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, &frame{keys: map[string]bool{}, object: true, key: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
			if top != nil && top.object && (v == '{' || v == '[') {
				top.key = false // the value is being read; it flips back when it ends
			}
			continue
		case string:
			if isKey {
				if top.keys[v] {
					return true
				}
				top.keys[v] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// TestClassesCoverEveryReason: every reason the bridge's decoders and
// routes give has a class, so `drover simulate fixtures` and the smoke
// suite exercise it; the exceptions are reasons no device can provoke.
func TestClassesCoverEveryReason(t *testing.T) {
	noDevice := map[decode.Reason]bool{
		decode.ReasonSchemaInvalid: true, // documented payloads always encode (ClassSchemaInvalid)
		decode.ReasonInternalError: true, // a bug in drover
		decode.ReasonProduceFailed: true, // Kafka refusing a record
		// The registry's reasons: a broker that enforces the registry
		// refuses such a device first; bridge/admission_test.go provokes
		// them behind an open broker.
		decode.ReasonUnknownDevice: true,
		decode.ReasonDeviceRevoked: true,
	}
	classes := map[Class]bool{}
	for _, c := range Classes() {
		classes[c] = true
	}
	for _, r := range decode.Reasons() {
		if !noDevice[r] && !classes[Class(r)] {
			t.Errorf("reason %s has no fixture class", r)
		}
	}
}
