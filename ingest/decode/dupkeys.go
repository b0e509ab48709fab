package decode

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
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
	var err error
	switch b[i] {
	case '{':
		if end := skipValue(b, i); end > i {
			err = rule.top(b[i:end])
		}
	case '[':
		n := 0
		err = eachElement(b, i, func(v []byte) error {
			n++
			var err error
			if len(v) > 0 && v[0] == '{' {
				err = rule.top(v)
			} else {
				err = rule.nested(v)
			}
			if err != nil {
				return within(err, "["+strconv.Itoa(n-1)+"]")
			}
			return nil
		})
	}
	if d, ok := err.(*dupError); ok {
		return d.reject()
	}
	return err
}

// dupError is a repeated key found while walking; its path (outermost
// last) grows as the walk unwinds, so nothing is built unless a key
// repeats.
type dupError struct {
	field string    // the struct field, for a fold of a known name
	spell [2]string // the two spellings, for a field
	key   string    // the repeated key, for an object of free keys
	path  []string  // enclosing keys and "[i]", innermost first
}

func (d *dupError) Error() string { return "duplicate key" }

// within adds segment to the path of a *dupError (other errors pass).
func within(err error, segment string) error {
	if d, ok := err.(*dupError); ok {
		d.path = append(d.path, segment)
	}
	return err
}

// reject turns d into the rejection.
func (d *dupError) reject() *Error {
	var p strings.Builder
	for i := len(d.path) - 1; i >= 0; i-- {
		if p.Len() > 0 && !strings.HasPrefix(d.path[i], "[") {
			p.WriteByte('.')
		}
		p.WriteString(d.path[i])
	}
	in := ""
	if p.Len() > 0 {
		in = " in " + p.String()
	}
	if d.field != "" {
		return fail(StageDecode, ReasonDuplicateKey, d.field,
			"field %s appears twice%s (as %s and %s): JSON leaves which one counts undefined, so the message is refused",
			strconv.Quote(d.field), in, quote(d.spell[0], 64), quote(d.spell[1], 64))
	}
	return fail(StageDecode, ReasonDuplicateKey, d.key,
		"key %s appears twice%s: JSON leaves which value counts undefined, so the message is refused", quote(d.key, 64), in)
}

// top checks the top-level object obj.
func (r *keyRule) top(obj []byte) error {
	if r.deep || len(r.fields) == 0 {
		return r.nested(obj)
	}
	var seen [maxFields][]byte // spelling of each field met so far
	return eachMember(obj, func(key []byte, v []byte) error {
		for f, name := range r.fields {
			// Quick rejects first: the names start with an ASCII letter,
			// so an ASCII first byte must match it up to case; and a fold
			// can only lengthen an ASCII name (ſ, K), never shorten it.
			if len(key) < len(name) || key[0] < utf8.RuneSelf && key[0]|0x20 != name[0]|0x20 ||
				string(key) != name && !bytes.EqualFold(key, []byte(name)) {
				continue
			}
			if seen[f] != nil {
				return &dupError{field: name, spell: [2]string{string(seen[f]), string(key)}}
			}
			seen[f] = key
			for _, m := range r.maps {
				if name == m && len(v) > 0 && v[0] == '{' {
					if err := uniqueKeys(v); err != nil {
						return within(err, string(key))
					}
				}
			}
		}
		return nil
	})
}

// nested checks v (any JSON value) for repeated keys in every object, when
// the rule is deep.
func (r *keyRule) nested(v []byte) error {
	if !r.deep || len(v) == 0 {
		return nil
	}
	switch v[0] {
	case '{':
		if err := uniqueKeys(v); err != nil {
			return err
		}
		return eachMember(v, func(key []byte, e []byte) error {
			if len(e) == 0 || e[0] != '{' && e[0] != '[' {
				return nil
			}
			if err := r.nested(e); err != nil {
				return within(err, string(key))
			}
			return nil
		})
	case '[':
		n := 0
		return eachElement(v, 0, func(e []byte) error {
			n++
			if len(e) == 0 || e[0] != '{' && e[0] != '[' {
				return nil
			}
			if err := r.nested(e); err != nil {
				return within(err, "["+strconv.Itoa(n-1)+"]")
			}
			return nil
		})
	}
	return nil
}

// uniqueKeys finds a key the object obj repeats exactly.
func uniqueKeys(obj []byte) error {
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
			return &dupError{key: string(key)}
		}
		return nil
	})
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
