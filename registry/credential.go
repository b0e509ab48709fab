package registry

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// The secret hash. PBKDF2 with HMAC-SHA-512, a 12-byte salt and a 64-byte
// result is exactly what Mosquitto's dynamic security plugin stores for a
// client (mosquitto 2.0, plugins/dynamic-security: salt, password,
// iterations), so registry/dynsec can render a dynsec configuration from the
// registry without ever holding a plaintext secret. 101 iterations is
// dynsec's own default: generated secrets carry 256 random bits, which no
// iteration count makes stronger or weaker against guessing, while every
// CONNECT pays for the iterations on the broker.
const (
	SecretAlgorithm  = "pbkdf2-sha512"
	SecretIterations = 101
	saltLen          = 12
	hashLen          = 64
	secretBytes      = 32 // random bytes of a generated secret
	// MinSecretLen and MaxSecretLen bound a secret supplied by the
	// operator (an import of secrets burnt in at the factory).
	MinSecretLen = 16
	MaxSecretLen = 256
)

// SecretHash is a salted, iterated hash of a device secret.
type SecretHash struct {
	Algorithm  string
	Iterations int
	Salt       []byte
	Hash       []byte
}

// NewSecret returns a fresh random secret: 32 bytes from crypto/rand,
// base64url without padding (43 characters, safe in MQTT passwords, HTTP
// headers, shells and CSV).
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckSecret reports whether an operator-supplied secret is acceptable:
// MinSecretLen to MaxSecretLen printable ASCII characters without spaces
// (brokers treat passwords as C strings; terminals and CSV must show them).
func CheckSecret(s string) error {
	if len(s) < MinSecretLen || len(s) > MaxSecretLen {
		return fmt.Errorf("is %d characters long (want %d to %d)", len(s), MinSecretLen, MaxSecretLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return fmt.Errorf("has a character outside printable ASCII at byte %d", i)
		}
	}
	return nil
}

// HashSecret hashes secret with a fresh random salt.
func HashSecret(secret string) (*SecretHash, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("generating a salt: %w", err)
	}
	h, err := pbkdf2.Key(sha512.New, secret, salt, SecretIterations, hashLen)
	if err != nil {
		return nil, fmt.Errorf("hashing a secret: %w", err)
	}
	return &SecretHash{Algorithm: SecretAlgorithm, Iterations: SecretIterations, Salt: salt, Hash: h}, nil
}

// Verify reports whether secret matches the hash (constant time in the
// hash comparison). A hash of an unknown algorithm matches nothing.
func (h *SecretHash) Verify(secret []byte) bool {
	if h == nil || h.Algorithm != SecretAlgorithm || h.Iterations < 1 || len(secret) == 0 {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, string(secret), h.Salt, h.Iterations, len(h.Hash))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, h.Hash) == 1
}

// ID returns a short, non-secret identifier of this credential: the first
// 12 hex digits of SHA-256(salt || hash). It changes with every rotation, so
// a broker adapter can tell whether the broker holds the current secret.
func (h *SecretHash) ID() string {
	if h == nil {
		return ""
	}
	s := sha256.New()
	s.Write(h.Salt)
	s.Write(h.Hash)
	return hex.EncodeToString(s.Sum(nil))[:12]
}

func (h *SecretHash) check() error {
	switch {
	case h.Algorithm != SecretAlgorithm:
		return fmt.Errorf("algorithm %q (want %s)", h.Algorithm, SecretAlgorithm)
	case h.Iterations < 1:
		return fmt.Errorf("iterations %d (want at least 1)", h.Iterations)
	case len(h.Salt) != saltLen:
		return fmt.Errorf("salt of %d bytes (want %d)", len(h.Salt), saltLen)
	case len(h.Hash) != hashLen:
		return fmt.Errorf("hash of %d bytes (want %d)", len(h.Hash), hashLen)
	}
	return nil
}

// Fingerprint returns the SHA-256 fingerprint of a certificate's DER bytes
// (x509.Certificate.Raw) as 64 lowercase hex digits, the form the registry
// stores.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

var errFingerprint = errors.New("is not a SHA-256 fingerprint (64 hex digits, colons allowed)")

// ParseFingerprint normalises a SHA-256 fingerprint as tools print it
// ("AB:CD:..." from openssl x509 -fingerprint -sha256, or plain hex, with an
// optional "sha256:" prefix) to 64 lowercase hex digits.
func ParseFingerprint(s string) (string, error) {
	s = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "sha256:")
	s = strings.ReplaceAll(s, ":", "")
	if len(s) != 2*sha256.Size {
		return "", errFingerprint
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", errFingerprint
	}
	return s, nil
}
