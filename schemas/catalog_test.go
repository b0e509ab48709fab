package schemas

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/topics"
)

func TestEverySchemaParsesAndIsDocumented(t *testing.T) {
	entries, err := avscFS.ReadDir("avsc")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, r := range loadCatalog().records {
		used[r.file] = true
	}
	for _, e := range entries {
		path := "avsc/" + e.Name()
		t.Run(e.Name(), func(t *testing.T) {
			if !used[path] {
				t.Fatalf("%s is embedded but no topic uses it", path)
			}
			b, _ := avscFS.ReadFile(path)
			s, err := parse(string(b))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			rec, ok := s.(*avro.RecordSchema)
			if !ok {
				t.Fatalf("top level is %s, want record", s.Type())
			}
			if rec.Namespace() != "io.drover" {
				t.Errorf("namespace %q, want io.drover", rec.Namespace())
			}
			if rec.Doc() == "" {
				t.Error("record has no doc")
			}
			var raw struct {
				Fields []map[string]any `json:"fields"`
			}
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			for _, f := range raw.Fields {
				if d, _ := f["doc"].(string); d == "" {
					t.Errorf("field %v has no doc", f["name"])
				}
			}
			for _, name := range []string{"ts", "ingested_at"} {
				f := field(rec, name)
				if f == nil {
					t.Errorf("no field %s", name)
					continue
				}
				if got := typeString(f.Type()); got != "long(timestamp-millis)" {
					t.Errorf("field %s is %s, want long(timestamp-millis)", name, got)
				}
			}
		})
	}
}

func field(rec *avro.RecordSchema, name string) *avro.Field {
	for _, f := range rec.Fields() {
		if f.Name() == name {
			return f
		}
	}
	return nil
}

// TestGoTypesMatchSchemas checks that every avro tag of a Go type names a
// schema field and every schema field has a tagged Go field.
func TestGoTypesMatchSchemas(t *testing.T) {
	for typ, r := range loadCatalog().byType {
		t.Run(typ.Name(), func(t *testing.T) {
			tags := map[string]bool{}
			for i := range typ.NumField() {
				tag := typ.Field(i).Tag.Get("avro")
				if tag == "" {
					t.Errorf("field %s has no avro tag", typ.Field(i).Name)
				}
				tags[tag] = true
			}
			rec := r.schema.(*avro.RecordSchema)
			for _, f := range rec.Fields() {
				if !tags[f.Name()] {
					t.Errorf("schema field %s has no Go field", f.Name())
				}
				delete(tags, f.Name())
			}
			for tag := range tags {
				t.Errorf("Go tag %q names no schema field", tag)
			}
		})
	}
}

func TestTopicTable(t *testing.T) {
	tests := []struct {
		name   string
		topic  string
		record string // "" = no schema
	}{
		{name: "sensor", topic: topics.RawSensor, record: "io.drover.SensorReading"},
		{name: "gps", topic: topics.RawGPS, record: "io.drover.GPSFix"},
		{name: "image2d", topic: topics.RawImage2D, record: "io.drover.MediaObject"},
		{name: "image3d", topic: topics.RawImage3D, record: "io.drover.MediaObject"},
		{name: "video2d", topic: topics.RawVideo2D, record: "io.drover.MediaObject"},
		{name: "video3d", topic: topics.RawVideo3D, record: "io.drover.MediaObject"},
		{name: "media events", topic: topics.MediaEvents, record: "io.drover.MediaObjectEvent"},
		{name: "features", topic: topics.Features, record: "io.drover.Feature"},
		{name: "alerts", topic: topics.Alerts, record: "io.drover.Alert"},
		{name: "state", topic: topics.StateLatest, record: "io.drover.DeviceState"},
		{name: "dlq", topic: topics.DLQ, record: "io.drover.DeadLetter"},
		{name: "commands", topic: topics.Commands, record: "io.drover.Command"},
		{name: "command status", topic: topics.CommandStatus, record: "io.drover.CommandStatus"},
		{name: "registry", topic: topics.DevicesRegistry, record: "io.drover.RegistryRecord"},
		{name: "governance", topic: "governance.data.products", record: "io.drover.Envelope"},
		{name: "cra", topic: "cra.product.lifecycle", record: "io.drover.Envelope"},
		{name: "unknown", topic: "no.such.topic"},
		{name: "subject is not a topic", topic: "raw.sensor-value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := ForTopic(tt.topic)
			if ok != (tt.record != "") {
				t.Fatalf("ForTopic ok = %v, want %v", ok, tt.record != "")
			}
			if got := RecordName(tt.topic); got != tt.record {
				t.Errorf("RecordName = %q, want %q", got, tt.record)
			}
			if !ok {
				if Source(tt.topic) != "" {
					t.Error("Source of an unknown topic is not empty")
				}
				return
			}
			if got := s.(avro.NamedSchema).FullName(); got != tt.record {
				t.Errorf("schema %s, want %s", got, tt.record)
			}
			if !strings.Contains(Source(tt.topic), `"name": "`+strings.TrimPrefix(tt.record, "io.drover.")+`"`) {
				t.Errorf("Source does not hold record %s", tt.record)
			}
			if got := Subject(tt.topic); got != tt.topic+"-value" {
				t.Errorf("Subject = %q", got)
			}
		})
	}
	all := Topics()
	if !slices.IsSorted(all) {
		t.Errorf("Topics not sorted: %v", all)
	}
	if len(all) != 14+len(EnvelopeTopics()) {
		t.Errorf("Topics has %d topics, want %d", len(all), 14+len(EnvelopeTopics()))
	}
	all[0] = "mutated"
	if Topics()[0] == "mutated" {
		t.Error("Topics returns the internal slice")
	}
}

func TestSchemaFor(t *testing.T) {
	tests := []struct {
		name   string
		v      any
		record string
	}{
		{name: "pointer", v: &SensorReading{}, record: "io.drover.SensorReading"},
		{name: "value", v: Alert{}, record: "io.drover.Alert"},
		{name: "command", v: &DeviceCommand{}, record: "io.drover.Command"},
		{name: "unknown type", v: &struct{}{}},
		{name: "nil", v: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := SchemaFor(tt.v)
			if ok != (tt.record != "") {
				t.Fatalf("ok = %v", ok)
			}
			if ok && s.(avro.NamedSchema).FullName() != tt.record {
				t.Errorf("got %s", s.(avro.NamedSchema).FullName())
			}
		})
	}
}
