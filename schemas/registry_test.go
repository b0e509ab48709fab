package schemas

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/topics"
)

func TestRegisterIdempotent(t *testing.T) {
	reg, client := newRegistry(t)
	ctx := testCtx(t)
	first, err := Register(ctx, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(Topics()) {
		t.Fatalf("%d results, want %d", len(first), len(Topics()))
	}
	ids := map[string]int{} // record name → id: topics sharing a schema share the id
	for _, r := range first {
		if r.Status != Created || r.Version != 1 || r.ID <= 0 || r.Subject != r.Topic+"-value" {
			t.Errorf("first run: %+v, want created version 1", r)
		}
		if id, ok := ids[RecordName(r.Topic)]; ok && id != r.ID {
			t.Errorf("%s: id %d, other topics with %s have %d", r.Topic, r.ID, RecordName(r.Topic), id)
		}
		ids[RecordName(r.Topic)] = r.ID
		got := client.Compatibility(ctx, r.Subject)
		if got[0].Err != nil || got[0].Level != sr.CompatBackward {
			t.Errorf("%s compatibility = %v (%v), want BACKWARD", r.Subject, got[0].Level, got[0].Err)
		}
	}
	if len(ids) != 12 {
		t.Errorf("%d distinct schema ids, want 12", len(ids))
	}
	second, err := Register(ctx, client, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range second {
		want := first[i]
		want.Status = Unchanged
		if r != want {
			t.Errorf("second run: %+v, want %+v", r, want)
		}
	}
	if !reg.SubjectExists("dlq.events-value") {
		t.Error("dlq.events-value not in the registry")
	}
}

// v2 variants of SensorReading; each is checked against the embedded v1.
func sensorVariant(t *testing.T, from, to string) string {
	t.Helper()
	src := Source(topics.RawSensor)
	if !strings.Contains(src, from) {
		t.Fatalf("embedded schema lacks %q", from)
	}
	return strings.Replace(src, from, to, 1)
}

func TestRegisterRejectsIncompatible(t *testing.T) {
	const unitField = `{"name": "unit", "type": ["null", "string"], "default": null,`
	tests := []struct {
		name    string
		from    string
		to      string
		field   string
		wantErr string // "" = compatible
	}{
		{name: "new field without default",
			from: unitField, to: `{"name": "quality", "type": "int", "doc": "q"}, ` + unitField,
			field: "quality", wantErr: `field "quality": new field has no default`},
		{name: "changed type",
			from: `{"name": "value", "type": "double"`, to: `{"name": "value", "type": "string"`,
			field: "value", wantErr: `field "value": type changed from double (registered) to string`},
		{name: "nullable made required",
			from: `"type": ["null", "string"], "default": null`, to: `"type": "string"`,
			field: "unit", wantErr: `field "unit": type changed from union[null,string] (registered) to string`},
		{name: "map value type changed",
			from: `{"type": "map", "values": "string"}`, to: `{"type": "map", "values": "long"}`,
			field: "attrs[]", wantErr: `field "attrs[]": type changed from string (registered) to long`},
		{name: "record renamed",
			from: `"name": "SensorReading"`, to: `"name": "Reading"`,
			wantErr: "names do not match"},
		{name: "new field with default", from: unitField,
			to: `{"name": "quality", "type": "int", "default": 0, "doc": "q"}, ` + unitField},
		{name: "field removed", from: unitField + ` "doc": "Unit of value (SenML / UCUM symbol, e.g. Cel, %, m/s2); null when unknown."},`, to: ``},
		{name: "type promoted", from: `{"name": "value", "type": "double"`, to: `{"name": "value", "type": ["null", "double"]`},
		{name: "doc changed", from: `"doc": "Measured value, in unit."`, to: `"doc": "The measured value."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client := newRegistry(t)
			ctx := testCtx(t)
			v1, err := Register(ctx, client, []string{topics.RawSensor, topics.RawGPS})
			if err != nil {
				t.Fatal(err)
			}
			v2 := map[string]string{topics.RawSensor: sensorVariant(t, tt.from, tt.to)}

			checks, err := Check(ctx, client, nil, WithSchemas(v2))
			if err != nil {
				t.Fatal(err)
			}
			if len(checks) != 1 || checks[0].Topic != topics.RawSensor {
				t.Fatalf("checks = %+v, want raw.sensor only", checks)
			}
			res, err := Register(ctx, client, []string{topics.RawSensor, topics.RawGPS}, WithSchemas(v2))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("register: %v", err)
				}
				if checks[0].Status != Compatible {
					t.Errorf("check status %s, want compatible", checks[0].Status)
				}
				if res[0].Status != Created || res[0].Version != 2 || res[1].Status != Unchanged {
					t.Errorf("results %+v, want raw.sensor created v2, raw.gps unchanged", res)
				}
				return
			}
			if checks[0].Status != Incompatible || checks[0].Field != tt.field || checks[0].Version != 1 {
				t.Errorf("check = %+v, want incompatible field %q against version 1", checks[0], tt.field)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "subject raw.sensor-value") {
				t.Fatalf("err = %v, want subject raw.sensor-value and %q", err, tt.wantErr)
			}
			var ie *IncompatibleError
			if !errors.As(err, &ie) || ie.Field != tt.field || ie.Subject != "raw.sensor-value" {
				t.Errorf("err %v: IncompatibleError %+v, want field %q", err, ie, tt.field)
			}
			// Nothing was registered: still version 1.
			latest, lerr := client.SchemaByVersion(ctx, "raw.sensor-value", -1)
			if lerr != nil || latest.Version != 1 || latest.ID != v1[0].ID {
				t.Errorf("latest = v%d id %d (%v), want v1 id %d", latest.Version, latest.ID, lerr, v1[0].ID)
			}
			// An auto-registering Serde refuses it too.
			s := newSerde(t, client, WithSchemas(v2), AutoRegister(true))
			if _, err := s.Encode(ctx, topics.RawSensor, &SensorReading{}); !errors.As(err, &ie) {
				t.Errorf("auto-register: err = %v, want IncompatibleError", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	if _, err := Register(ctx, client, []string{topics.RawGPS, topics.Alerts}); err != nil {
		t.Fatal(err)
	}
	// alerts.events moves to a compatible v2, then back (local = v1 again).
	alertV2 := strings.Replace(Source(topics.Alerts), `{"name": "message",`,
		`{"name": "runbook", "type": ["null", "string"], "default": null, "doc": "d"}, {"name": "message",`, 1)
	if _, err := Register(ctx, client, []string{topics.Alerts}, WithSchemas(map[string]string{topics.Alerts: alertV2})); err != nil {
		t.Fatal(err)
	}
	// raw.sensor is registered with a schema the embedded one cannot read.
	bad := strings.Replace(Source(topics.RawSensor), `{"name": "metric", "type": "string"`, `{"name": "metric", "type": "int"`, 1)
	if _, err := client.RegisterSchema(ctx, "raw.sensor-value", sr.Schema{Schema: bad}, -1, -1); err != nil {
		t.Fatal(err)
	}
	results, err := Check(ctx, client, []string{topics.RawGPS, topics.Alerts, topics.RawSensor, topics.DLQ})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		status  CheckStatus
		version int
		field   string
		reason  string
		ok      bool
	}{
		{name: topics.RawGPS, status: Identical, version: 1, ok: true},
		{name: topics.Alerts, status: Compatible, version: 2, ok: true},
		{name: topics.RawSensor, status: Incompatible, version: 1, field: "metric", reason: "type changed from int (registered) to string"},
		{name: topics.DLQ, status: Missing},
	}
	if len(results) != len(tests) {
		t.Fatalf("%d results, want %d", len(results), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := results[i]
			if r.Topic != tt.name || r.Status != tt.status || r.Version != tt.version || r.Field != tt.field || r.OK() != tt.ok {
				t.Errorf("got %+v, want %+v", r, tt)
			}
			if !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("reason %q, want %q", r.Reason, tt.reason)
			}
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name    string
		topics  []string
		opts    []Option
		wantErr string
	}{
		{name: "unknown topic", topics: []string{"nope"}, wantErr: "topic has no schema: nope"},
		{name: "unparsable override", opts: []Option{WithSchemas(map[string]string{topics.RawSensor: `{"type":"record"}`})},
			wantErr: "parsing schema of raw.sensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, client := newRegistry(t)
			for _, call := range []string{"Register", "Check"} {
				var err error
				if call == "Register" {
					_, err = Register(testCtx(t), client, tt.topics, tt.opts...)
				} else {
					_, err = Check(testCtx(t), client, tt.topics, tt.opts...)
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s: err = %v, want %q", call, err, tt.wantErr)
				}
			}
		})
	}
}

func TestRegistryUnreachable(t *testing.T) {
	reg, client := newRegistry(t)
	reg.Close()
	_, err := Register(testCtx(t), client, []string{topics.RawSensor})
	if err == nil || !strings.Contains(err.Error(), "subject raw.sensor-value") {
		t.Fatalf("err = %v, want an error naming the subject", err)
	}
}

// TestCommandReplyTopicIsBackward: the command schema gained reply_topic
// (issue 20); registered over the schema without it, it is a compatible
// version 2.
func TestCommandReplyTopicIsBackward(t *testing.T) {
	_, client := newRegistry(t)
	ctx := testCtx(t)
	src := Source(topics.Commands)
	i := strings.Index(src, `,
    {"name": "reply_topic"`)
	if i < 0 {
		t.Fatal("the embedded command schema has no reply_topic field")
	}
	v1 := src[:i] + "\n  ]\n}\n"
	if _, err := Register(ctx, client, []string{topics.Commands}, WithSchemas(map[string]string{topics.Commands: v1})); err != nil {
		t.Fatalf("register v1: %v", err)
	}
	checks, err := Check(ctx, client, []string{topics.Commands})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 1 || checks[0].Status != Compatible {
		t.Fatalf("check = %+v, want compatible", checks)
	}
	res, err := Register(ctx, client, []string{topics.Commands})
	if err != nil || res[0].Version != 2 {
		t.Fatalf("register v2: %+v %v", res, err)
	}
}
