package inspect

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func offsetsOf(lines []jsonLine) []int64 {
	var out []int64
	for _, l := range lines {
		out = append(out, l.Offset)
	}
	return out
}

func TestIntegrationTailPositions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// Partition 0: offsets 0..9, one record a minute ending one minute ago.
	ts := make([]time.Time, 10)
	var recs []*kgo.Record
	for i := range 10 {
		ts[i] = now.Add(time.Duration(i-10) * time.Minute)
		recs = append(recs, s.record(topics.RawSensor, 0, "dev-a", ts[i], sensor("dev-a", "temperature", float64(20+i), ts[i])))
	}
	// Partition 1: two records.
	recs = append(recs,
		s.record(topics.RawSensor, 1, "dev-b", ts[0], sensor("dev-b", "temperature", 1, ts[0])),
		s.record(topics.RawSensor, 1, "dev-b", ts[1], sensor("dev-b", "temperature", 2, ts[1])))
	s.produce(recs...)

	rfc := func(i int) string { return ts[i].Format(time.RFC3339Nano) }
	for _, c := range []struct {
		name string
		args []string
		want []int64
	}{
		{"earliest to latest", []string{"--from", "earliest", "--to", "latest"}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"no follow defaults to earliest", []string{"--follow=false"}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"offsets half open", []string{"--from", "3", "--to", "6"}, []int64{3, 4, 5}},
		{"last N", []string{"--from", "-3", "--follow=false"}, []int64{7, 8, 9}},
		{"to N before end", []string{"--from", "earliest", "--to", "-8"}, []int64{0, 1}},
		{"RFC 3339 window", []string{"--from", rfc(4), "--to", rfc(7)}, []int64{4, 5, 6}},
		{"duration before now", []string{"--from", "-5m30s", "--follow=false"}, []int64{5, 6, 7, 8, 9}},
		{"duration window", []string{"--from", "-7m30s", "--to", "-4m30s"}, []int64{3, 4, 5}},
		{"time after every record", []string{"--from", now.Add(time.Hour).Format(time.RFC3339), "--follow=false"}, nil},
		// Kafka reads a timestamp of -1 ms as "latest" and refuses other
		// negative ones: a time before the epoch means every record.
		{"one millisecond before the epoch", []string{"--from", "1969-12-31T23:59:59.999Z", "--to", "latest"}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"year 1", []string{"--from", "0001-01-01T00:00:00Z", "--to", "latest"}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"a duration back before the epoch", []string{"--from", "-500000h", "--to", rfc(2)}, []int64{0, 1}},
		{"offset past the end is clamped", []string{"--from", "500", "--follow=false"}, nil},
		{"to earliest is empty", []string{"--to", "earliest"}, nil},
		{"limit while following", []string{"--from", "earliest", "-n", "4"}, []int64{0, 1, 2, 3}},
		{"limit with window", []string{"--from", "2", "--to", "latest", "-n", "2"}, []int64{2, 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.tail(append([]string{topics.RawSensor, "--partitions", "0", "--format", "json"}, c.args...)...)
			if r.err != nil {
				t.Fatalf("tail: %v\nstderr: %s", r.err, r.errOut)
			}
			got := offsetsOf(parseLines(t, r.out))
			if !slices.Equal(got, c.want) {
				t.Errorf("offsets %v, want %v", got, c.want)
			}
			if want := fmt.Sprintf("%d shown, 0 skipped", len(c.want)); !strings.Contains(r.errOut, want) {
				t.Errorf("stderr %q does not contain %q", r.errOut, want)
			}
		})
	}

	t.Run("all partitions", func(t *testing.T) {
		r := s.tail(topics.RawSensor, "--from", "earliest", "--to", "latest")
		if r.err != nil {
			t.Fatal(r.err)
		}
		lines := parseLines(t, r.out)
		per := map[int32]int{}
		for _, l := range lines {
			per[l.Partition]++
		}
		if per[0] != 10 || per[1] != 2 || len(lines) != 12 {
			t.Errorf("records per partition %v, want 10 on 0 and 2 on 1", per)
		}
	})
	t.Run("decoded JSON", func(t *testing.T) {
		r := s.tail(topics.RawSensor, "--partitions", "0", "--from", "9", "--to", "10")
		if r.err != nil {
			t.Fatal(r.err)
		}
		lines := parseLines(t, r.out)
		if len(lines) != 1 {
			t.Fatalf("got %d lines", len(lines))
		}
		l := lines[0]
		if l.Topic != topics.RawSensor || l.Key == nil || *l.Key != "dev-a" || l.SchemaID == 0 || !l.Timestamp.Equal(ts[9]) {
			t.Errorf("envelope %+v", l)
		}
		if l.Value["metric"] != "temperature" || l.Value["value"] != float64(29) || l.Value["unit"] != "C" {
			t.Errorf("value %v", l.Value)
		}
		if l.Value["ts"] != ts[9].Format("2006-01-02T15:04:05.000Z") {
			t.Errorf("ts rendered %v, want RFC 3339 %s", l.Value["ts"], ts[9].Format("2006-01-02T15:04:05.000Z"))
		}
		if attrs, _ := l.Value["attrs"].(map[string]any); attrs["site"] != "north" {
			t.Errorf("attrs %v", l.Value["attrs"])
		}
		// Fields keep the schema's order.
		if i, j := strings.Index(r.out, `"event_id"`), strings.Index(r.out, `"ingested_at"`); i < 0 || j < i {
			t.Errorf("fields not in schema order: %s", r.out)
		}
	})
}

