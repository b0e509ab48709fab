package inspect

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/topics"
)

// Output formats of `drover tail` (--format).
const (
	FormatJSON  = "json"
	FormatTable = "table"
	FormatRaw   = "raw"
)

// hexExcerpt is how many bytes of an undecodable value the hex excerpt shows.
const hexExcerpt = 32

// payloadExcerpt is how many characters of a dead letter's payload are shown.
const payloadExcerpt = 80

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth returns w's width in columns, or 0 when unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return cols
}

// decoded is one record and what decoding its value gave.
type decoded struct {
	rec      *kgo.Record
	schemaID int
	schema   avro.Schema // writer schema, when decoded
	value    any         // generic decoded value, when decoded
	err      error       // why the value did not decode
	tomb     bool        // nil value: a tombstone
	fast     bool        // the JSON line was written by the fast path
}

// appendEnvelope appends the start of r's JSON line: topic, partition,
// offset, timestamp, key and headers, without the closing brace.
func appendEnvelope(b []byte, r *kgo.Record) []byte {
	b = append(b, `{"topic":`...)
	b = appendString(b, r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `,"timestamp":`...)
	b = appendMillis(b, r.Timestamp.UnixMilli())
	switch {
	case r.Key == nil:
		b = append(b, `,"key":null`...)
	case utf8.Valid(r.Key):
		b = append(b, `,"key":`...)
		b = appendString(b, string(r.Key))
	default:
		b = append(b, `,"key_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Key)
		b = append(b, '"')
	}
	if len(r.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		for i, h := range r.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, h.Key)
			b = append(b, ':')
			b = appendString(b, string(h.Value))
		}
		b = append(b, '}')
	}
	return b
}

// appendJSONLine appends d as one JSON object and a newline.
func appendJSONLine(b []byte, d *decoded) []byte {
	r := d.rec
	b = appendEnvelope(b, r)
	switch {
	case d.tomb:
		b = append(b, `,"value":null,"tombstone":true`...)
	case d.err != nil:
		if d.schemaID != 0 {
			b = append(b, `,"schema_id":`...)
			b = strconv.AppendInt(b, int64(d.schemaID), 10)
		}
		b = append(b, `,"value":null,"error":`...)
		b = appendString(b, d.err.Error())
		b = append(b, `,"value_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Value)
		b = append(b, `","value_hex":"`...)
		b = hex.AppendEncode(b, r.Value[:min(len(r.Value), hexExcerpt)])
		b = append(b, '"')
	default:
		b = append(b, `,"schema_id":`...)
		b = strconv.AppendInt(b, int64(d.schemaID), 10)
		b = append(b, `,"value":`...)
		b = appendValue(b, d.schema, d.value)
		if r.Topic == topics.DLQ {
			if m, ok := d.value.(map[string]any); ok {
				if p, ok := m["payload"].([]byte); ok {
					b = append(b, `,"payload_excerpt":`...)
					b = appendString(b, excerpt(p, payloadExcerpt))
				}
			}
		}
	}
	return append(b, '}', '\n')
}

// excerpt renders the start of p for a human: the text itself when it is
// printable UTF-8, else "hex:" and the hex of the first bytes; "…" marks a
// cut.
func excerpt(p []byte, n int) string {
	if utf8.Valid(p) && printable(p) {
		s := string(p)
		s = strings.Join(strings.Fields(s), " ")
		if utf8.RuneCountInString(s) > n {
			r := []rune(s)
			return string(r[:n]) + "…"
		}
		return s
	}
	cut := min(len(p), n/2)
	s := "hex:" + hex.EncodeToString(p[:cut])
	if cut < len(p) {
		s += "…"
	}
	return s
}

func printable(p []byte) bool {
	for _, r := range string(p) {
		if !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// mainFields are the fields a table row shows for the records of drover's
// topics, in order; other topics show their scalar fields.
var mainFields = map[string][]string{
	"io.drover.SensorReading":    {"metric", "value", "unit"},
	"io.drover.GPSFix":           {"lat", "lon", "alt", "speed", "satellites"},
	"io.drover.MediaObject":      {"kind", "bucket", "key", "size", "content_type"},
	"io.drover.MediaObjectEvent": {"event_name", "bucket", "key", "size"},
	"io.drover.Feature":          {"metric", "window_start", "window_size_ms", "count", "mean", "min", "max", "distance_m"},
	"io.drover.Alert":            {"rule", "state", "severity", "value", "threshold", "message"},
	"io.drover.DeviceState":      {"online", "last_seen", "battery", "active_alerts", "lat", "lon"},
	"io.drover.DeadLetter":       {"stage", "reason", "source", "message"},
	"io.drover.Command":          {"name", "payload", "expires_at"},
	"io.drover.Envelope":         {"event_type", "subject", "actor"},
}

// boring are fields the generic summary leaves out: identity and time are
// in their own columns.
var boring = map[string]bool{"event_id": true, "tenant": true, "device_id": true, "ts": true, "ingested_at": true, "attrs": true, "replayed": true, "source": true}

// tableWriter prints records as aligned rows. Column widths grow with what
// was seen, so rows stay aligned while streaming.
type tableWriter struct {
	multiTopic bool
	width      int // terminal width, 0 = no cut
	topicW     int
	posW       int
	keyW       int
	header     bool
}

func newTableWriter(topicNames []string, width int) *tableWriter {
	t := &tableWriter{multiTopic: len(topicNames) > 1, width: width, posW: 8, keyW: 12}
	for _, n := range topicNames {
		t.topicW = max(t.topicW, len(n))
	}
	return t
}

func pad(b []byte, s string, w int) []byte {
	b = append(b, s...)
	for n := utf8.RuneCountInString(s); n < w; n++ {
		b = append(b, ' ')
	}
	return append(b, ' ', ' ')
}

// appendRow appends d as one table row (and the header before the first).
func (t *tableWriter) appendRow(b []byte, d *decoded) []byte {
	r := d.rec
	pos := strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
	key := cell(string(r.Key))
	if !utf8.Valid(r.Key) {
		key = "hex:" + hex.EncodeToString(r.Key)
	}
	if utf8.RuneCountInString(key) > 36 {
		key = string([]rune(key)[:35]) + "…"
	}
	t.posW = max(t.posW, len(pos))
	t.keyW = max(t.keyW, utf8.RuneCountInString(key))
	if !t.header {
		t.header = true
		b = pad(b, "TIMESTAMP", len("2006-01-02T15:04:05.000Z"))
		if t.multiTopic {
			b = pad(b, "TOPIC", t.topicW)
		}
		b = pad(b, "P/OFFSET", t.posW)
		b = pad(b, "KEY", t.keyW)
		b = append(b, "VALUE\n"...)
	}
	start := len(b)
	b = pad(b, r.Timestamp.UTC().Format(timeLayout), len("2006-01-02T15:04:05.000Z"))
	if t.multiTopic {
		b = pad(b, cell(r.Topic), t.topicW)
	}
	b = pad(b, pos, t.posW)
	b = pad(b, key, t.keyW)
	// Whatever a value holds (a device's bidi override, an escape
	// sequence in an error message), the terminal gets printable text.
	b = append(b, decode.Escape(summary(d))...)
	if t.width > 0 {
		line := string(b[start:])
		if utf8.RuneCountInString(line) > t.width {
			b = append(b[:start], string([]rune(line)[:t.width-1])...)
			b = append(b, "…"...)
		}
	}
	return append(b, '\n')
}

// summary renders the main fields of a decoded value as k=v pairs.
func summary(d *decoded) string {
	switch {
	case d.tomb:
		return "(tombstone)"
	case d.err != nil:
		return "! " + d.err.Error() + " value=" + excerpt(d.rec.Value, 2*hexExcerpt)
	}
	m, ok := d.value.(map[string]any)
	if !ok {
		return string(appendAny(nil, d.value))
	}
	var names []string
	name := ""
	if ns, ok := d.schema.(avro.NamedSchema); ok {
		name = ns.FullName()
	}
	if fs, ok := mainFields[name]; ok {
		names = fs
	} else if rs, ok := d.schema.(*avro.RecordSchema); ok {
		for _, f := range rs.Fields() {
			if !boring[f.Name()] {
				names = append(names, f.Name())
			}
		}
	} else {
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
	}
	var sb strings.Builder
	for _, n := range names {
		v, ok := m[n]
		if !ok || v == nil {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(n)
		sb.WriteByte('=')
		sb.WriteString(human(v))
	}
	if name == "io.drover.DeadLetter" {
		if p, ok := m["payload"].([]byte); ok {
			sb.WriteString(" payload=")
			sb.WriteString(strconv.Quote(excerpt(p, payloadExcerpt)))
		}
	}
	return sb.String()
}

// cell renders a string for a table column: as it is when it is printable
// text, else quoted with Go's escapes (\x1b, \u202e, \xff), so that a
// terminal shows it rather than obeys it.
func cell(s string) string {
	if decode.Escape(s) == s {
		return s
	}
	return strconv.Quote(s)
}

// human renders one field value for the table.
func human(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" || strings.ContainsAny(x, " \t\n\"=") || decode.Escape(x) != x {
			return strconv.Quote(x)
		}
		return x
	case time.Time:
		return x.UTC().Format(timeLayout)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case []byte:
		return excerpt(x, 2*hexExcerpt)
	}
	return fmt.Sprint(v)
}
