package decode

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

// fastBases are sensor payloads of the shapes the fast path reads (and a
// few it hands on), from which the syntax test derives malformed ones.
var fastBases = []string{
	`{"ts":1777636740000,"metric":"bench.http","value":12345}`,
	`{"ts":"2026-05-01T11:59:00.5Z","metric":"temperature","value":-38.6e-1,"unit":"Cel","attrs":{"site":"north","fw":"1.2"}}`,
	` { "value" : 0 , "metric" : "t" , "ts" : 1777636740000 , "device_id" : "d" , "device" : null , "unit" : null } `,
	`{"ts":1777636740000,"metric":"t","value":1,"x":[1,{"y":"}"}],"z":"a\"b","w":true}`,
	`{"ts":1777636740000,"metric":"ünï","value":1E2,"attrs":null,"n":null,"f":false}`,
}

// syntaxCases are payloads that probe the fast path's own syntax checks:
// numbers JSON's grammar refuses, broken literals, trailing commas,
// missing colons, trailing data, control characters, escapes.
var syntaxCases = []string{
	`{}`, ` {} `, `{} x`, `{}{}`, `{`, `}`, `{"ts":1777636740000,"metric":"t","value":1}x`,
	`{"ts":1777636740000,"metric":"t","value":1} {}`, `{"ts":1777636740000,"metric":"t","value":1,}`,
	`{"ts":1777636740000,"metric":"t","value":1 "x":1}`, `{"ts":1777636740000,"metric":"t","value"1}`,
	`{"ts":01,"metric":"t","value":1}`, `{"ts":1777636740000,"metric":"t","value":1.}`, `{"ts":1777636740000,"metric":"t","value":.5}`,
	`{"ts":1777636740000,"metric":"t","value":-}`, `{"ts":1777636740000,"metric":"t","value":1e}`, `{"ts":1777636740000,"metric":"t","value":1e+}`,
	`{"ts":1777636740000,"metric":"t","value":+1}`, `{"ts":1777636740000,"metric":"t","value":-0}`, `{"ts":1777636740000,"metric":"t","value":0.0e-0}`,
	`{"ts":1777636740000,"metric":"t","value":1E5}`, `{"ts":1777636740000,"metric":"t","value":00}`, `{"ts":1777636740000,"metric":"t","value":-01}`,
	`{"ts":1777636740000,"metric":"t","value":1.5.5}`, `{"ts":1777636740000,"metric":"t","value":1e5e5}`, `{"ts":1777636740000,"metric":"t","value":0x10}`,
	`{"ts":1777636740000,"metric":"t","value":Infinity}`, `{"ts":1777636740000,"metric":"t","value":NaN}`, `{"ts":1777636740000,"metric":"t","value":-Infinity}`,
	`{"ts":1777636740000,"metric":"t","value":tru}`, `{"ts":1777636740000,"metric":"t","value":nul}`, `{"ts":1777636740000,"metric":"t","value":True}`,
	`{"ts":1777636740000,"metric":"t","value":null}`, `{"ts":1777636740000,"metric":"t","value":true}`, `{"ts":1777636740000,"metric":"t","value":"1"}`,
	`{"ts":1777636740000,"metric":"t","value":1,"x":nulll}`, `{"ts":1777636740000,"metric":"t","value":1,"x":"a` + "\x01" + `"}`,
	`{"ts":"2026-05-01T11:59:00Z` + "\t" + `","metric":"t","value":1}`, `{"ts":"2026-05-01T11:59:00\u005a","metric":"t","value":1}`,
	`{"ts":"2026-05-01T11:59:00Z\","metric":"t","value":1}`, `{"ts":1777636740000,"metric":"t","value":1,"x":"\q"}`,
	`{"ts":1777636740000,"metric":"t","value":1,"x":[1,]}`, `{"ts":1777636740000,"metric":"t","value":1,"x":{"a":1,}}`,
	`{"ts":1777636740000,"metric":"t","value":1,"x":{"a" 1}}`, `{"ts":1777636740000,"metric":"t","value":1,"attrs":{"a":"b",}}`,
	`{"ts":1777636740000,"metric":"t","value":1,"attrs":{"a":1}}`, `{"ts":1777636740000,"metric":"t","value":1,"attrs":{"a":"b"}x}`,
	`{"ts":1777636740000,"metric":"t","value":1,"device_id":"cow-7"}`, `{"ts":1777636740000,"metric":"t","value":1,"device":"other"}`,
	`{"ts":1777636740000,"metric":"t","value":1,"device_id":7}`, `{"ts":1777636740000,"metric":"t","value":1,"device_id":[7]}`,
	`{"ts":1777636740000,"metric":"t","value":1,"device":{"a":1}}`, `{"ts":[1],"metric":"t","value":1}`, `{"ts":{},"metric":"t","value":1}`,
	`{"ts":1777636740000,"metric":"t","value":[1]}`, `{"ts":1777636740000,"metric":"t","value":{"a":1}}`, `{"ts":1777636740000,"metric":"t","value":1e999}`,
	`{"ts":1777636740000,"metric":"t","value":1e-999}`, `{"ts":1777636740,"metric":"t","value":1}`, `{"ts":1777636740000.5,"metric":"t","value":1}`,
	`{"ts":-1e30,"metric":"t","value":1}`, `{"ts":1777636740000,"metric":"t","value":1,"Value":2}`, `{"ts":1777636740000,"metric":"t","value":1,"value":2}`,
	`{"ts":1777636740000,"metric":"t","metric":"u","value":1}`, `{"ts":1777636740000,"metric":"","value":1}`, `{"ts":1777636740000,"metric":"a` + "\u202e" + `","value":1}`,
	`{"ts":1777636740000,"metric":"t","value":1,"unit":""}`, `{"ts":1777636740000,"metric":"t","value":1,"unit":7}`, `{"ts":1777636740000,"metric":7,"value":1}`,
	`{"ts":1777636740000,"measurements":{"a":1,"b":2}}`, `{"ts":1777636740000,"metric":"t","value":1,"tſ":2}`, "{\"ts\":1777636740000,\"metric\":\"t\",\"value\":1,\"\xff\":1}",
	"{\"ts\":1777636740000,\"metric\":\"t\xff\",\"value\":1}", `{"ts":1777636740000,"metric":"t","value":1,"":1}`, `["x"]`, `null`, `1`, `"s"`, ``, ` `,
	"{\"ts\":1777636740000,\r\n\"metric\":\"t\",\t\"value\":1}\n", "{\"ts\":1777636740000,\f\"metric\":\"t\",\"value\":1}", "\v{\"ts\":1}",
}

