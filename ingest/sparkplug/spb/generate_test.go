package spb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeCurrent regenerates the Go code with generate.sh (protoc
// from Debian's protobuf-compiler, which scripts/deps installs) and fails
// when it differs from the checked-in sparkplug_b.pb.go.
func TestGeneratedCodeCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Fatal("protoc is missing: run scripts/deps (apt-get install -y protobuf-compiler)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("./generate.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "sparkplug_b.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("sparkplug_b.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("sparkplug_b.pb.go is not what generate.sh writes from sparkplug_b.proto: run ./generate.sh and commit the result")
	}
}