func TestIntegrationTailFollow(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	now := time.Now()
	s.produce(s.record(topics.RawSensor, 0, "dev-a", now, sensor("dev-a", "temperature", 1, now)))

	// Follow from offset 1 (the end) until two new records arrive.
	type res struct{ r result }
	done := make(chan result, 1)
	go func() { done <- s.tail(topics.RawSensor, "--partitions", "0", "--from", "1", "-n", "2") }()
	// The tail waits for records that do not exist yet; produce them.
	s.produce(
		s.record(topics.RawSensor, 0, "dev-a", now, sensor("dev-a", "temperature", 2, now)),
		s.record(topics.RawSensor, 0, "dev-a", now, sensor("dev-a", "temperature", 3, now)))
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := offsetsOf(parseLines(t, r.out)); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("followed offsets %v, want [1 2]", got)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("tail -n 2 did not return after two new records")
	}

	t.Run("cancel stops cleanly", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cmd := TailCommand(&cli.Conn{})
		var out, errOut syncBuf
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append([]string{topics.RawSensor, "--from", "earliest"}, s.connArgs()...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		ret := make(chan error, 1)
		go func() { ret <- cmd.ExecuteContext(ctx) }()
		waitFor(t, func() bool { return strings.Count(out.String(), "\n") == 3 }, "the three records")
		cancel()
		select {
		case err := <-ret:
			if err != nil {
				t.Fatalf("tail after cancel: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("tail did not stop after cancel")
		}
		if !strings.Contains(errOut.String(), "3 shown, 0 skipped by filters") {
			t.Errorf("stderr %q lacks the counts", errOut.String())
		}
	})
}

// syncBuf is a bytes.Buffer safe to read while a command writes it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationTailFilters(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	now := time.Now().UTC()
	mk := func(p int32, dev, metric string, v float64, site string, hdr ...string) *kgo.Record {
		sr := sensor(dev, metric, v, now)
		sr.Attrs = map[string]string{"site": site}
		r := s.record(topics.RawSensor, p, dev, now, sr)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: hdr[i], Value: []byte(hdr[i+1])})
		}
		return r
	}
	s.produce(
		mk(0, "dev-a", "temperature", 38.0, "north", "source", "mqtt"),
		mk(0, "dev-a", "temperature", 40.1, "north", "source", "backfill"),
		mk(1, "dev-b", "temperature", 41.0, "south", "source", "mqtt"),
		mk(1, "dev-b", "humidity", 80, "south"),
		mk(2, "dev-c", "temperature", 39.6, "north", "source", "mqtt"),
	)
	for _, c := range []struct {
		name      string
		args      []string
		wantVals  []float64
		wantSkips int
	}{
		{"none", nil, []float64{38.0, 40.1, 41.0, 80, 39.6}, 0},
		{"key", []string{"--key", "dev-b"}, []float64{41.0, 80}, 3},
		{"keys any", []string{"--key", "dev-a,dev-c"}, []float64{38.0, 40.1, 39.6}, 2},
		{"header", []string{"--header", "source=mqtt"}, []float64{38.0, 41.0, 39.6}, 2},
		{"number comparison", []string{"--where", "value > 39.5"}, []float64{40.1, 41.0, 80, 39.6}, 1},
		{"issue example AND", []string{"--where", "metric=temperature", "--where", "value>39.5"}, []float64{40.1, 41.0, 39.6}, 2},
		{"nested path", []string{"--where", `attrs.site == "north"`}, []float64{38.0, 40.1, 39.6}, 2},
		{"nested shorthand", []string{"--where", "attrs.site=south"}, []float64{41.0, 80}, 3},
		{"numeric shorthand", []string{"--where", "value=80"}, []float64{80}, 4},
		{"in list", []string{"--where", `metric in ["humidity"]`}, []float64{80}, 4},
		{"record fields", []string{"--where", `_partition == 1 && _headers.source == "mqtt"`}, []float64{41.0}, 4},
		{"all combined", []string{"--key", "dev-a", "--header", "source=backfill", "--where", "value >= 40"}, []float64{40.1}, 4},
		{"a missing map key never matches", []string{"--where", `attrs.nosuch == "x"`}, nil, 5},
		{"SQL between", []string{"--where", "value BETWEEN 40 AND 100 AND metric <> 'x'"}, []float64{40.1, 41.0, 80}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.tail(append([]string{topics.RawSensor, "--follow=false", "--format", "json"}, c.args...)...)
			if r.err != nil {
				t.Fatalf("%v\n%s", r.err, r.errOut)
			}
			var got []float64
			for _, l := range parseLines(t, r.out) {
				got = append(got, l.Value["value"].(float64))
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(c.wantVals))
			if !slices.Equal(got, want) {
				t.Errorf("values %v, want %v", got, want)
			}
			if w := fmt.Sprintf("%d shown, %d skipped by filters", len(want), c.wantSkips); !strings.Contains(r.errOut, w) {
				t.Errorf("stderr %q lacks %q", r.errOut, w)
			}
		})
	}
}

