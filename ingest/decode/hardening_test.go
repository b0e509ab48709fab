package decode

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// verdict decodes payload with the named decoder under lim and returns
// the records and the rejection (nil when accepted).
func verdict(t *testing.T, decoder, kind, payload string, lim Limits) (*Output, *Error) {
	t.Helper()
	d, ok := Lookup(decoder)
	if !ok {
		t.Fatalf("no decoder %q", decoder)
	}
	src := decoder
	if kind != "" {
		src += "/" + kind
	}
	var out Output
	err := Decode(d.Func, input(src, kind, payload), lim, &out)
	if err == nil {
		return &out, nil
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not an *Error", err)
	}
	return &out, de
}

// rejectCase is one payload that must be rejected with reason, its message
// containing every string of want.
type rejectCase struct {
	name, decoder, kind, payload string
	reason                       Reason
	want                         []string
}

func runRejections(t *testing.T, lim Limits, cases []rejectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, de := verdict(t, tc.decoder, tc.kind, tc.payload, lim)
			if de == nil {
				t.Fatalf("accepted %s, want %s", tc.payload, tc.reason)
			}
			if de.Reason != tc.reason {
				t.Fatalf("reason %s (%s), want %s", de.Reason, de.Message, tc.reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(de.Message, w) {
					t.Errorf("message %q does not contain %q", de.Message, w)
				}
			}
			if Escape(de.Message) != de.Message {
				t.Errorf("message carries unescaped text: %q", de.Message)
			}
		})
	}
}

// acceptCase is one payload that must be accepted with records records.
type acceptCase struct {
	name, decoder, kind, payload string
	records                      int
	check                        func(t *testing.T, out *Output)
}

