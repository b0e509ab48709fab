package decode

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// Duplicate keys. RFC 8259 leaves an object that names a key twice to the
// parser, and encoding/json keeps the last value, silently: in
// {"measurements": {"temp": 1, "temp": 2}} the 1 would vanish, in
// {"value": 1, "Value": 2} too (it matches struct fields case-insensitively).
// The decoders reject such payloads instead (duplicate_key), for the keys
// they read: every field of the object decoded into a struct (compared as
// encoding/json compares them), every key of the objects of free keys
// (attrs, measurements, units), and every key of every object where all
// keys become data (SenML records, WildFi objects). The fast sensor path
// (fast.go) already declines every payload with such a repeat.

// maxFields bounds keyRule.fields (a test checks the rules).
const maxFields = 16

// keyRule says which keys of a payload may not repeat.
type keyRule struct {
	fields []string // the struct's JSON names: the top-level object (or each element of a top-level array)
	maps   []string // fields whose value is an object of free keys
	deep   bool     // every object at any depth: no key twice
}

var (
	sensorKeys = keyRule{fields: jsonFields(sensorJSON{}), maps: []string{"measurements", "units", "attrs"}}
	gpsKeys    = keyRule{fields: jsonFields(gpsJSON{}), maps: []string{"attrs"}}
	mediaKeys  = keyRule{fields: jsonFields(mediaJSON{}), maps: []string{"attrs"}}
	beatKeys   = keyRule{fields: jsonFields(heartbeatJSON{}), maps: []string{"attrs"}}
	eventKeys  = keyRule{fields: jsonFields(eventJSON{}), maps: []string{"attrs"}}
	deepKeys   = keyRule{deep: true}
)

// jsonFields returns the JSON names of struct v's fields.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v)
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return names
}

// checkKeys applies rule to b, a valid JSON document: an object, or an
// array whose object elements are each checked as the top level.
func checkKeys(b []byte, rule *keyRule) error {
	i := skipWS(b, 0)
	if i >= len(b) {
		return nil
	}
	switch b[i] {
	case '{':
		if end := skipValue(b, i); end > i {
			return rule.top(b[i:end], nil)
		}
	case '[':
		n := 0
		return eachElement(b, i, func(v []byte) error {
			at := &place{index: n}
			n++
			if len(v) > 0 && v[0] == '{' {
				return rule.top(v, at)
			}
			return rule.nested(v, at)
		})
	}
	return nil
}

// place is where in the document an object lies, as a chain of keys and
// array indexes; it becomes a string ("[1].attrs") only for a message.
type place struct {
	up    *place
	key   []byte // object member, or nil for an array element
	index int
}

func (p *place) String() string {
	if p == nil {
		return ""
	}
	s := p.up.String()
	if p.key == nil {
		return s + "[" + strconv.Itoa(p.index) + "]"
	}
	if s == "" {
		return string(p.key)
	}
	return s + "." + string(p.key)
}

// top checks the top-level object obj at p.
func (r *keyRule) top(obj []byte, p *place) error {
	if r.deep || len(r.fields) == 0 {
		return r.nested(obj, p)
	}
	var seen [maxFields][]byte // spelling of each field met so far
	return eachMember(obj, func(key []byte, v []byte) error {
		for f, name := range r.fields {
			if len(key) < len(name) || !bytes.EqualFold(key, []byte(name)) {
				continue // a fold can only lengthen ASCII names (ſ, K): shorter keys never match
			}
			if seen[f] != nil {
				return fail(StageDecode, ReasonDuplicateKey, name,
					"field %s appears twice%s (as %s and %s): JSON leaves which one counts undefined, so the message is refused",
					strconv.Quote(name), where(p), quote(string(seen[f]), 64), quote(string(key), 64))
			}
			seen[f] = key
			for _, m := range r.maps {
				if name == m && len(v) > 0 && v[0] == '{' {
					return uniqueKeys(v, &place{up: p, key: key})
				}
			}
		}
		return nil
	})
}

// nested checks v (any JSON value) for repeated keys in every object, when
// the rule is deep.
func (r *keyRule) nested(v []byte, p *place) error {
	if !r.deep || len(v) == 0 {
		return nil
	}
	switch v[0] {
	case '{':
		if err := uniqueKeys(v, p); err != nil {
			return err
		}
		return eachMember(v, func(key []byte, e []byte) error {
			if len(e) == 0 || e[0] != '{' && e[0] != '[' {
				return nil
			}
			return r.nested(e, &place{up: p, key: key})
		})
	case '[':
		n := 0
		return eachElement(v, 0, func(e []byte) error {
			n++
			if len(e) == 0 || e[0] != '{' && e[0] != '[' {
				return nil
			}
			return r.nested(e, &place{up: p, index: n - 1})
		})
	}
	return nil
}

// uniqueKeys rejects the object obj when a key repeats exactly.
func uniqueKeys(obj []byte, p *place) error {
	var small [16][]byte
	keys := small[:0]
	var many map[string]bool
	return eachMember(obj, func(key []byte, _ []byte) error {
		dup := false
		if many != nil {
			dup = many[string(key)]
			many[string(key)] = true
		} else {
			for _, k := range keys {
				dup = dup || bytes.Equal(k, key)
			}
			if keys = append(keys, key); len(keys) == cap(small) {
				many = make(map[string]bool, 2*len(keys))
				for _, k := range keys {
					many[string(k)] = true
				}
			}
		}
		if dup {
			return fail(StageDecode, ReasonDuplicateKey, (&place{up: p, key: key}).String(),
				"key %s appears twice%s: JSON leaves which value counts undefined, so the message is refused", quote(string(key), 64), where(p))
		}
		return nil
	})
}

func where(p *place) string {
	if p == nil {
		return ""
	}
	return " in " + p.String()
}

// eachMember calls fn with each key (unescaped) and raw value of the
// object at obj[0] (valid JSON). The key may alias obj.
func eachMember(obj []byte, fn func(key, v []byte) error) error {
	i := skipWS(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		end := skipValue(obj, i)
		if end < 0 {
			return nil // not valid JSON: the decoder has said so already
		}
		key, err := jsonString(obj[i:end])
		if err != nil {
			return err
		}
		i = skipWS(obj, skipWS(obj, end)+1) // past ':'
		vend := skipValue(obj, i)
		if vend < 0 {
			return nil
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipWS(obj, vend)
		if i < len(obj) && obj[i] == ',' {
			i = skipWS(obj, i+1)
		}
	}
	return nil
}

// eachElement calls fn with each element of the array at b[i] (valid JSON).
func eachElement(b []byte, i int, fn func(v []byte) error) error {
	i = skipWS(b, i+1)
	for i < len(b) && b[i] != ']' {
		end := skipValue(b, i)
		if end < 0 {
			return nil
		}
		if err := fn(b[i:end]); err != nil {
			return err
		}
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	return nil
}

// jsonString returns the JSON string literal s unescaped (a sub-slice of
// s when it has no escapes).
func jsonString(s []byte) ([]byte, error) {
	if len(s) >= 2 && bytes.IndexByte(s[1:len(s)-1], '\\') < 0 {
		return s[1 : len(s)-1], nil
	}
	var k string
	if err := json.Unmarshal(s, &k); err != nil {
		return nil, fail(StageDecode, ReasonNotJSON, "", "payload is not JSON: %v", err)
	}
	return []byte(k), nil
}