// syntaxInputs is syntaxCases and, for each base, every payload one byte
// deletion, insertion or replacement away (bytes that matter to JSON's
// syntax and to the fast path's).
func syntaxInputs() []string {
	ins := []byte("{}[]\":,\\ \t\n0159.-+eEtrufalsn\x01\x7f\xc3\xff")
	inputs := append([]string(nil), syntaxCases...)
	for _, base := range fastBases {
		inputs = append(inputs, base)
		for i := 0; i <= len(base); i++ {
			if i < len(base) {
				inputs = append(inputs, base[:i]+base[i+1:])
			}
			for _, c := range ins {
				inputs = append(inputs, base[:i]+string(c)+base[i:])
				if i < len(base) {
					inputs = append(inputs, base[:i]+string(c)+base[i+1:])
				}
			}
		}
	}
	return inputs
}

// decodeBoth decodes payload with the sensor decoder with and without the
// fast path and fails t unless both end alike: the same records (event
// ids, times, values, attrs), or the same refusal (stage, reason, field,
// message).
func decodeBoth(t testing.TB, payload []byte) (accepted bool) {
	t.Helper()
	run := func(fast bool) ([]any, error) {
		sensorFastPath = fast
		defer func() { sensorFastPath = true }()
		in := &Input{Tenant: "farm1", DeviceID: "cow-7", Source: "sensor", Payload: payload, ReceivedAt: now}
		var out Output
		err := Decode(decodeSensor, in, DefaultLimits(), &out)
		recs := make([]any, len(out.Sensor))
		for i := range out.Sensor {
			recs[i] = out.Sensor[i]
		}
		return recs, err
	}
	fr, ferr := run(true)
	sr, serr := run(false)
	var fe, se *Error
	switch {
	case (ferr == nil) != (serr == nil):
		t.Fatalf("%q: fast path %v, general path %v", payload, ferr, serr)
	case ferr != nil && (!errors.As(ferr, &fe) || !errors.As(serr, &se) || *fe != *se):
		t.Fatalf("%q: refusals differ:\nfast    %#v\ngeneral %#v", payload, ferr, serr)
	case ferr == nil && !reflect.DeepEqual(fr, sr):
		t.Fatalf("%q: records differ:\nfast    %+v\ngeneral %+v", payload, fr, sr)
	}
	return ferr == nil
}

