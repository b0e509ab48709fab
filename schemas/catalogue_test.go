package schemas

import (
	"slices"
	"testing"

	"github.com/drover-iot/drover/topics"
)

// TestCatalogueTopicsHaveSchemas keeps the topic catalogue and the schemas
// in step: every catalogue topic has a schema and every schema a topic.
func TestCatalogueTopicsHaveSchemas(t *testing.T) {
	cat, err := topics.Default()
	if err != nil {
		t.Fatal(err)
	}
	names := cat.Names()
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
