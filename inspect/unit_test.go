package inspect

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/topics"
)

func TestParsePosition(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		in      string
		want    Position
		wantErr string
	}{
		{"earliest", "earliest", Position{Kind: Earliest}, ""},
		{"beginning alias", "beginning", Position{Kind: Earliest}, ""},
		{"latest", "LATEST", Position{Kind: Latest}, ""},
		{"offset", "1500", Position{Kind: Offset, N: 1500}, ""},
		{"zero", "0", Position{Kind: Offset, N: 0}, ""},
		{"from end", "-20", Position{Kind: FromEnd, N: 20}, ""},
		{"rfc3339", "2026-11-23T05:00:00Z", Position{Kind: Time, At: now.Add(-time.Hour)}, ""},
		{"rfc3339 offset zone", "2026-11-23T07:00:00+02:00", Position{Kind: Time, At: now.Add(-time.Hour)}, ""},
		{"date", "2026-11-23", Position{Kind: Time, At: now.Add(-6 * time.Hour)}, ""},
		{"duration", "-10m", Position{Kind: Time, At: now.Add(-10 * time.Minute)}, ""},
		{"compound duration", "-1h30m", Position{Kind: Time, At: now.Add(-90 * time.Minute)}, ""},
		{"empty", " ", Position{}, "bad position: empty"},
		{"bad unit", "-10x", Position{}, `"-10x" is not a duration before now (e.g. -10m, -2h, -1h30m): unknown unit "x"`},
		{"no unit", "-1.5.3", Position{}, `"-1.5.3" is not a duration before now (e.g. -10m, -2h, -1h30m): missing unit`},
		{"garbage", "-abc", Position{}, `"-abc" is not a duration before now (e.g. -10m, -2h, -1h30m): invalid duration`},
		{"zero duration", "-0s", Position{}, "must be positive"},
		{"bad month", "2026-13-01T00:00:00Z", Position{}, `bad position: "2026-13-01T00:00:00Z"`},
		{"word", "yesterday", Position{}, `bad position: "yesterday"`},
		{"positive duration", "10m", Position{}, `bad position: "10m"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePosition(c.in, now)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != c.want.Kind || got.N != c.want.N || !got.At.Equal(c.want.At) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			if back, err := ParsePosition(got.String(), now); err != nil || back.Kind != got.Kind {
				t.Errorf("String %q does not parse back: %v", got.String(), err)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	env := func() map[string]any {
		return map[string]any{
			"metric": "temperature", "value": 39.7, "count": int64(3), "online": true,
			"attrs": map[string]any{"site": "north", "pen": "7"},
			"ts":    time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC),
		}
	}
	for _, c := range []struct {
		name    string
		wheres  []string
		want    bool
		wantErr string
	}{
		{"shorthand string", []string{"metric=temperature"}, true, ""},
		{"shorthand mismatch", []string{"metric=humidity"}, false, ""},
		{"shorthand number", []string{"count=3"}, true, ""},
		{"shorthand bool", []string{"online=true"}, true, ""},
		{"shorthand nested", []string{"attrs.pen=7"}, false, ""}, // 7 is a number; pen is the string "7"
		{"nested quoted", []string{`attrs.pen == "7"`}, true, ""},
		{"greater", []string{"value>39.5"}, true, ""},
		{"int vs float", []string{"count >= 2.5"}, true, ""},
		{"and of two", []string{"metric=temperature", "value < 39.5"}, false, ""},
		{"time", []string{`ts > '2026-11-23T05:00:00Z'`}, true, ""},
		{"double equals kept", []string{`metric == "temperature"`}, true, ""},
		{"not equals", []string{`metric != "temperature"`}, false, ""},
		{"missing field compares nil", []string{`nosuch == nil`}, true, ""},
		{"syntax error", []string{"value >"}, false, `bad filter: --where "value >": line 1, column 8: unexpected end of input`},
		{"unbalanced", []string{"(value > 1"}, false, `--where "(value > 1"`},
		{"field named like a builtin", []string{"count > 2", "count=3"}, true, ""},
		{"functions", []string{"round(value) = 40", `upper(attrs.site) == "NORTH"`}, true, ""},
		{"SQL spellings", []string{"metric IN ('temperature', 'humidity') AND value BETWEEN 39 AND 41 AND attrs IS NOT NULL AND unit IS NULL"}, true, ""},
		{"empty", []string{""}, false, "empty expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := NewFilter(nil, nil, c.wheres)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := f.MatchValue(env())
			if got != c.want {
				t.Errorf("match %v, want %v", got, c.want)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "ctl \x00\x01\x1f\n\r\t", "uni é ∑ 😀", "bad \xff\xfe utf8", "sep \u2028 \u2029", "<html>&"} {
		got := appendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q → %s: %v", s, got, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if back != want {
			t.Errorf("%q round-trips to %q", s, back)
		}
	}
}

func TestAppendAny(t *testing.T) {
	v := map[string]any{"b": []byte("hi"), "a": math.NaN(), "c": []any{int32(1), float32(0.5), nil, true}, "t": time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}
	got := string(appendAny(nil, v))
	want := `{"a":"NaN","b":"aGk=","c":[1,0.5,null,true],"t":"2026-01-02T03:04:05.006Z"}`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestExcerpt(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"text", `{"a": 1}`, `{"a": 1}`},
		{"whitespace folded", "a\n  b", "a b"},
		{"long text cut", strings.Repeat("x", 100), strings.Repeat("x", 80) + "…"},
		{"binary", "\x00\x01\x02", "hex:000102"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := excerpt([]byte(c.in), 80); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestCheckFields(t *testing.T) {
	cases := []struct {
		topics  []string
		where   string
		wantErr string
	}{
		{[]string{topics.RawSensor}, "value > 39.5 && metric == \"temperature\"", ""},
		{[]string{topics.RawSensor, topics.RawGPS}, "lat > 50", ""}, // raw.gps has it
		{[]string{topics.RawSensor}, `_key == "a" && _headers.x == "y" && _partition < 3`, ""},
		{[]string{topics.RawSensor}, `ts > '2026-01-01T00:00:00Z' && lower(metric) IN ('x') AND unit IS NULL`, ""},
		{[]string{topics.Features}, "count > 10 && distance_m > 1", ""},
		{[]string{"some.foreign.topic"}, "whatever > 1", ""}, // no schema: not checked
		{[]string{topics.RawSensor, "some.foreign.topic"}, "whatever > 1", ""},
		{[]string{topics.RawSensor}, "vaule > 1", `--where "vaule > 1": raw.sensor has no field "vaule" (fields: event_id, tenant, device_id, ts, ingested_at, metric, value, unit, source, replayed, attrs); the record fields are _key, _topic, _partition, _offset, _timestamp, _headers`},
		{[]string{topics.DLQ}, `stage == "validate" && reasn == "x"`, `dlq.events has no field "reasn"`},
		{[]string{topics.Features}, "metric == \"motion\" && distance > 1000", `features.events has no field "distance"`},
	}
	for _, c := range cases {
		t.Run(c.where, func(t *testing.T) {
			f, err := NewFilter(nil, nil, []string{c.where})
			if err != nil {
				t.Fatal(err)
			}
			err = f.CheckFields(c.topics)
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrBadFilter) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
}
