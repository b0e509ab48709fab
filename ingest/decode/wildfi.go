package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
)

// WildFi collars publish JSON on wildfi/{device_id}/{type}: one object, or
// an array of objects (a batch read out of the collar's flash). Each object
// carries a time under ts, timestamp or time (RFC 3339 or epoch
// milliseconds).
//
// gps, gnss, rawgps: lat|latitude, lon|lng|longitude, alt|altitude|height,
// hdop, satellites|sats|sv, speed → one raw.gps fix per object; other scalar
// fields become attrs.
//
// imu, env, prox, move, meta: every number becomes a raw.sensor reading
// named {type}.{field} (nested objects flatten with dots); arrays of numbers
// become one reading per element, spaced 1/hz seconds apart when the object
// has a numeric hz field; strings and booleans become attrs.

var (
	wildfiTSKeys   = []string{"ts", "timestamp", "time"}
	wildfiLatKeys  = []string{"lat", "latitude"}
	wildfiLonKeys  = []string{"lon", "lng", "longitude"}
	wildfiAltKeys  = []string{"alt", "altitude", "height"}
	wildfiSatKeys  = []string{"satellites", "sats", "sv"}
	wildfiHDOPKeys = []string{"hdop"}
	wildfiSpdKeys  = []string{"speed"}
	wildfiDevKeys  = []string{"device_id", "device"}
)

// wildfiObjects parses the payload into one or more objects with numbers
// kept as json.Number.
func wildfiObjects(in *Input) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(in.Payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fail(StageDecode, ReasonNotJSON, "", "payload is not JSON: %v", err)
		}
		return nil, fail(StageDecode, ReasonNotJSON, "", "payload is not JSON: %v", err)
	}
	if dec.More() {
		return nil, fail(StageDecode, ReasonNotJSON, "", "payload has data after the JSON document")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(StageDecode, ReasonNotJSON, "", "payload has data after the JSON document")
	}
	if err := checkKeys(in.Payload, &deepKeys); err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case map[string]any:
		return []map[string]any{x}, nil
	case []any:
		if len(x) == 0 {
			return nil, fail(StageValidate, ReasonNoRecords, "", "WildFi batch is empty")
		}
		objs := make([]map[string]any, len(x))
		for i, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fail(StageDecode, ReasonWrongShape, "", "WildFi batch element %d is %s, want an object", i, anyKind(e))
			}
			objs[i] = m
		}
		return objs, nil
	}
	return nil, fail(StageDecode, ReasonWrongShape, "", "WildFi payload must be an object or an array of objects, got %s", anyKind(v))
}

func anyKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "unknown"
}

// take removes and returns the value of the one key of aliases present in
// m. Two aliases present ({"ts": ..., "timestamp": ...}) are two values for
// one field: duplicate_key, never a silent pick.
func take(m map[string]any, aliases []string, i int) (string, any, bool, error) {
	found := ""
	for _, k := range aliases {
		if _, ok := m[k]; !ok {
			continue
		}
		if found != "" {
			return "", nil, false, fail(StageDecode, ReasonDuplicateKey, k, "WildFi object %d gives both %s and %s, which name the same field", i, quote(found, 64), quote(k, 64))
		}
		found = k
	}
	if found == "" {
		return aliases[0], nil, false, nil
	}
	v := m[found]
	delete(m, found)
	return found, v, true, nil
}

// anyNumber is numberValue for a number decoded with UseNumber.
func anyNumber(v any, field string) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		return numberValue(json.RawMessage(x), field)
	case nil:
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is null, not a finite number", field)
	case string:
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is a string (%s), not a finite number", field, quote(x, 64))
	}
	return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is %s, not a finite number", field, anyKind(v))
}

func wildfiCommon(in *Input, obj map[string]any, i int) (time.Time, error) {
	for _, k := range wildfiDevKeys { // device_id and device may both be given
		dv, ok := obj[k]
		if !ok {
			continue
		}
		delete(obj, k)
		var got string
		switch x := dv.(type) {
		case string:
			got = x
		case json.Number:
			got = string(x)
		case nil:
			continue
		default:
			return time.Time{}, fail(StageDecode, ReasonWrongShape, k, "%s must be a string", k)
		}
		if err := checkNamedDevice(in, k, got); err != nil {
			return time.Time{}, err
		}
	}
	k, tv, ok, err := take(obj, wildfiTSKeys, i)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, fail(StageDecode, ReasonMissingField, "ts", "WildFi object %d has no ts (or timestamp, time)", i)
	}
	raw, _ := json.Marshal(tv)
	return parseTS(raw, k)
}

func decodeWildFiGPS(in *Input, out *Output) error {
	objs, err := wildfiObjects(in)
	if err != nil {
		return err
	}
	for i, obj := range objs {
		ts, err := wildfiCommon(in, obj, i)
		if err != nil {
			return err
		}
		raws := make([]json.RawMessage, 6)
		for j, keys := range [][]string{wildfiLatKeys, wildfiLonKeys, wildfiAltKeys, wildfiHDOPKeys, wildfiSatKeys, wildfiSpdKeys} {
			_, v, ok, err := take(obj, keys, i)
			if err != nil {
				return err
			}
			if ok {
				raws[j], _ = json.Marshal(v)
			}
		}
		fix, err := gpsFix(in, ts, raws[0], raws[1], raws[2], raws[3], raws[4], raws[5])
		if err != nil {
			return err
		}
		fix.EventID = in.EventID("gps", ts, i)
		for _, k := range sortedKeys(obj) {
			if s, ok := scalarString(obj[k]); ok {
				fix.Attrs[k] = s
			}
		}
		out.GPS = append(out.GPS, fix)
	}
	return nil
}