func TestIntegrationTailUndecodable(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	now := time.Now()
	good := s.record(topics.RawSensor, 0, "dev-a", now, sensor("dev-a", "temperature", 21, now))
	id, _, err := schemas.ParseHeader(good.Value)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte(`{"metric":"temperature","value":21}`)
	unknown := append(schemas.Header(9999), good.Value[schemas.HeaderSize:]...)
	truncated := slices.Clone(good.Value[:schemas.HeaderSize+3])
	binary := []byte{0x00, 0x01}
	s.produce(
		&kgo.Record{Topic: topics.RawSensor, Partition: 0, Key: []byte("dev-a"), Value: plain},
		&kgo.Record{Topic: topics.RawSensor, Partition: 0, Key: []byte("dev-a"), Value: unknown},
		&kgo.Record{Topic: topics.RawSensor, Partition: 0, Key: []byte("dev-a"), Value: truncated},
		&kgo.Record{Topic: topics.RawSensor, Partition: 0, Key: []byte{0xff, 0xfe}, Value: binary},
		&kgo.Record{Topic: topics.RawSensor, Partition: 0, Key: []byte("dev-a"), Value: nil},
		good,
	)
	r := s.tail(topics.RawSensor, "--partitions", "0", "--follow=false", "--format", "json")
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.errOut)
	}
	lines := parseLines(t, r.out)
	if len(lines) != 6 {
		t.Fatalf("got %d lines, want 6:\n%s", len(lines), r.out)
	}
	for _, c := range []struct {
		name    string
		line    jsonLine
		raw     []byte
		wantErr string
	}{
		{"plain JSON", lines[0], plain, "not Avro in the Confluent wire format"},
		{"unknown schema id", lines[1], unknown, "schema id 9999 is not in the registry"},
		{"truncated body", lines[2], truncated, fmt.Sprintf("decoding avro body (schema id %d): avro body is truncated", id)},
		{"too short", lines[3], binary, "not Avro in the Confluent wire format"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("error: %s", c.line.Error)
			if !strings.Contains(c.line.Error, c.wantErr) {
				t.Errorf("error %q lacks %q", c.line.Error, c.wantErr)
			}
			if !bytes.Equal(c.line.ValueBase64, c.raw) {
				t.Errorf("value_base64 decodes to %q, want the original bytes %q", c.line.ValueBase64, c.raw)
			}
			if c.line.ValueHex == "" || c.line.Value != nil {
				t.Errorf("hex %q value %v", c.line.ValueHex, c.line.Value)
			}
		})
	}
	if !lines[4].Tombstone {
		t.Errorf("tombstone not marked: %+v", lines[4])
	}
	if lines[5].Value["metric"] != "temperature" || lines[5].Error != "" {
		t.Errorf("good record after bad ones: %+v", lines[5])
	}
	if !strings.Contains(r.errOut, "6 shown, 0 skipped by filters, 4 undecodable") {
		t.Errorf("stderr %q", r.errOut)
	}

	t.Run("table", func(t *testing.T) {
		r := s.tail(topics.RawSensor, "--partitions", "0", "--follow=false", "--format", "table")
		if r.err != nil {
			t.Fatal(r.err)
		}
		rows := strings.Split(strings.TrimSpace(r.out), "\n")
		if len(rows) != 7 {
			t.Fatalf("%d rows:\n%s", len(rows), r.out)
		}
		for i, want := range []string{"! not Avro", "! schema id 9999", "! ", "! not Avro", "(tombstone)", "metric=temperature value=21 unit=C"} {
			if !strings.Contains(rows[i+1], want) {
				t.Errorf("row %d %q lacks %q", i+1, rows[i+1], want)
			}
		}
	})
	t.Run("registry unreachable", func(t *testing.T) {
		cmd := TailCommand(&cli.Conn{})
		r := execute(t, cmd, topics.RawSensor, "--partitions", "0", "--from", "5", "--follow=false", "--format", "json",
			"--kafka-brokers", s.brokers, "--schema-registry-url", "http://127.0.0.1:1", "--timeout", "30s")
		if r.err != nil {
			t.Fatal(r.err)
		}
		lines := parseLines(t, r.out)
		if len(lines) != 1 || !strings.Contains(lines[0].Error, fmt.Sprintf("schema id %d", id)) || !bytes.Equal(lines[0].ValueBase64, good.Value) {
			t.Errorf("lines %+v", lines)
		}
	})
	t.Run("raw", func(t *testing.T) {
		r := s.tail(topics.RawSensor, "--partitions", "0", "--from", "0", "--to", "1", "--format", "raw")
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.out != string(plain)+"\n" {
			t.Errorf("raw output %q", r.out)
		}
	})
}

