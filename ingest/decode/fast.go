package decode

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The sensor channel carries most of the traffic, and encoding/json's
// reflection was a quarter of the bridge's CPU time. fastSensor decodes the
// common flat form ({"ts", "metric", "value", "unit", "device_id", "device",
// "attrs": {string: string}} with plain strings) without reflection and
// gives up (ok = false) on anything else — escapes, non-ASCII or
// differently-cased keys, duplicates, measurements, other value types — so
// that the general path decides, with its error messages. A differential
// fuzz test (FuzzSensorFastPath) checks that whenever it succeeds its result
// equals encoding/json's.
//
// It checks the syntax of what it reads as it goes (keys and strings
// without escapes, numbers by JSON's grammar, the literals, the flat attrs
// object), so a payload made only of those is known valid JSON when the
// scan ends; only one with another value (an escaped string, an object or
// array under an unknown key) is handed to json.Valid as a whole, which the
// scan used to do for every payload first. TestSensorFastPathSyntax holds
// it to encoding/json over valid and malformed payloads.

// sensorFields are sensorJSON's JSON names. encoding/json matches keys case
// insensitively, so a key that folds to one of these without being it must
// take the general path.
var sensorFields = []string{"ts", "metric", "value", "unit", "measurements", "units", "device_id", "device", "attrs"}

var sensorFieldBytes = func() [][]byte {
	b := make([][]byte, len(sensorFields))
	for i, f := range sensorFields {
		b[i] = []byte(f)
	}
	return b
}()

func fastSensor(b []byte, p *sensorJSON) bool {
	var fs fastStrings
	if !fastSensorInto(b, p, &fs) {
		return false
	}
	if fs.hasMetric {
		m := fs.metric
		p.Metric = &m
	}
	if fs.hasUnit {
		u := fs.unit
		p.Unit = &u
	}
	return true
}

// fastStrings are the metric and unit fastSensorInto reads (has* false
// for an absent or null one): decodeSensor reads the metric in place
// instead of through a *string, which would be an allocation per reading
// of its own.
type fastStrings struct {
	metric, unit       string
	hasMetric, hasUnit bool
}

// fastSensorInto is fastSensor with the metric and unit in fs, p.Metric
// and p.Unit left nil.
func fastSensorInto(b []byte, p *sensorJSON, fs *fastStrings) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	seen := 0       // bit per sensorFields index
	checked := true // every value read so far is known valid JSON
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for i < len(b) {
		key, next, ok := plainBytes(b, i) // compared, never kept: no copy
		if !ok {
			return false
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		end := skipValue(b, i)
		if end < 0 {
			return false
		}
		val := b[i:end]
		// The field a key names exactly (the names differ even folded, so
		// no other can match it); failing that, a key that folds to one
		// must take the general path.
		field := -1
		switch string(key) {
		case "ts":
			field = 0
		case "metric":
			field = 1
		case "value":
			field = 2
		case "unit":
			field = 3
		case "measurements":
			field = 4
		case "units":
			field = 5
		case "device_id":
			field = 6
		case "device":
			field = 7
		case "attrs":
			field = 8
		default:
			for k := range sensorFields {
				if bytes.EqualFold(key, sensorFieldBytes[k]) {
					return false
				}
			}
		}
		if field >= 0 {
			if seen&(1<<field) != 0 {
				return false // duplicate key
			}
			seen |= 1 << field
		}
		switch field {
		case -1:
			for j := 0; j < len(key); j++ {
				if key[j] >= 0x80 {
					return false // might fold to a field name
				}
			}
			checked = checked && validScalar(val)
		case 0:
			p.TS = json.RawMessage(val)
			checked = checked && validScalar(val)
		case 1, 3:
			str, has := &fs.metric, &fs.hasMetric
			if field == 3 {
				str, has = &fs.unit, &fs.hasUnit
			}
			if string(val) == "null" {
				*str, *has = "", false
				break
			}
			s, n, ok := plainString(val, 0)
			if !ok || n != len(val) {
				return false
			}
			*str, *has = s, true
		case 2:
			p.Value = json.RawMessage(val)
			checked = checked && validScalar(val)
		case 6:
			p.DeviceID = json.RawMessage(val)
			checked = checked && validScalar(val)
		case 7:
			p.Device = json.RawMessage(val)
			checked = checked && validScalar(val)
		case 8:
			if string(val) == "null" {
				break
			}
			m, ok := flatStringMap(val)
			if !ok {
				return false
			}
			p.Attrs = m
		default: // measurements, units: the general path
			return false
		}
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			if skipWS(b, i+1) != len(b) {
				return false
			}
			return checked || json.Valid(b)
		}
		return false
	}
	return false
}

// validScalar reports whether val (a value skipValue delimited) is a
// string without escapes or control characters, a JSON number or a
// literal: valid JSON as it stands. false says only "not known".
func validScalar(val []byte) bool {
	if len(val) == 0 {
		return false
	}
	switch c := val[0]; {
	case c == '"':
		for j := 1; j < len(val)-1; j++ {
			if val[j] == '\\' || val[j] == '"' || val[j] < 0x20 {
				return false
			}
		}
		return len(val) >= 2 && val[len(val)-1] == '"'
	case c == '-' || (c >= '0' && c <= '9'):
		return validNumber(val)
	}
	s := string(val) // no allocation: compared only
	return s == "null" || s == "true" || s == "false"
}

// validNumber reports whether b is exactly one number of JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at b[i] without escapes or control
// characters and returns it and the index after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	s, next, ok := plainBytes(b, i)
	if !ok {
		return "", 0, false
	}
	return string(s), next, true
}

// plainBytes is plainString without the copy: the string's bytes in b.
func plainBytes(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return nil, 0, false // encoding/json would replace the bad bytes
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, 0, false
}

// skipValue returns the index after the JSON value starting at b[i] (the
// document is known to be valid), or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				k := skipValue(b, j)
				if k < 0 {
					return -1
				}
				j = k - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// flatStringMap decodes {"k": "v", ...} with plain strings; anything else
// (other value types, escapes, duplicate keys) is not ok.
func flatStringMap(b []byte) (map[string]string, bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	m := map[string]string{}
	i := skipWS(b, 1)
	if i < len(b) && b[i] == '}' {
		return m, i+1 == len(b)
	}
	for i < len(b) {
		k, next, ok := plainString(b, i)
		if !ok {
			return nil, false
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return nil, false
		}
		v, next, ok := plainString(b, skipWS(b, i+1))
		if !ok {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		m[k] = v
		i = skipWS(b, next)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return m, i+1 == len(b)
		}
		return nil, false
	}
	return nil, false
}
