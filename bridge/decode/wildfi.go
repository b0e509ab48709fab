package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
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

// take removes and returns the first present key of keys.
func take(m map[string]any, keys []string) (string, any, bool) {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			delete(m, k)
			return k, v, true
		}
	}
	return keys[0], nil, false
}

func anyNumber(v any, field string) (float64, error) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return 0, fail(StageValidate, ReasonInvalidValue, field, "%s %s overflows a 64-bit float (Infinity)", field, clip(string(x), 64))
		}
		return f, nil
	case nil:
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is null, not a finite number", field)
	case string:
		return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is a string (%q), not a finite number", field, clip(x, 64))
	}
	return 0, fail(StageValidate, ReasonInvalidValue, field, "%s is %s, not a finite number", field, anyKind(v))
}

func wildfiCommon(in *Input, obj map[string]any, i int) (time.Time, error) {
	for {
		k, dv, ok := take(obj, wildfiDevKeys)
		if !ok {
			break
		}
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
		if got != in.DeviceID {
			return time.Time{}, fail(StageValidate, ReasonDeviceMismatch, k, "payload names device %q but the topic is for device %q", clip(got, 128), in.DeviceID)
		}
	}
	k, tv, ok := take(obj, wildfiTSKeys)
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
			if _, v, ok := take(obj, keys); ok {
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
	prefix := in.Kind
	idx := 0
	for i, obj := range objs {
		ts, err := wildfiCommon(in, obj, i)
		if err != nil {
			return err
		}
		var hz float64
		if _, v, ok := take(obj, []string{"hz"}); ok {
			if hz, err = anyNumber(v, "hz"); err != nil {
				return err
			}
			if hz <= 0 {
				return fail(StageValidate, ReasonInvalidValue, "hz", "hz %v must be positive", hz)
			}
		}
		attrs := map[string]string{}
		type reading struct {
			metric string
			value  float64
			ts     time.Time
			index  int
		}
		var rs []reading
		var walk func(path string, v any) error
		walk = func(path string, v any) error {
			switch x := v.(type) {
			case json.Number:
				f, err := anyNumber(x, path)
				if err != nil {
					return err
				}
				rs = append(rs, reading{metric: path, value: f, ts: ts, index: -1})
			case map[string]any:
				for _, k := range sortedKeys(x) {
					if err := walk(path+"."+k, x[k]); err != nil {
						return err
					}
				}
			case []any:
				for j, e := range x {
					f, err := anyNumber(e, path+"["+strconv.Itoa(j)+"]")
					if err != nil {
						return err
					}
					t := ts
					if hz > 0 {
						t = ts.Add(time.Duration(float64(j) / hz * float64(time.Second))).Truncate(time.Millisecond)
					}
					rs = append(rs, reading{metric: path, value: f, ts: t, index: j})
				}
			case string, bool:
				s, _ := scalarString(x)
				attrs[strings.TrimPrefix(path, prefix+".")] = s
			case nil:
			}
			return nil
		}
		for _, k := range sortedKeys(obj) {
			if err := walk(prefix+"."+k, obj[k]); err != nil {
				return err
			}
		}
		for _, r := range rs {
			a := cloneAttrs(attrs)
			if r.index >= 0 {
				if a == nil {
					a = map[string]string{}
				}
				a["index"] = strconv.Itoa(r.index)
			}
			out.Sensor = append(out.Sensor, in.sensor(r.metric, r.value, nil, r.ts, idx, a))
			idx++
		}
	}
	return nil
}
