package decode

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

func sortStrings(s []string) { slices.Sort(s) }

// senmlRelativeLimit: resolved SenML times below 2**28 seconds are relative
// to now (RFC 8428 section 4.5.3).
const senmlRelativeLimit = 1 << 28

// senmlVersion is the highest SenML version (bver) understood.
const senmlVersion = 10

// SenMLUnit reports whether the SenML decoder accepts unit: the SenML Units
// registry of RFC 8428 (section 12.1) and the secondary units of RFC 8798.
func SenMLUnit(unit string) bool { return senmlUnits[unit] }

var senmlUnits = func() map[string]bool {
	m := map[string]bool{}
	for _, u := range strings.Fields(`m kg g s A K cd mol Hz rad sr N Pa J W C V F Ohm S Wb T H Cel lm lx Bq Gy Sv kat
		m2 m3 l m/s m/s2 m3/s l/s W/m2 cd/m2 bit bit/s lat lon pH dB dBW Bspl count / % %RH %EL EL 1/s 1/min
		beat/min beats S/m B VA VAs var vars J/m kg/m3 deg NTU
		ms min h MHz kW kVA kvar Ah Wh kWh varh kvarh kVAh Wh/km KiB GB Mbit/s B/s MB/s mV mA dBm ug/m3 mm/h m/h
		ppm /100 /1000 hPa mm cm km km/h`) {
		m[u] = true
	}
	return m
}()

// senmlFields are the labels RFC 8428 defines (plus bver); any other label
// ending in "_" is must-understand and rejects the pack.
var senmlFields = map[string]bool{
	"bn": true, "bt": true, "bu": true, "bv": true, "bs": true, "bver": true,
	"n": true, "u": true, "v": true, "vs": true, "vb": true, "vd": true, "s": true, "t": true, "ut": true,
}