func TestIntegrationTailTableAndDLQ(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	ts := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	dl := schemas.DeadLetter{
		ID: "dl-1", Stage: "validate", Reason: "schema_mismatch", Message: "field value: not a number",
		Source: "devices/farm-1/collar-7/sensor", DeviceID: ptr("collar-7"), Tenant: ptr("farm-1"),
		Payload: []byte(`{"metric": "temperature", "value": "hot"}`), PayloadSize: 41,
		ReceivedAt: ts, TS: ts, IngestedAt: ts, Headers: map[string]string{},
	}
	s.produce(
		s.record(topics.DLQ, 0, "collar-7", ts, dl),
		s.record(topics.RawSensor, 0, "collar-7", ts, sensor("collar-7", "temperature", 39.9, ts)),
	)
	t.Run("dlq table", func(t *testing.T) {
		r := s.tail(topics.DLQ, "--follow=false", "--format", "table")
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("output:\n%s", r.out)
		rows := strings.Split(strings.TrimRight(r.out, "\n"), "\n")
		if len(rows) != 2 {
			t.Fatalf("rows:\n%s", r.out)
		}
		if !strings.HasPrefix(rows[0], "TIMESTAMP") || !strings.Contains(rows[0], "P/OFFSET") || !strings.Contains(rows[0], "KEY") {
			t.Errorf("header %q", rows[0])
		}
		for _, want := range []string{"2026-11-23T06:00:00.000Z", "0/0", "collar-7", "stage=validate", "reason=schema_mismatch", "source=devices/farm-1/collar-7/sensor", `payload="{\"metric\": \"temperature\", \"value\": \"hot\"}"`} {
			if !strings.Contains(rows[1], want) {
				t.Errorf("row %q lacks %q", rows[1], want)
			}
		}
		// Columns align: the value column starts at the same place.
		if strings.Index(rows[0], "VALUE") != strings.Index(rows[1], "stage=") {
			t.Errorf("columns not aligned:\n%s", r.out)
		}
	})
	t.Run("dlq json", func(t *testing.T) {
		r := s.tail(topics.DLQ, "--follow=false", "--format", "json")
		if r.err != nil {
			t.Fatal(r.err)
		}
		l := parseLines(t, r.out)[0]
		if l.PayloadExcerpt != string(dl.Payload) || l.Value["stage"] != "validate" {
			t.Errorf("dlq line %+v", l)
		}
		p, _ := base64.StdEncoding.DecodeString(l.Value["payload"].(string))
		if !bytes.Equal(p, dl.Payload) {
			t.Errorf("payload %q", p)
		}
	})
	t.Run("two topics", func(t *testing.T) {
		r := s.tail(topics.DLQ, topics.RawSensor, "--follow=false", "--format", "table")
		if r.err != nil {
			t.Fatal(r.err)
		}
		t.Logf("output:\n%s", r.out)
		if !strings.Contains(r.out, "TOPIC") || !strings.Contains(r.out, "dlq.events") || !strings.Contains(r.out, "metric=temperature value=39.9") {
			t.Errorf("table:\n%s", r.out)
		}
	})
	t.Run("pseudo-terminal", func(t *testing.T) {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatalf("open pty: %v", err)
		}
		defer ptmx.Close()
		if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 200}); err != nil {
			t.Fatal(err)
		}
		var got syncBuf
		copied := make(chan struct{})
		go func() { _, _ = io.Copy(&got, ptmx); close(copied) }()
		cmd := TailCommand(&cli.Conn{})
		var errOut bytes.Buffer
		cmd.SetOut(tty)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append([]string{topics.RawSensor, "--follow=false"}, s.connArgs()...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Contains(got.String(), "unit=C") }, "the table row on the terminal")
		tty.Close()
		out := got.String()
		if !strings.Contains(out, "TIMESTAMP") || !strings.Contains(out, "metric=temperature value=39.9 unit=C") || strings.Contains(out, `{"topic"`) {
			t.Errorf("terminal output is not the table:\n%s", out)
		}
	})
}

