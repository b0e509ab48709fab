package schemas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/topics"
)

func writeSchema(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// evolved returns the embedded raw.sensor schema with an extra field.
func evolvedSensor(t *testing.T, field string) string {
	t.Helper()
	src := Source(topics.RawSensor)
	i := strings.LastIndex(src, "]")
	if i < 0 {
		t.Fatal("raw.sensor schema has no fields array")
	}
	return src[:i] + "," + field + src[i:]
}

func TestLoadDirErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{name: "malformed json", files: map[string]string{"bad.avsc": `{"type":"record",`}, wantErr: "bad.avsc: not a valid Avro schema"},
		{name: "not a record", files: map[string]string{"s.avsc": `"string"`}, wantErr: "s.avsc: top level must be a named record"},
		{name: "unknown record", files: map[string]string{"u.avsc": `{"type":"record","name":"Nope","namespace":"io.drover","fields":[]}`}, wantErr: "record io.drover.Nope is carried by no topic"},
		{name: "empty dir", files: map[string]string{}, wantErr: "no *.avsc file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, s := range tt.files {
				writeSchema(t, dir, n, s)
			}
			_, err := LoadDir(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing dir accepted")
	}
}

func TestLoadDirMapsRecordToEveryTopic(t *testing.T) {
	dir := t.TempDir()
	writeSchema(t, dir, "media.avsc", Source(topics.RawImage2D))
	m, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D} {
		if m[tp] == "" {
			t.Errorf("%s not mapped from the MediaObject file", tp)
		}
	}
	if len(m) != 4 {
		t.Errorf("mapped %d topics, want 4: %v", len(m), m)
	}
}

func TestCommandSchemaDir(t *testing.T) {
	reg, _ := newRegistry(t)
	url := reg.URL()
	if _, code, err := run(t, url, "register", topics.RawSensor); code != 0 {
		t.Fatalf("register: %v", err)
	}
	compatible := t.TempDir()
	writeSchema(t, compatible, "sensor.avsc", evolvedSensor(t, `{"name":"quality","type":["null","double"],"default":null,"doc":"signal quality"}`))
	out, code, err := run(t, url, "check", topics.RawSensor, "--schema-dir", compatible)
	if code != 0 || !strings.Contains(out, "compatible") || strings.Contains(out, "incompatible") {
		t.Fatalf("check compatible evolution: code %d err %v\n%s", code, err, out)
	}
	incompatible := t.TempDir()
	writeSchema(t, incompatible, "sensor.avsc", evolvedSensor(t, `{"name":"quality","type":"double","doc":"no default"}`))
	out, code, err = run(t, url, "register", topics.RawSensor, "--schema-dir", incompatible)
	if code != 3 || err == nil || !strings.Contains(err.Error(), "quality") {
		t.Fatalf("incompatible evolution: code %d, err %v (want exit 3 naming field quality)\n%s", code, err, out)
	}
	if _, code, err := run(t, url, "register", topics.RawSensor, "--schema-dir", compatible); code != 0 {
		t.Fatalf("register compatible evolution: %v", err)
	}
	bad := t.TempDir()
	writeSchema(t, bad, "broken.avsc", "{")
	_, code, err = run(t, url, "check", "--schema-dir", bad)
	if code != 2 || !strings.Contains(err.Error(), "broken.avsc") {
		t.Fatalf("malformed schema file: code %d, err %v", code, err)
	}
}