// checkFastSyntax fails t when the fast path accepts what encoding/json
// does not parse, or reads it otherwise than encoding/json.
func checkFastSyntax(t testing.TB, b []byte) bool {
	t.Helper()
	var fast sensorJSON
	if !fastSensor(b, &fast) {
		return false
	}
	if !json.Valid(b) {
		t.Fatalf("fast path accepted invalid JSON %q", b)
	}
	var slow sensorJSON
	if err := json.Unmarshal(b, &slow); err != nil {
		t.Fatalf("fast path accepted what encoding/json rejects (%v): %q", err, b)
	}
	if !reflect.DeepEqual(normalise(fast), normalise(slow)) {
		t.Fatalf("fast path differs for %q:\nfast %+v\nslow %+v", b, fast, slow)
	}
	return true
}

// TestSensorFastPathSyntax holds the fast sensor path, which checks JSON
// syntax as it reads instead of running json.Valid first, to the general
// path over valid and malformed payloads: it accepts only valid JSON,
// reads it as encoding/json does, and Decode ends alike with and without
// it — the same records or the same refusal, byte for byte.
func TestSensorFastPathSyntax(t *testing.T) {
	inputs := syntaxInputs()
	fastOK, accepted := 0, 0
	for _, s := range inputs {
		if checkFastSyntax(t, []byte(s)) {
			fastOK++
		}
		if decodeBoth(t, []byte(s)) {
			accepted++
		}
	}
	t.Logf("%d payloads: the fast path read %d, Decode accepted %d", len(inputs), fastOK, accepted)
	// The test means something only if both paths are exercised often.
	if fastOK < 500 || accepted < 200 || len(inputs)-fastOK < 1000 {
		t.Fatalf("too few payloads on one side: %d payloads, fast path read %d, accepted %d", len(inputs), fastOK, accepted)
	}
}

func TestValidNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-1", "10", "1.5", "-0.0", "1e5", "1E+5", "1e-05", "0e0", "123456789012345678901234567890", "0.000"} {
		if !validNumber([]byte(s)) || !json.Valid([]byte(s)) {
			t.Errorf("%q: validNumber %v, json.Valid %v", s, validNumber([]byte(s)), json.Valid([]byte(s)))
		}
	}
	for _, s := range []string{"", "-", "01", "-01", "1.", ".1", "1e", "1e+", "+1", "1.5.5", "1e5e5", "0x1", "1_0", "--1", "1-", "Infinity"} {
		if validNumber([]byte(s)) || json.Valid([]byte(s)) {
			t.Errorf("%q: validNumber %v, json.Valid %v", s, validNumber([]byte(s)), json.Valid([]byte(s)))
		}
	}
}

// FuzzSensorFastPathDecode: for any payload, Decode with the fast sensor
// path ends as without it, and the fast path accepts only valid JSON.
//
//	go test -run '^$' -fuzz FuzzSensorFastPathDecode -fuzztime 60s ./ingest/decode/
func FuzzSensorFastPathDecode(f *testing.F) {
	for _, s := range append(append([]string(nil), fastBases...), syntaxCases...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastSyntax(t, b)
		decodeBoth(t, b)
	})
}

// TestParseFloat holds parseFloat's integer shortcut to strconv.ParseFloat:
// the same value and sign (-0 included), or the same error.
func TestParseFloat(t *testing.T) {
	inputs := []string{"0", "-0", "7", "-7", "00", "-00", "007", "123456789012345", "-123456789012345", "999999999999999",
		"1234567890123456", "9007199254740993", "1777636740000", "-62135596800000", "", "-", "1.5", "1e3", "1_0", "+1", "--1", "12a"}
	r := rand.New(rand.NewPCG(18, 18))
	for range 100000 {
		b := make([]byte, 1+r.IntN(17))
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		if r.IntN(2) == 0 {
			b = append([]byte{'-'}, b...)
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		got, gerr := parseFloat([]byte(s))
		want, werr := strconv.ParseFloat(s, 64)
		if math.Float64bits(got) != math.Float64bits(want) || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Fatalf("parseFloat(%q) = %v, %v; ParseFloat %v, %v", s, got, gerr, want, werr)
		}
	}
}