// decodeSenML decodes a SenML JSON pack (RFC 8428): an array of records
// with base name/time/unit/value/sum, n, u, v, vb, s, t. Relative times
// (resolved value below 2**28 s) count from the receive time. String (vs)
// and data (vd) values are not accepted: raw.sensor carries numbers.
func decodeSenML(in *Input, out *Output) error {
	var pack []map[string]json.RawMessage
	if err := unmarshal(in.Payload, &pack, "senml"); err != nil {
		return err
	}
	if err := checkKeys(in.Payload, &deepKeys); err != nil {
		return err
	}
	if len(pack) == 0 {
		return fail(StageValidate, ReasonNoRecords, "", "SenML pack is empty")
	}
	var (
		bn, bu string
		bt     float64
		bv, bs float64
	)
	str := func(i int, rec map[string]json.RawMessage, k string) (string, bool, error) {
		raw, ok := rec[k]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, fail(StageDecode, ReasonWrongShape, k, "SenML record %d: %s must be a string", i, k)
		}
		return s, true, nil
	}
	num := func(i int, rec map[string]json.RawMessage, k string) (float64, bool, error) {
		raw, ok := rec[k]
		if !ok {
			return 0, false, nil
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			return 0, false, nil
		}
		f, err := numberValue(raw, k)
		if err != nil {
			if e, ok := err.(*Error); ok {
				e.Message = "SenML record " + strconv.Itoa(i) + ": " + e.Message
			}
			return 0, false, err
		}
		return f, true, nil
	}
	for i, rec := range pack {
		if rec == nil {
			return fail(StageDecode, ReasonWrongShape, "", "SenML record %d is null, want an object", i)
		}
		for k := range rec {
			if !senmlFields[k] && strings.HasSuffix(k, "_") {
				return fail(StageDecode, ReasonSenMLUnsupported, k, "SenML record %d has must-understand field %s", i, quote(k, 64))
			}
		}
		if v, ok, err := num(i, rec, "bver"); err != nil {
			return err
		} else if ok && (v > senmlVersion || v < 1 || v != math.Trunc(v)) {
			return fail(StageDecode, ReasonSenMLUnsupported, "bver", "SenML version %v is not supported (up to %d)", v, senmlVersion)
		}
		if s, ok, err := str(i, rec, "bn"); err != nil {
			return err
		} else if ok {
			bn = s
		}
		if s, ok, err := str(i, rec, "bu"); err != nil {
			return err
		} else if ok {
			bu = s
		}
		if f, ok, err := num(i, rec, "bt"); err != nil {
			return err
		} else if ok {
			bt = f
		}
		if f, ok, err := num(i, rec, "bv"); err != nil {
			return err
		} else if ok {
			bv = f
		}
		if f, ok, err := num(i, rec, "bs"); err != nil {
			return err
		} else if ok {
			bs = f
		}
		n, hasN, err := str(i, rec, "n")
		if err != nil {
			return err
		}
		_, hasV := rec["v"]
		_, hasVB := rec["vb"]
		_, hasS := rec["s"]
		_, hasVS := rec["vs"]
		_, hasVD := rec["vd"]
		if !hasV && !hasVB && !hasS && !hasVS && !hasVD {
			if hasN {
				return fail(StageDecode, ReasonMissingField, "v", "SenML record %d (%s) has no value", i, quote(bn+n, 64))
			}
			continue // a base-only record
		}
		if hasVS || hasVD {
			return fail(StageDecode, ReasonSenMLUnsupported, "vs", "SenML record %d: string and data values are not accepted (raw.sensor carries numbers)", i)
		}
		name := bn + n
		if name == "" {
			return fail(StageDecode, ReasonSenMLMissingName, "n", "SenML record %d has no name (neither bn nor n)", i)
		}
		if !validSenMLName(name) {
			return fail(StageDecode, ReasonSenMLInvalidName, "n", "SenML name %s must start with a letter or digit and use only A-Z a-z 0-9 : . / _ -", quote(name, 64))
		}
		unit, hasU, err := str(i, rec, "u")
		if err != nil {
			return err
		}
		if !hasU {
			unit = bu
		}
		if unit != "" && !senmlUnits[unit] {
			return fail(StageDecode, ReasonSenMLUnknownUnit, "u", "SenML record %d (%s): unit %s is not in the SenML units registry", i, quote(name, 64), quote(unit, 32))
		}
		t, _, err := num(i, rec, "t")
		if err != nil {
			return err
		}
		ts, err := senmlTime(in.ReceivedAt, bt, t, i)
		if err != nil {
			return err
		}
		var attrs map[string]string
		var value float64
		switch {
		case hasV:
			v, _, err := num(i, rec, "v")
			if err != nil {
				return err
			}
			if isNull(rec["v"]) {
				return fail(StageValidate, ReasonInvalidValue, "v", "SenML record %d (%s): v is null, not a finite number", i, quote(name, 64))
			}
			if value = bv + v; !finite(value) {
				return fail(StageValidate, ReasonInvalidValue, "v", "SenML record %d (%s): bv + v = %v + %v overflows a 64-bit float", i, quote(name, 64), bv, v)
			}
		case hasVB:
			var b bool
			if err := json.Unmarshal(rec["vb"], &b); err != nil {
				return fail(StageValidate, ReasonInvalidValue, "vb", "SenML record %d (%s): vb must be true or false", i, quote(name, 64))
			}
			if b {
				value = 1
			}
			attrs = map[string]string{"senml.type": "boolean"}
		default:
			s, _, err := num(i, rec, "s")
			if err != nil {
				return err
			}
			if isNull(rec["s"]) {
				return fail(StageValidate, ReasonInvalidValue, "s", "SenML record %d (%s): s is null, not a finite number", i, quote(name, 64))
			}
			if value = bs + s; !finite(value) {
				return fail(StageValidate, ReasonInvalidValue, "s", "SenML record %d (%s): bs + s = %v + %v overflows a 64-bit float", i, quote(name, 64), bs, s)
			}
			attrs = map[string]string{"senml.type": "sum"}
		}
		var u *string
		if unit != "" {
			u = &unit
		}
		out.addSensor(in, name, value, u, ts, i, attrs)
	}
	return nil
}

// senmlTime resolves record i's time bt + t (seconds): from 2**28 on it
// is absolute, below it relative to the receive time (RFC 8428 section
// 4.5.3). A relative time may reach back at most 2**28 s (8.5 years): a
// larger negative one is an absolute time before 1978 sent by mistake
// (SenML cannot write those), not a reading from 1969 years ago. The
// arithmetic is in integer milliseconds: no time.Duration overflow (which
// once turned a bt of year 1 into a date in 1811).
func senmlTime(now time.Time, bt, t float64, i int) (time.Time, error) {
	sum := bt + t
	if !finite(sum) || sum <= -senmlRelativeLimit || sum > float64(maxTS.Unix()) {
		return time.Time{}, fail(StageDecode, ReasonInvalidTS, "t",
			"SenML record %d: time bt + t = %v + %v = %v s is out of range (absolute times are epoch seconds from 2^28 (1978-07-04) to the year 9999; relative ones lie within 2^28 s of the receive time)",
			i, formatNum(bt), formatNum(t), formatNum(sum))
	}
	ms := int64(math.Round(sum * 1000))
	if sum < senmlRelativeLimit {
		ms += now.UnixMilli()
	}
	return time.UnixMilli(ms).UTC(), nil
}

func validSenMLName(s string) bool {
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && c != ':' && c != '.' && c != '/' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