func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func decodeWildFiSensor(in *Input, out *Output) error {
	objs, err := wildfiObjects(in)
	if err != nil {
		return err
	}
	idx := 0
	for i, obj := range objs {
		ts, err := wildfiCommon(in, obj, i)
		if err != nil {
			return err
		}
		w := wildfiWalk{object: i, prefix: in.Kind, ts: ts, attrs: map[string]string{}}
		if _, v, ok, err := take(obj, []string{"hz"}, i); err != nil {
			return err
		} else if ok {
			if w.hz, err = anyNumber(v, "hz"); err != nil {
				return err
			}
			if w.hz <= 0 {
				return fail(StageValidate, ReasonInvalidValue, "hz", "hz %v must be positive", w.hz)
			}
		}
		for _, k := range sortedKeys(obj) {
			if err := w.walk(w.prefix+"."+k, obj[k]); err != nil {
				return err
			}
		}
		for _, r := range w.rs {
			a := cloneAttrs(w.attrs)
			if r.index >= 0 {
				if _, clash := a["index"]; clash {
					return fail(StageDecode, ReasonDuplicateKey, "index", "WildFi object %d: field \"index\" clashes with the sample index drover gives array readings (attrs[\"index\"])", i)
				}
				if a == nil {
					a = map[string]string{}
				}
				a["index"] = strconv.Itoa(r.index)
			}
			out.addSensor(in, r.metric, r.value, nil, r.ts, idx, a)
			idx++
		}
	}
	return nil
}

// wildfiMaxHz is the highest sample rate of a WildFi array: ts has
// millisecond resolution, so faster samples would share a ts.
const wildfiMaxHz = 1000

// wildfiWalk flattens one WildFi sensor object into readings and attrs.
type wildfiWalk struct {
	object int
	prefix string
	ts     time.Time
	hz     float64 // 0 = not given
	attrs  map[string]string
	rs     []wildfiReading
}

type wildfiReading struct {
	metric string
	value  float64
	ts     time.Time
	index  int // sample index in an array, -1 for a scalar
}

func (w *wildfiWalk) walk(path string, v any) error {
	switch x := v.(type) {
	case json.Number:
		f, err := anyNumber(x, path)
		if err != nil {
			return err
		}
		w.rs = append(w.rs, wildfiReading{metric: path, value: f, ts: w.ts, index: -1})
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if err := w.walk(path+"."+k, x[k]); err != nil {
				return err
			}
		}
	case []any:
		return w.samples(path, x)
	case string, bool:
		s, _ := scalarString(x)
		name := strings.TrimPrefix(path, w.prefix+".")
		if _, dup := w.attrs[name]; dup {
			return fail(StageDecode, ReasonDuplicateKey, name, "WildFi object %d gives %s twice (a nested object and a dotted key flatten to one name)", w.object, quote(name, 64))
		}
		w.attrs[name] = s
	}
	return nil
}

// samples turns an array into one reading per element, 1/hz seconds
// apart. Several samples need an hz of at most wildfiMaxHz: without one
// they would all share ts, and the sink would keep one.
func (w *wildfiWalk) samples(path string, arr []any) error {
	if len(arr) > 1 && w.hz == 0 {
		return fail(StageDecode, ReasonMissingField, "hz", "WildFi object %d: %s has %d samples but no hz (samples per second) says how far apart they are; without it they would all share ts %s",
			w.object, path, len(arr), w.ts.Format(time.RFC3339Nano))
	}
	if len(arr) > 1 && w.hz > wildfiMaxHz {
		return fail(StageValidate, ReasonInvalidValue, "hz", "hz %v is above %d: the samples of %s would lie less than 1 ms apart, finer than the millisecond resolution of ts",
			w.hz, wildfiMaxHz, path)
	}
	for j, e := range arr {
		f, err := anyNumber(e, path+"["+strconv.Itoa(j)+"]")
		if err != nil {
			return err
		}
		t := w.ts
		if w.hz > 0 {
			d := float64(j) / w.hz * float64(time.Second)
			if d >= maxSampleOffset {
				return fail(StageValidate, ReasonInvalidValue, "hz", "hz %v: sample %d of %s would lie %.3g s after ts, beyond any representable time", w.hz, j, path, d/float64(time.Second))
			}
			t = t.Add(time.Duration(d)).Truncate(time.Millisecond)
		}
		w.rs = append(w.rs, wildfiReading{metric: path, value: f, ts: t, index: j})
	}
	return nil
}

// maxSampleOffset bounds a sample's offset from ts (in ns) well inside
// time.Duration; the ts range check then judges the sample's time.
const maxSampleOffset = float64(1 << 62)
