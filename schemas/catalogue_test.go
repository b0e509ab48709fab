package schemas

import (
	"slices"
	"testing"

	"github.com/drover-iot/drover/topics"
)

// TestCatalogueTopicsHaveSchemas keeps the topic catalogue and the schemas
// in step: every catalogue topic has a schema and every schema a topic.
// Processor groups' internal topics (format goka: group tables and loops)
// carry the group's own codec and are left out; none of them may have a
// schema either.
func TestCatalogueTopicsHaveSchemas(t *testing.T) {
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	names := cat.SchemaTopics()
	for _, tp := range cat.Topics {
		if !tp.Internal() {
			continue
		}
		if _, ok := ForTopic(tp.Name); ok {
			t.Errorf("internal topic %s (format %s) has an Avro schema", tp.Name, tp.Format)
		}
	}
	for _, n := range names {
		if _, ok := ForTopic(n); !ok {
			t.Errorf("catalogue topic %s has no schema", n)
		}
	}
	for _, n := range Topics() {
		if !slices.Contains(names, n) {
			t.Errorf("schema topic %s is not in the catalogue", n)
		}
	}
}