func runAcceptances(t *testing.T, lim Limits, cases []acceptCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, de := verdict(t, tc.decoder, tc.kind, tc.payload, lim)
			if de != nil {
				t.Fatalf("rejected: %v", de)
			}
			if out.Len() != tc.records {
				t.Fatalf("%d records, want %d", out.Len(), tc.records)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

// TestCollisionsInOneMessage: records of one message that would be one row
// downstream reject the message.
func TestCollisionsInOneMessage(t *testing.T) {
	runRejections(t, DefaultLimits(), []rejectCase{
		{"senml three temps without t", "senml", "", `[{"n":"temp","v":1},{"n":"temp","v":2},{"n":"temp","v":3}]`,
			ReasonDuplicateTimestamp, []string{`metric "temp"`, "ts 2026-05-01T12:00:00Z", "records 0 and 1"}},
		{"senml via the sensor channel", "sensor", "", `[{"bn":"c.","bt":1777636740,"n":"t","v":1},{"n":"t","v":2}]`,
			ReasonDuplicateTimestamp, []string{`metric "c.t"`, "2026-05-01T11:59:00Z"}},
		{"senml indexes are pack indexes", "senml", "", `[{"bn":"a:"},{"n":"t","v":1},{"n":"u","v":1},{"n":"t","vb":true}]`,
			ReasonDuplicateTimestamp, []string{`metric "a:t"`, "records 1 and 3"}},
		{"senml times within one millisecond", "senml", "", `[{"n":"t","v":1,"t":-0.0001},{"n":"t","v":2,"t":-0.0002}]`,
			ReasonDuplicateTimestamp, nil},
		{"events equal at one ms", "event", "", `[{"ts":1777636740000,"event":"tamper"},{"ts":"2026-05-01T11:59:00.000Z","event":"tamper","value":2}]`,
			ReasonDuplicateTimestamp, []string{`metric "event.tamper"`, "records 0 and 1"}},
		{"wildfi imu array without hz", "wildfi-sensor", "imu", `{"ts":1777636740000,"ax":[0.1,0.2,0.3]}`,
			ReasonMissingField, []string{"imu.ax has 3 samples but no hz"}},
		{"wildfi imu hz finer than a millisecond", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":1001,"ax":[0.1,0.2]}`,
			ReasonInvalidValue, []string{"hz 1001 is above 1000"}},
		{"wildfi batch objects at one ts", "wildfi-sensor", "env", `[{"ts":1777636740000,"temp":1},{"timestamp":1777636740000,"temp":2}]`,
			ReasonDuplicateTimestamp, []string{`metric "env.temp"`, "records 0 and 1"}},
		{"wildfi nested and dotted numbers", "wildfi-sensor", "env", `{"ts":1777636740000,"temp":{"c":1},"temp.c":2}`,
			ReasonDuplicateTimestamp, []string{`"env.temp.c"`}},
		{"wildfi gps batch at one ts", "wildfi-gps", "gps", `[{"ts":1777636740000,"lat":1,"lon":1},{"ts":1777636740000,"lat":2,"lon":2}]`,
			ReasonDuplicateTimestamp, []string{"two GPS fixes at ts 2026-05-01T11:59:00Z (fixes 0 and 1"}},
	})
	runAcceptances(t, DefaultLimits(), []acceptCase{
		{"senml same name distinct times", "senml", "", `[{"n":"temp","v":1,"t":-2},{"n":"temp","v":2,"t":-1},{"n":"temp","v":3}]`, 3, nil},
		{"wildfi single sample needs no hz", "wildfi-sensor", "imu", `{"ts":1777636740000,"ax":[0.1],"ay":[0.2]}`, 2, nil},
		{"wildfi hz 1000", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":1000,"ax":[1,2,3]}`, 3, func(t *testing.T, out *Output) {
			for i, r := range out.Sensor {
				if want := now.Add(-time.Minute + time.Duration(i)*time.Millisecond); !r.TS.Equal(want) {
					t.Errorf("sample %d at %v, want %v", i, r.TS, want)
				}
			}
		}},
		{"many measurements", "sensor", "", `{"ts":1777636740000,"measurements":{` + manyMeasurements(40) + `}}`, 40, nil},
	})
}

func manyMeasurements(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"m` + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":1`
	}
	return strings.Join(parts, ",")
}

// TestRedeliveryKeepsIDs: the records that survive the collision rules are
// still the same records, with the same ids, when the message comes again.
func TestRedeliveryKeepsIDs(t *testing.T) {
	for _, tc := range []struct{ decoder, kind, payload string }{
		{"wildfi-sensor", "imu", `{"ts":1777636740000,"hz":25,"ax":[1,2,3],"ay":[1,2,3]}`},
		{"senml", "", `[{"bt":1777636740,"n":"a","v":1},{"n":"a","t":1,"v":2}]`},
		{"event", "", `[{"ts":1777636740000,"event":"a"},{"ts":1777636740001,"event":"a"}]`},
	} {
		d, _ := Lookup(tc.decoder)
		var first, again Output
		if err := Decode(d.Func, input(tc.decoder, tc.kind, tc.payload), DefaultLimits(), &first); err != nil {
			t.Fatal(err)
		}
		in := input(tc.decoder, tc.kind, tc.payload)
		in.ReceivedAt = now.Add(10 * time.Minute)
		if err := Decode(d.Func, in, DefaultLimits(), &again); err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for i := range first.Sensor {
			if first.Sensor[i].EventID != again.Sensor[i].EventID {
				t.Errorf("%s: record %d has another id on redelivery", tc.decoder, i)
			}
			ids[first.Sensor[i].EventID] = true
		}
		if len(ids) != len(first.Sensor) {
			t.Errorf("%s: %d ids for %d records", tc.decoder, len(ids), len(first.Sensor))
		}
	}
}

// TestDuplicateKeys: a key the decoders read, given twice, rejects the
// message instead of keeping the last value.
func TestDuplicateKeys(t *testing.T) {
	runRejections(t, DefaultLimits(), []rejectCase{
		{"measurement twice", "sensor", "", `{"ts":1777636740000,"measurements":{"temp":1,"temp":2}}`,
			ReasonDuplicateKey, []string{`key "temp" appears twice in measurements`}},
		{"measurement twice escaped", "sensor", "", `{"ts":1777636740000,"measurements":{"temp":1,"te\u006dp":2}}`,
			ReasonDuplicateKey, []string{`"temp"`}},
		{"value twice", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"value":2}`,
			ReasonDuplicateKey, []string{`field "value" appears twice`}},
		{"value in two cases", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"Value":2}`,
			ReasonDuplicateKey, []string{`(as "value" and "Value")`}},
		{"ts and a unicode fold of it", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"tſ":1}`,
			ReasonDuplicateKey, []string{`field "ts"`}},
		{"attrs key twice", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"attrs":{"a":"x","a":"y"}}`,
			ReasonDuplicateKey, []string{`key "a" appears twice in attrs`}},
		{"units key twice", "sensor", "", `{"ts":1777636740000,"measurements":{"t":1},"units":{"t":"Cel","t":"K"}}`,
			ReasonDuplicateKey, []string{"in units"}},
		{"gps lat twice", "gps", "", `{"ts":1777636740000,"lat":1,"lon":2,"LAT":3}`, ReasonDuplicateKey, []string{`field "lat"`}},
		{"media key twice", "media", "image2d", `{"ts":1777636740000,"bucket":"b","key":"a","key":"b","size":1,"content_type":"image/png"}`, ReasonDuplicateKey, nil},
		{"heartbeat battery twice", "heartbeat", "", `{"ts":1777636740000,"battery":1,"battery":2}`, ReasonDuplicateKey, nil},
		{"event in array", "event", "", `[{"ts":1777636740000,"event":"a"},{"ts":1777636740001,"event":"b","event":"c"}]`,
			ReasonDuplicateKey, []string{"event 1 of the array", `field "event"`}},
		{"senml v twice", "senml", "", `[{"n":"a","v":1,"v":2}]`, ReasonDuplicateKey, []string{`key "v" appears twice in [0]`}},
		{"wildfi ts and timestamp", "wildfi-sensor", "env", `{"ts":1777636740000,"timestamp":1777636740001,"t":1}`,
			ReasonDuplicateKey, []string{`gives both "ts" and "timestamp"`}},
		{"wildfi lat aliases", "wildfi-gps", "gps", `{"ts":1777636740000,"lat":1,"latitude":2,"lon":1}`, ReasonDuplicateKey, nil},
		{"wildfi nested key twice", "wildfi-sensor", "env", `{"ts":1777636740000,"a":{"b":1,"b":2}}`, ReasonDuplicateKey, []string{"appears twice in a", `"b"`}},
		{"wildfi string attrs flatten to one", "wildfi-sensor", "env", `{"ts":1777636740000,"t":1,"a":{"b":"x"},"a.b":"y"}`,
			ReasonDuplicateKey, []string{`gives "a.b" twice`}},
		{"wildfi index attr clashes", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":10,"ax":[1,2],"index":"x"}`, ReasonDuplicateKey, nil},
	})
	runAcceptances(t, DefaultLimits(), []acceptCase{
		{"unknown field twice is ignored", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"note":"a","note":"b"}`, 1, nil},
		{"empty keys", "gps", "", `{"":1,"ts":1777636740000,"lat":1,"lon":1,"attrs":{"":"x"},"":2}`, 1, nil},
		{"same key in sibling objects", "sensor", "", `{"ts":1777636740000,"measurements":{"a":1},"units":{"a":"Cel"},"attrs":{"a":"x"}}`, 1, nil},
		{"wildfi device_id and device", "wildfi-sensor", "env", `{"ts":1777636740000,"device_id":"cow-7","device":"cow-7","t":1}`, 1, nil},
	})
}

// TestOutOfRangeValues: numbers and times that cannot be represented are
// rejected with the value received, never stored as something else.
func TestOutOfRangeValues(t *testing.T) {
	runRejections(t, DefaultLimits(), []rejectCase{
		{"value underflow", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1e-400}`, ReasonInvalidValue, []string{"value 1e-400 underflows"}},
		{"negative underflow", "sensor", "", `{"ts":1777636740000,"metric":"t","value":-0.00001e-330}`, ReasonInvalidValue, []string{"-0.00001e-330"}},
		{"measurement underflow", "sensor", "", `{"ts":1777636740000,"measurements":{"a":2.5e-999}}`, ReasonInvalidValue, []string{"measurements.a 2.5e-999"}},
		{"senml underflow", "senml", "", `[{"n":"a","v":1e-400}]`, ReasonInvalidValue, []string{"1e-400"}},
		{"senml bv plus v overflows", "senml", "", `[{"bv":1e308,"n":"a","v":1e308}]`, ReasonInvalidValue, []string{"bv + v = 1e+308 + 1e+308 overflows"}},
		{"senml bs plus s overflows", "senml", "", `[{"bs":-1e308,"n":"a","s":-1e308}]`, ReasonInvalidValue, []string{"bs + s"}},
		{"wildfi underflow", "wildfi-sensor", "env", `{"ts":1777636740000,"t":1e-400}`, ReasonInvalidValue, []string{"env.t 1e-400 underflows"}},
		{"wildfi overflow", "wildfi-sensor", "env", `{"ts":1777636740000,"t":-1e400}`, ReasonInvalidValue, []string{"env.t -1e400 overflows"}},
		{"wildfi hz underflow", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":1e-400,"ax":[1,2]}`, ReasonInvalidValue, []string{"hz 1e-400 underflows"}},
		{"wildfi hz zero", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":0,"ax":[1,2]}`, ReasonInvalidValue, []string{"hz 0 must be positive"}},
		{"wildfi hz negative", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":-25,"ax":[1,2]}`, ReasonInvalidValue, nil},
		{"wildfi hz tiny", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":1e-300,"ax":[1,2]}`, ReasonInvalidValue, []string{"hz 1e-300: sample 1"}},
		{"wildfi hz huge", "wildfi-sensor", "imu", `{"ts":1777636740000,"hz":1e300,"ax":[1,2]}`, ReasonInvalidValue, nil},
		{"gps lat underflow", "gps", "", `{"ts":1777636740000,"lat":1e-400,"lon":1}`, ReasonInvalidValue, []string{"lat 1e-400"}},
		{"gps lat just above 90", "gps", "", `{"ts":1777636740000,"lat":90.000001,"lon":1}`, ReasonOutOfRange, []string{"90.000001"}},
		{"gps lon just below -180", "gps", "", `{"ts":1777636740000,"lat":0,"lon":-180.0000001}`, ReasonOutOfRange, nil},
		{"gps alt overflow", "gps", "", `{"ts":1777636740000,"lat":0,"lon":0,"alt":1e999}`, ReasonInvalidValue, []string{"alt 1e999"}},

		{"rfc3339 year 0000", "sensor", "", `{"ts":"0000-06-01T00:00:00Z","metric":"t","value":1}`, ReasonInvalidTS, []string{`"0000-06-01T00:00:00Z"`, "outside the years 0001-9999"}},
		{"rfc3339 offset past year 9999", "sensor", "", `{"ts":"9999-12-31T23:59:59-23:59","metric":"t","value":1}`, ReasonInvalidTS, []string{"10000-01-01T23:58:59Z"}},
		{"rfc3339 offset before year 1", "sensor", "", `{"ts":"0001-01-01T00:00:00+01:00","metric":"t","value":1}`, ReasonInvalidTS, nil},
		{"rfc3339 offset 24h", "sensor", "", `{"ts":"2026-05-01T12:00:00+24:00","metric":"t","value":1}`, ReasonInvalidTS, []string{"offset of 24 hours or more"}},
		{"rfc3339 offset 99h", "sensor", "", `{"ts":"2026-05-01T12:00:00+99:00","metric":"t","value":1}`, ReasonInvalidTS, []string{`"2026-05-01T12:00:00+99:00"`, "offset hour out of range"}},
		{"rfc3339 second 61", "sensor", "", `{"ts":"2026-05-01T11:59:61Z","metric":"t","value":1}`, ReasonInvalidTS, []string{"second out of range"}},
		{"rfc3339 with a bidi override", "sensor", "", `{"ts":"2026-05-01T11:59:00Z\u202e","metric":"t","value":1}`, ReasonInvalidTS, []string{`\u202e`}},
		{"epoch ms huge", "sensor", "", `{"ts":1e300,"metric":"t","value":1}`, ReasonInvalidTS, []string{"ts 1e300 is not epoch milliseconds in the years 0001-9999"}},
		{"epoch ms overflow", "sensor", "", `{"ts":1e999,"metric":"t","value":1}`, ReasonInvalidTS, []string{"1e999"}},
		{"epoch ms past 9999", "sensor", "", `{"ts":253402300800000,"metric":"t","value":1}`, ReasonInvalidTS, nil},
		{"epoch ms before year 1", "event", "", `{"ts":-62135596800001,"event":"a"}`, ReasonInvalidTS, []string{"-62135596800001"}},
		{"wildfi ts huge", "wildfi-gps", "gps", `{"timestamp":-1e20,"lat":1,"lon":1}`, ReasonInvalidTS, []string{"timestamp -1e20"}},
		{"senml bt of year 1", "senml", "", `[{"bt":-62135596800,"n":"a","v":1}]`, ReasonInvalidTS, []string{"bt + t = -62135596800 + 0 = -62135596800 s is out of range"}},
		{"senml bt plus t overflows", "senml", "", `[{"bt":1e308,"n":"a","t":1e308,"v":1}]`, ReasonInvalidTS, []string{"1e+308 + 1e+308"}},
		{"senml bt past 9999", "senml", "", `[{"bt":253402300800,"n":"a","v":1}]`, ReasonInvalidTS, []string{"253402300800"}},
		{"senml relative beyond 2^28", "senml", "", `[{"n":"a","t":-300000000,"v":1}]`, ReasonInvalidTS, []string{"-300000000"}},

		{"year 1 is too old, in years", "sensor", "", `{"ts":"0001-01-01T00:00:00Z","metric":"t","value":1}`, ReasonTSTooOld, []string{"0001-01-01T00:00:00Z is 739736 days (about 2025 years) before"}},
		{"year 9999 is in the future, in years", "sensor", "", `{"ts":"9999-12-31T23:59:59.999Z","metric":"t","value":1}`, ReasonTSFuture, []string{"9999-12-31T23:59:59.999Z is 2912322 days (about 7973 years) after"}},
		{"negative epoch ms", "sensor", "", `{"ts":-1,"metric":"t","value":1}`, ReasonTSTooOld, []string{"1969-12-31T23:59:59.999Z", "epoch milliseconds, not seconds"}},
	})
	runAcceptances(t, DefaultLimits(), []acceptCase{
		{"zero literals", "sensor", "", `{"ts":1777636740000,"measurements":{"a":0,"b":-0,"c":0.0,"d":0e10,"e":0.000e-400}}`, 5, nil},
		{"subnormal kept", "sensor", "", `{"ts":1777636740000,"metric":"t","value":5e-324}`, 1, func(t *testing.T, out *Output) {
			if out.Sensor[0].Value != 5e-324 {
				t.Errorf("value %v", out.Sensor[0].Value)
			}
		}},
		{"lat and lon boundaries", "gps", "", `{"ts":1777636740000,"lat":-90,"lon":180}`, 1, nil},
		{"leap second is the next minute", "sensor", "", `{"ts":"2026-04-30T23:59:60.250Z","metric":"t","value":1}`, 1, func(t *testing.T, out *Output) {
			if want := time.Date(2026, 5, 1, 0, 0, 0, 250e6, time.UTC); !out.Sensor[0].TS.Equal(want) {
				t.Errorf("ts %v, want %v", out.Sensor[0].TS, want)
			}
		}},
		{"offset 23:59", "sensor", "", `{"ts":"2026-05-01T11:00:00-00:59","metric":"t","value":1}`, 1, nil},
		{"epoch ms fraction floors", "sensor", "", `{"ts":1777636740000.9,"metric":"t","value":1}`, 1, func(t *testing.T, out *Output) {
			if out.Sensor[0].TS.UnixMilli() != 1777636740000 {
				t.Errorf("ts %v", out.Sensor[0].TS)
			}
		}},
	})
	// Without limits the range still holds, and the extremes are exact
	// (a SenML bt of year 1 once came out as 1811).
	runAcceptances(t, Limits{}, []acceptCase{
		{"year 1 exact", "sensor", "", `{"ts":-62135596800000,"metric":"t","value":1}`, 1, func(t *testing.T, out *Output) {
			if !out.Sensor[0].TS.Equal(minTS) {
				t.Errorf("ts %v", out.Sensor[0].TS)
			}
		}},
		{"year 9999 exact", "senml", "", `[{"bt":253402300799,"n":"a","v":1}]`, 1, func(t *testing.T, out *Output) {
			if out.Sensor[0].TS.Year() != 9999 {
				t.Errorf("ts %v", out.Sensor[0].TS)
			}
		}},
		{"senml relative within 2^28", "senml", "", `[{"n":"a","t":-268435455,"v":1}]`, 1, func(t *testing.T, out *Output) {
			if want := now.Add(-268435455 * time.Second); !out.Sensor[0].TS.Equal(want) {
				t.Errorf("ts %v, want %v", out.Sensor[0].TS, want)
			}
		}},
	})
	runRejections(t, Limits{}, []rejectCase{
		{"wildfi samples past 9999", "wildfi-sensor", "imu", `{"ts":"9999-12-31T23:59:59.999Z","hz":1,"ax":[1,2]}`, ReasonInvalidTS, []string{"outside the years 0001-9999"}},
	})
}

// TestIdentityAndNames: ids a payload names and metric names must be
// printable; the messages that say so escape what they quote.
func TestIdentityAndNames(t *testing.T) {
	runRejections(t, DefaultLimits(), []rejectCase{
		{"device_id with bidi override", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"device_id":"cow\u202e7"}`,
			ReasonBadIdentity, []string{`device id "cow\u202e7"`}},
		{"device with escape sequence", "gps", "", `{"ts":1777636740000,"lat":1,"lon":1,"device":"cow-7\u001b[31m"}`,
			ReasonBadIdentity, []string{`\x1b[31m`}},
		{"device_id with NUL", "event", "", `{"ts":1777636740000,"event":"a","device_id":"cow-7\u0000"}`, ReasonBadIdentity, []string{`\x00`}},
		{"device_id lone surrogate", "heartbeat", "", `{"ts":1777636740000,"device_id":"\ud800"}`, ReasonBadIdentity, nil},
		{"wildfi device_id", "wildfi-sensor", "env", `{"ts":1777636740000,"device_id":"a/b","t":1}`, ReasonBadIdentity, []string{`"a/b"`}},
		{"well-formed other device", "sensor", "", `{"ts":1777636740000,"metric":"t","value":1,"device_id":"cow-8"}`, ReasonDeviceMismatch, nil},
		{"metric with bidi override", "sensor", "", `{"ts":1777636740000,"metric":"temp\u202e","value":1}`, ReasonInvalidMetric, []string{`"temp\u202e"`}},
		{"metric with escape sequence", "sensor", "", `{"ts":1777636740000,"metric":"\u001b]0;pwned\u0007","value":1}`, ReasonInvalidMetric, []string{`\x1b]0;pwned\a`}},
		{"metric with C1 control", "sensor", "", `{"ts":1777636740000,"metric":"a\u009b31m","value":1}`, ReasonInvalidMetric, []string{`\u009b`}},
		{"metric too long", "sensor", "", `{"ts":1777636740000,"metric":"` + strings.Repeat("m", MaxMetric+1) + `","value":1}`, ReasonInvalidMetric, []string{"257 bytes, limit 256"}},
		{"measurement key with control", "sensor", "", `{"ts":1777636740000,"measurements":{"a\u0000":1}}`, ReasonInvalidMetric, nil},
		{"wildfi key with bidi", "wildfi-sensor", "env", `{"ts":1777636740000,"t\u2066":1}`, ReasonInvalidMetric, nil},
		{"measurement key with newline in another failure", "sensor", "", `{"ts":1777636740000,"measurements":{"a\n\u202e":"x"}}`, ReasonInvalidValue, []string{`a\n\u202e`}},
		{"senml name with bidi", "senml", "", `[{"n":"a\u202eb","v":1}]`, ReasonSenMLInvalidName, []string{`\u202e`}},
		{"event severity with escape", "event", "", `{"ts":1777636740000,"event":"a","severity":"\u001b[2J"}`, ReasonEventInvalidSeverity, []string{`\x1b[2J`}},
	})
	runAcceptances(t, DefaultLimits(), []acceptCase{
		{"non-ASCII metric", "sensor", "", `{"ts":1777636740000,"metric":"température °C","value":1}`, 1, nil},
	})
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"température °C ✓", "température °C ✓"},
		{"a\u202eb", `a\u202eb`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"nul\x00", `nul\x00`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"\xed\xa0\x80", `\xed\xa0\x80`}, // a UTF-8-encoded lone surrogate
		{"c1\u0085\u009b", `c1\u0085\u009b`},
		{"tab\tnl\n", `tab\tnl\n`},
		{"nbsp\u00a0zwsp\u200b", `nbsp\u00a0zwsp\u200b`},
		{"tag\U000E0041", `tag\U000e0041`},
		{`back\slash "quotes"`, `back\slash "quotes"`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if s := "kept"; Escape(s) != s {
		t.Error("Escape changed printable text")
	}
}

func TestKeyRulesFitMaxFields(t *testing.T) {
	for _, r := range []*keyRule{&sensorKeys, &gpsKeys, &mediaKeys, &beatKeys, &eventKeys} {
		if len(r.fields) > maxFields {
			t.Errorf("%d fields, more than %d", len(r.fields), maxFields)
		}
		for _, m := range r.maps {
			found := false
			for _, f := range r.fields {
				found = found || f == m
			}
			if !found {
				t.Errorf("map field %q is not a field of %v", m, r.fields)
			}
		}
	}
	if got := strings.Join(sensorKeys.fields, ","); got != strings.Join(sensorFields, ",") {
		t.Errorf("fast path's sensorFields %v differ from sensorJSON's %v", sensorFields, got)
	}
}

func TestRejectionMessagesAreBounded(t *testing.T) {
	key := strings.Repeat("\u202e", 50000)
	_, de := verdict(t, "sensor", "", `{"ts":1777636740000,"measurements":{"`+key+`":"x"}}`, DefaultLimits())
	if de == nil || len(de.Message) > MaxMessage+len("…") || Escape(de.Message) != de.Message {
		t.Fatalf("rejection %+v", de)
	}
}
