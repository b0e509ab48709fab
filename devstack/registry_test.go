package devstack

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
)

const (
	readingV1 = `{"type":"record","name":"Reading","namespace":"drover","fields":[{"name":"device","type":"string"},{"name":"value","type":"double"}]}`
	// readingV2 adds a field with a default: BACKWARD compatible.
	readingV2 = `{"type":"record","name":"Reading","namespace":"drover","fields":[{"name":"device","type":"string"},{"name":"value","type":"double"},{"name":"unit","type":"string","default":""}]}`
	// readingBad adds a field without a default: not BACKWARD compatible.
	readingBad = `{"type":"record","name":"Reading","namespace":"drover","fields":[{"name":"device","type":"string"},{"name":"value","type":"double"},{"name":"unit","type":"string"}]}`
	// other is an unrelated schema.
	other = `{"type":"record","name":"Media","namespace":"drover","fields":[{"name":"key","type":"string"}]}`
)

func newTestRegistry(t *testing.T, path string) (*Registry, *sr.Client) {
	t.Helper()
	reg, err := NewRegistry(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

func avroSchema(s string) sr.Schema { return sr.Schema{Schema: s, Type: sr.TypeAvro} }

func TestRegistryCompatibility(t *testing.T) {
	ctx := context.Background()
	_, cl := newTestRegistry(t, "")
	if _, err := cl.CreateSchema(ctx, "raw.sensor-value", avroSchema(readingV1)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		schema     string
		compatible bool
	}{
		{name: "same schema", schema: readingV1, compatible: true},
		{name: "field with default", schema: readingV2, compatible: true},
		{name: "field without default", schema: readingBad, compatible: false},
		{name: "unrelated record", schema: other, compatible: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, version := range []int{-1, -2} { // versions/latest and versions
				res, err := cl.CheckCompatibility(sr.WithParams(ctx, sr.Verbose), "raw.sensor-value", version, avroSchema(tt.schema))
				if err != nil {
					t.Fatal(err)
				}
				if res.Is != tt.compatible {
					t.Fatalf("version %d: is_compatible = %v, want %v (%v)", version, res.Is, tt.compatible, res.Messages)
				}
				if !tt.compatible && len(res.Messages) == 0 {
					t.Fatal("no messages for an incompatible schema")
				}
			}
		})
	}

	// Registration enforces the same: 409 with a Confluent error body.
	_, err := cl.CreateSchema(ctx, "raw.sensor-value", avroSchema(readingBad))
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusConflict || re.ErrorCode != 409 {
		t.Fatalf("register incompatible: err = %v, want HTTP 409 with error_code 409", err)
	}
	if !strings.Contains(re.Message, "incompatible") || !strings.Contains(re.Message, "unit") {
		t.Fatalf("409 message does not name the incompatibility: %q", re.Message)
	}
	ss, err := cl.CreateSchema(ctx, "raw.sensor-value", avroSchema(readingV2))
	if err != nil {
		t.Fatalf("register compatible: %v", err)
	}
	if ss.Version != 2 {
		t.Fatalf("version = %d, want 2", ss.Version)
	}

	// NONE lets anything through.
	if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatNone}, "raw.sensor-value"); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if _, err := cl.CreateSchema(ctx, "raw.sensor-value", avroSchema(other)); err != nil {
		t.Fatalf("register with NONE: %v", err)
	}

	// Unknown subject.
	_, err = cl.CheckCompatibility(ctx, "nope-value", -1, avroSchema(readingV1))
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Fatalf("check unknown subject: err = %v, want 404", err)
	}
	// Invalid Avro.
	_, err = cl.CreateSchema(ctx, "bad-value", avroSchema(`{"type":"record"}`))
	if !errors.As(err, &re) || re.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("register invalid avro: err = %v, want 422", err)
	}
}

func TestRegistryPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "registry.json")
	_, cl := newTestRegistry(t, path)
	type reg struct {
		subject, schema string
	}
	steps := []reg{
		{"raw.sensor-value", readingV1},
		{"raw.image2d.meta-value", other},
		{"raw.video2d.meta-value", other}, // same schema: same id
		{"raw.sensor-value", readingV2},
	}
	want := map[[2]int]string{} // id, version -> subject
	var ids []int
	for _, s := range steps {
		ss, err := cl.CreateSchema(ctx, s.subject, avroSchema(s.schema))
		if err != nil {
			t.Fatal(err)
		}
		want[[2]int{ss.ID, ss.Version}] = s.subject
		ids = append(ids, ss.ID)
	}
	if ids[1] != ids[2] {
		t.Fatalf("same schema under two subjects got ids %d and %d", ids[1], ids[2])
	}
	if res := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatFull}, "raw.sensor-value"); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	if err := cl.DeleteSchema(ctx, "raw.video2d.meta-value", 1, sr.SoftDelete); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no snapshot: %v", err)
	}

	// "Restart": a new registry from the same snapshot.
	reg2, cl2 := newTestRegistry(t, path)
	for k, subject := range want {
		got, err := cl2.SchemaByID(ctx, k[0])
		if err != nil {
			t.Fatalf("id %d after restart: %v", k[0], err)
		}
		if got.Schema == "" {
			t.Fatalf("id %d: empty schema", k[0])
		}
		if subject == "raw.video2d.meta-value" {
			continue // soft-deleted
		}
		ss, ok := reg2.Fake.GetSchema(subject, k[1])
		if !ok || ss.ID != k[0] {
			t.Fatalf("%s version %d after restart: %+v, %v; want id %d", subject, k[1], ss, ok, k[0])
		}
	}
	if _, ok := reg2.Fake.GetSchema("raw.video2d.meta-value", 1); ok {
		t.Fatal("soft-deleted version is active after restart")
	}
	res := cl2.Compatibility(ctx, "raw.sensor-value")
	if len(res) != 1 || res[0].Err != nil || res[0].Level != sr.CompatFull {
		t.Fatalf("compatibility after restart = %+v, want FULL", res)
	}
	// New registrations continue after the highest id.
	ss, err := cl2.CreateSchema(ctx, "new-value", avroSchema(`{"type":"record","name":"N","fields":[{"name":"a","type":"int"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if ss.ID <= k[0] {
			t.Fatalf("new id %d reuses or precedes old id %d", ss.ID, k[0])
		}
	}
	// No temporary files are left next to the snapshot.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("files next to the snapshot: %v", entries)
	}
}
