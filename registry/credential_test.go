package registry

import (
	"encoding/base64"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
)

func TestSecretHash(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 43 || CheckSecret(s) != nil {
		t.Fatalf("generated secret %q (len %d) fails CheckSecret: %v", s, len(s), CheckSecret(s))
	}
	h, err := HashSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	if h.check() != nil || !h.Verify([]byte(s)) || h.Verify([]byte(s[1:])) || h.Verify(nil) {
		t.Fatalf("hash %+v: verify wrong", h)
	}
	h2, _ := HashSecret(s)
	if string(h2.Salt) == string(h.Salt) || h2.ID() == h.ID() || len(h.ID()) != 12 {
		t.Fatal("two hashes of one secret share a salt or an id")
	}
	for _, bad := range []string{"short", strings.Repeat("a", MaxSecretLen+1), "sixteen chars ok", "tab\there-sixteen"} {
		if CheckSecret(bad) == nil {
			t.Errorf("CheckSecret(%q) accepted", bad)
		}
	}
}

// TestSecretHashMatchesPython checks the hash against a second
// implementation (Python's hashlib), computed the way Mosquitto's dynamic
// security plugin does: PBKDF2-HMAC-SHA512 over the 12-byte salt, 64 bytes.
func TestSecretHashMatchesPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatal("python3 not found: apt-get install -y python3")
	}
	h, err := HashSecret("correct-horse-battery-staple")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import hashlib,base64,sys
print(hashlib.pbkdf2_hmac("sha512", b"correct-horse-battery-staple", base64.b64decode(sys.argv[1]), int(sys.argv[2]), 64).hex())`,
		base64.StdEncoding.EncodeToString(h.Salt), "101").CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != hex.EncodeToString(h.Hash) {
		t.Fatalf("python: %s\ndrover: %x", got, h.Hash)
	}
}

func TestParseFingerprint(t *testing.T) {
	want := Fingerprint([]byte("x"))
	upper := strings.ToUpper(want)
	var colons []string
	for i := 0; i < len(upper); i += 2 {
		colons = append(colons, upper[i:i+2])
	}
	for _, in := range []string{want, upper, strings.Join(colons, ":"), "sha256:" + want, " SHA256:" + upper + " "} {
		if got, err := ParseFingerprint(in); err != nil || got != want {
			t.Errorf("ParseFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", want[:60], want + "00", strings.Repeat("zz", 32)} {
		if _, err := ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) accepted", bad)
		}
	}
}
