package schemas

import (
	"embed"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/drover-iot/drover/topics"
)

//go:embed avsc/*.avsc
var avscFS embed.FS

// EnvelopeTopics returns the governance, data-act, security, resilience and
// compliance topics, which all carry [Envelope] records. The slice is a copy.
func EnvelopeTopics() []string { return slices.Clone(envelopeTopics) }

var envelopeTopics = []string{
	"governance.data.products",
	"governance.access.requests",
	"governance.permission.events",
	"governance.intermediation.log",
	"governance.transfer.notices",
	"governance.research.projects",
	"governance.research.outputs",
	"governance.dataset.catalog",
	"governance.data_management_plans",
	"governance.repository.exports",
	"dataact.product.catalog",
	"dataact.user.access.requests",
	"dataact.third_party.sharing",
	"dataact.user.exports",
	"dataact.safeguards",
	"dataact.legal_basis.checks",
	"security.asset.inventory",
	"security.incident.events",
	"security.vulnerability.findings",
	"security.sbom.attestations",
	"security.patch.events",
	"resilience.backup.tests",
	"resilience.operational.risk",
	"resilience.third_party.risk",
	"compliance.scope.decisions",
	"compliance.control.assessments",
	"compliance.reporting.channels",
	"compliance.legal.dossier",
	"cra.product.lifecycle",
}

// record is one embedded schema and the Go type that mirrors it.
type record struct {
	file   string       // path in avscFS
	text   string       // avsc source, verbatim
	name   string       // full name, e.g. io.drover.SensorReading
	schema avro.Schema  // parsed once
	typ    reflect.Type // Go struct type (not a pointer)
}

// catalog is the parsed topic → schema table, built once on first use.
type catalog struct {
	byTopic map[string]*record
	byType  map[reflect.Type]*record
	topics  []string // sorted
	records []*record
}

var loadCatalog = sync.OnceValue(func() *catalog {
	c, err := buildCatalog()
	if err != nil {
		// The schemas are embedded at build time and every one is parsed
		// by the tests; failing here is a programming error.
		panic(err)
	}
	return c
})

func buildCatalog() (*catalog, error) {
	types := []struct {
		file   string
		typ    reflect.Type
		topics []string
	}{
		{"sensor_reading.avsc", reflect.TypeFor[SensorReading](), []string{topics.RawSensor}},
		{"gps_fix.avsc", reflect.TypeFor[GPSFix](), []string{topics.RawGPS}},
		{"media_object.avsc", reflect.TypeFor[MediaObject](), []string{topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D}},
		{"media_object_event.avsc", reflect.TypeFor[MediaObjectEvent](), []string{topics.MediaEvents}},
		{"feature.avsc", reflect.TypeFor[Feature](), []string{topics.Features}},
		{"alert.avsc", reflect.TypeFor[Alert](), []string{topics.Alerts}},
		{"device_state.avsc", reflect.TypeFor[DeviceState](), []string{topics.StateLatest}},
		{"dead_letter.avsc", reflect.TypeFor[DeadLetter](), []string{topics.DLQ}},
		{"command.avsc", reflect.TypeFor[DeviceCommand](), []string{topics.Commands}},
		{"command_status.avsc", reflect.TypeFor[CommandStatus](), []string{topics.CommandStatus}},
		{"registry_record.avsc", reflect.TypeFor[RegistryRecord](), []string{topics.DevicesRegistry}},
		{"envelope.avsc", reflect.TypeFor[Envelope](), envelopeTopics},
		{"app_record.avsc", reflect.TypeFor[AppRecord](), nil}, // app targets are declared at run time
	}
	c := &catalog{byTopic: map[string]*record{}, byType: map[reflect.Type]*record{}}
	for _, t := range types {
		path := "avsc/" + t.file
		b, err := avscFS.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		s, err := parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", path, err)
		}
		named, ok := s.(avro.NamedSchema)
		if !ok {
			return nil, fmt.Errorf("parsing %s: top-level schema is %s, want a record", path, s.Type())
		}
		r := &record{file: path, text: string(b), name: named.FullName(), schema: s, typ: t.typ}
		c.records = append(c.records, r)
		c.byType[t.typ] = r
		for _, topic := range t.topics {
			if _, dup := c.byTopic[topic]; dup {
				return nil, fmt.Errorf("topic %s has two schemas", topic)
			}
			c.byTopic[topic] = r
			c.topics = append(c.topics, topic)
		}
	}
	slices.Sort(c.topics)
	return c, nil
}

// AppRecordSchema returns the avsc text of [AppRecord], the value schema of
// every stream app's target topic (which are declared at run time, so not
// in Topics); pass it to WithSchemas for those topics.
func AppRecordSchema() string {
	for _, r := range loadCatalog().records {
		if r.typ == reflect.TypeFor[AppRecord]() {
			return r.text
		}
	}
	panic("schemas: app_record.avsc is not in the catalog")
}

// parse parses an avsc document with a private name cache, so that several
// versions of the same record (local and registry copies) never collide in
// hamba/avro's process-wide default cache.
func parse(text string) (avro.Schema, error) {
	return avro.ParseWithCache(text, "", &avro.SchemaCache{})
}

// ForTopic returns the parsed schema of topic's values and whether the topic
// has one. The returned schema is shared; do not modify it.
func ForTopic(topic string) (avro.Schema, bool) {
	r, ok := loadCatalog().byTopic[topic]
	if !ok {
		return nil, false
	}
	return r.schema, true
}

// Subject returns the registry subject of topic's values: topic + "-value"
// (the Confluent TopicNameStrategy).
func Subject(topic string) string { return topic + "-value" }

// Topics returns every topic that has a schema, sorted. The slice is a copy.
func Topics() []string { return slices.Clone(loadCatalog().topics) }

// Source returns the avsc text of topic's schema, verbatim as embedded, or
// "" when the topic has none.
func Source(topic string) string {
	r, ok := loadCatalog().byTopic[topic]
	if !ok {
		return ""
	}
	return r.text
}

// RecordName returns the full Avro name of topic's record (e.g.
// io.drover.SensorReading), or "" when the topic has none.
func RecordName(topic string) string {
	r, ok := loadCatalog().byTopic[topic]
	if !ok {
		return ""
	}
	return r.name
}

// SchemaFor returns the local schema of the record that v's type mirrors (v
// may be a value or a pointer, e.g. *SensorReading) and whether there is one.
func SchemaFor(v any) (avro.Schema, bool) {
	r := recordFor(reflect.TypeOf(v))
	if r == nil {
		return nil, false
	}
	return r.schema, true
}

func recordFor(t reflect.Type) *record {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return nil
	}
	return loadCatalog().byType[t]
}

func reflectType(v any) reflect.Type { return reflect.TypeOf(v) }
