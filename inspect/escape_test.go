package inspect

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// hostile are field values a device or an attacker can get into a topic:
// a bidi override, an escape sequence, NUL, DEL, a C1 control, a zero-width
// joiner, a tag character, invalid UTF-8 and a UTF-8-encoded lone surrogate.
var hostile = []string{"cow\u202e7", "\x1b[31mred", "nul\x00", "del\x7f", "c1\u009b2J", "zw\u200djoin", "tag\U000E0041", "bad\xff", "sur\xed\xa0\x80"}

// terminalSafe reports the first bytes of out that a terminal would
// interpret or hide rather than show: control and format characters, line
// and paragraph separators, private-use runes and invalid UTF-8 (newlines
// between lines aside).
func terminalSafe(out string) (string, bool) {
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		if r != '\n' && (r == utf8.RuneError && n == 1 || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co)) {
			return out[i:min(len(out), i+8)], false
		}
		i += n
	}
	return "", true
}

// TestTableRowEscapes renders rows whose key, field values and errors hold
// hostile text: the row must be printable, with the text escaped.
func TestTableRowEscapes(t *testing.T) {
	tw := newTableWriter([]string{"raw.sensor", "t\u202e"}, 0)
	for _, h := range hostile {
		for _, d := range []decoded{
			{rec: &kgo.Record{Topic: "raw.sensor", Key: []byte(h)}, value: map[string]any{"metric": h, "value": 1.5, "tags": map[string]any{h: h}}},
			{rec: &kgo.Record{Topic: "t\u202e", Key: []byte("k")}, value: h},
			{rec: &kgo.Record{Topic: "raw.sensor", Key: []byte("k"), Value: []byte(h)}, err: errors.New("decoding " + h)},
		} {
			row := string(tw.appendRow(nil, &d))
			if bad, ok := terminalSafe(row); !ok {
				t.Errorf("row for %q prints %q raw:\n%q", h, bad, row)
			}
		}
	}
	d := decoded{rec: &kgo.Record{Topic: "raw.sensor", Key: []byte("cow\u202e7")}, value: map[string]any{"metric": "\x1b[31mred"}}
	row := string(tw.appendRow(nil, &d))
	for _, want := range []string{`"cow\u202e7"`, `metric="\x1b[31mred"`} {
		if !strings.Contains(row, want) {
			t.Errorf("row %q lacks %s", row, want)
		}
	}
	if row := string(tw.appendRow(nil, &decoded{rec: &kgo.Record{Topic: "t\u202e"}, value: "v"})); !strings.Contains(row, `"t\u202e"`) {
		t.Errorf("topic not quoted: %q", row)
	}
	if d := (decoded{rec: &kgo.Record{Topic: "raw.sensor", Key: []byte("collar-7")}, value: map[string]any{"metric": "température"}}); !strings.Contains(string(tw.appendRow(nil, &d)), "collar-7  ") ||
		!strings.Contains(string(tw.appendRow(nil, &d)), "metric=température") {
		t.Errorf("printable text changed: %q", tw.appendRow(nil, &d))
	}
}

// TestJSONLineEscapes: the JSON lines are valid JSON that round-trips the
// text, and print no control or format character raw either.
func TestJSONLineEscapes(t *testing.T) {
	for _, h := range hostile {
		b := appendString(nil, h)
		if bad, ok := terminalSafe(string(b)); !ok {
			t.Errorf("JSON for %q prints %q raw: %s", h, bad, b)
		}
		lines := parseLines(t, `{"topic":`+string(b)+"}\n")
		if want := strings.ToValidUTF8(h, "\uFFFD"); utf8.ValidString(h) && lines[0].Topic != want {
			t.Errorf("%q round-trips to %q", h, lines[0].Topic)
		}
	}
}

// TestIntegrationTailEscapesHostileText tails records a device could have
// produced (before the bridge checked identity, or through another door)
// in both formats.
func TestIntegrationTailEscapesHostileText(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	ts := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	r := sensor("cow\u202e7", "temp\x1b[2J", 1, ts)
	r.Attrs = map[string]string{"note": "a\x00b\u009b", "\u2066k": "v"}
	dl := schemas.DeadLetter{ID: "x", Stage: "route", Reason: "invalid_identity", Message: "msg \x1b]0;title\x07",
		Source: "devices/farm/cow\u202e7/sensor", Payload: []byte("{\"a\":\"\u202e\"}"), PayloadSize: 12,
		ReceivedAt: ts, TS: ts, IngestedAt: ts, Headers: map[string]string{"mqtt.user.x\u202e": "\x1b[31m"}}
	s.produce(s.record(topics.RawSensor, 0, "cow\u202e7", ts, r), s.record(topics.DLQ, 0, "devices/farm/cow\u202e7/sensor", ts, dl))
	for _, format := range []string{"table", "json"} {
		out := s.tail(topics.RawSensor, topics.DLQ, "--follow=false", "--format", format)
		if out.err != nil {
			t.Fatal(out.err)
		}
		t.Logf("%s:\n%s", format, out.out)
		if bad, ok := terminalSafe(out.out); !ok {
			t.Errorf("%s output prints %q raw", format, bad)
		}
		if n := strings.Count(strings.TrimSpace(out.out), "\n") + 1; n < 2 {
			t.Errorf("%s output has %d lines", format, n)
		}
		if format == "json" {
			for _, l := range parseLines(t, out.out) {
				if l.Topic == topics.RawSensor && (l.Value["device_id"] != "cow\u202e7" || l.Value["metric"] != "temp\x1b[2J") {
					t.Errorf("JSON changed the values: %v", l.Value)
				}
			}
		}
	}
}

// TestDevicesTableEscapes: drover devices prints ids and firmware that
// came from devices; the table must not print them raw either.
func TestDevicesTableEscapes(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	var out strings.Builder
	fw := "1.0\x1b]0;pwned\x07"
	devs := []Device{{Tenant: "farm\u202e", DeviceID: "cow\x1b[2J", LastSeen: now, Firmware: &fw}, {Tenant: "farm-1", DeviceID: "collar-7", LastSeen: now}}
	if err := writeDevices(&out, devs, now); err != nil {
		t.Fatal(err)
	}
	if bad, ok := terminalSafe(out.String()); !ok {
		t.Fatalf("devices table prints %q raw:\n%s", bad, out.String())
	}
	for _, want := range []string{`"farm\u202e"`, `"cow\x1b[2J"`, `"1.0\x1b]0;pwned\a"`, "farm-1  ", "collar-7  "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("devices table lacks %s:\n%s", want, out.String())
		}
	}
}