func TestTailUsageErrors(t *testing.T) {
	s := newStack(t)
	for _, c := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown topic", []string{"no.such.topic", "--follow=false"}, `unknown topic "no.such.topic"`},
		{"bad time", []string{topics.RawSensor, "--from", "2026-13-45T00:00:00Z"}, "--from: bad position"},
		{"bad duration", []string{topics.RawSensor, "--from", "-10x"}, `--from: bad position: "-10x" is not a duration`},
		{"bad to", []string{topics.RawSensor, "--to", "yesterday"}, "--to: bad position"},
		{"bad where", []string{topics.RawSensor, "--where", "value >"}, `--where "value >"`},
		{"bad header", []string{topics.RawSensor, "--header", "novalue"}, `--header "novalue": want key=value`},
		{"bad format", []string{topics.RawSensor, "--format", "xml"}, `--format: unknown format "xml"`},
		{"missing partition", []string{topics.RawSensor, "--partitions", "7"}, `--partitions: topic "raw.sensor" has no partition 7`},
		{"follow and to", []string{topics.RawSensor, "--follow", "--to", "latest"}, "--follow and --to exclude each other"},
		{"negative limit", []string{topics.RawSensor, "-n", "-1"}, "--max-records (-n): must be ≥ 0"},
		{"duplicate topic", []string{topics.RawSensor, topics.RawSensor}, "given twice"},
		{"where names no field", []string{topics.RawSensor, "--where", "nosuch > 1"}, `--where "nosuch > 1": raw.sensor has no field "nosuch" (fields: event_id, tenant, device_id, ts, ingested_at, metric, value, unit,`},
		{"where shorthand names no field", []string{topics.RawSensor, "--where", "metrc=temperature"}, `raw.sensor has no field "metrc"`},
		{"where on a field of another topic", []string{topics.RawSensor, "--where", "lat > 50"}, `raw.sensor has no field "lat"`},
		{"where into a number", []string{topics.RawSensor, "--where", "value.celsius > 1"}, `raw.sensor field value is a double, it has no field "celsius"`},
		{"where on two topics", []string{topics.RawSensor, topics.RawGPS, "--where", "heading_deg > 1"}, `raw.sensor has no field "heading_deg" (fields: event_id, tenant, device_id, ts, ingested_at, metric, value, unit, source, replayed, attrs); raw.gps has no field "heading_deg" (fields: `},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.tail(c.args...)
			var ue *cli.UsageError
			if !errors.As(r.err, &ue) || cli.ExitCode(r.err) != 2 {
				t.Fatalf("error %v (%T), want a usage error (exit 2)", r.err, r.err)
			}
			if msg := r.err.Error(); !strings.Contains(msg, c.wantErr) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line containing %q", msg, c.wantErr)
			}
			if r.out != "" {
				t.Errorf("stdout %q", r.out)
			}
		})
	}
	t.Run("no topic", func(t *testing.T) {
		r := s.tail()
		if r.err == nil || !strings.Contains(r.err.Error(), "requires at least 1 arg") {
			t.Errorf("error %v", r.err)
		}
	})
}

// TestIntegrationTailTransactions checks that a bounded tail ends when a
// partition's last offset is a transaction marker (no data record is ever
// returned at end-1).
func TestIntegrationTailTransactions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	tx, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.brokers, ",")...), kgo.TransactionalID("tail-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 3 {
		r := s.record(topics.RawSensor, 0, "dev-a", now, sensor("dev-a", "temperature", float64(i), now))
		if err := tx.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// End offset is 4: three records and the commit marker at offset 3.
	done := make(chan result, 1)
	go func() { done <- s.tail(topics.RawSensor, "--partitions", "0", "--follow=false", "--format", "json") }()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := offsetsOf(parseLines(t, r.out)); !slices.Equal(got, []int64{0, 1, 2}) {
			t.Errorf("offsets %v, want [0 1 2]", got)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("bounded tail did not stop at a partition ending in a transaction marker")
	}
}
