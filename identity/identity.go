package identity

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxLen is the longest tenant or device id, in bytes.
const MaxLen = 128

// Separator joins a tenant and a device id into a [Key]. It is not in the
// alphabet, so a key splits back unambiguously.
const Separator = "/"

// ErrInvalid is wrapped by every error [Validate] and [ParseKey] return, so
// callers can match the class with errors.Is and map it to the dead-letter
// reason "invalid_identity".
var ErrInvalid = errors.New("invalid identity")

// Error says which part of an identity is wrong and why. Its message quotes
// the offending value with Go's %q, so control characters and bidi overrides
// are shown escaped, never interpreted by a terminal.
type Error struct {
	Part   string // "tenant" or "device"
	Value  string
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s id %s %s", e.Part, strconv.QuoteToASCII(clip(e.Value)), e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

func clip(s string) string {
	if len(s) > MaxLen+16 {
		return s[:MaxLen+16] + "..."
	}
	return s
}

// allowed reports whether b may appear in an id: ASCII letters, digits and
// one of "._:-".
func allowed(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '.' || b == '_' || b == ':' || b == '-'
}

func check(part, s string) error {
	switch {
	case s == "":
		return &Error{Part: part, Value: s, Reason: "is empty"}
	case len(s) > MaxLen:
		return &Error{Part: part, Value: s, Reason: fmt.Sprintf("is %d bytes long (at most %d)", len(s), MaxLen)}
	}
	for i := 0; i < len(s); i++ {
		if !allowed(s[i]) {
			return &Error{Part: part, Value: s, Reason: fmt.Sprintf("has a character outside [A-Za-z0-9._:-] at byte %d", i)}
		}
	}
	if !isAlnum(s[0]) {
		return &Error{Part: part, Value: s, Reason: "must start with a letter or digit"}
	}
	return nil
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// ValidTenant returns nil when s is a well-formed tenant id, else an [*Error].
func ValidTenant(s string) error { return check("tenant", s) }

// ValidDevice returns nil when s is a well-formed device id, else an [*Error].
func ValidDevice(s string) error { return check("device", s) }

// Validate checks both halves of an identity; the tenant is checked first.
func Validate(tenant, device string) error {
	if err := ValidTenant(tenant); err != nil {
		return err
	}
	return ValidDevice(device)
}

// Key is the tenant-qualified device id "tenant/device". It does not
// validate: call [Validate] where the parts come from outside.
func Key(tenant, device string) string { return tenant + Separator + device }

// ParseKey splits a [Key] and validates both parts.
func ParseKey(key string) (tenant, device string, err error) {
	tenant, device, ok := strings.Cut(key, Separator)
	if !ok {
		return "", "", fmt.Errorf("key %s is not tenant%sdevice: %w", strconv.QuoteToASCII(clip(key)), Separator, ErrInvalid)
	}
	if err := Validate(tenant, device); err != nil {
		return "", "", err
	}
	return tenant, device, nil
}

// DeviceOf returns the device part of a record key: the part after the
// separator of a [Key], or the whole key when it has none (a key written
// before keys were tenant-qualified). It does not validate.
func DeviceOf(key string) string {
	if i := strings.LastIndex(key, Separator); i >= 0 {
		return key[i+len(Separator):]
	}
	return key
}

// KeyMatches reports whether a record key fits the record's own tenant and
// device: key is [Key](tenant, device), or, for records written before
// keys were tenant-qualified, the bare device id.
func KeyMatches(key, tenant, device string) bool {
	if key == device {
		return true
	}
	return len(key) == len(tenant)+len(Separator)+len(device) &&
		strings.HasPrefix(key, tenant) && strings.HasSuffix(key, device) &&
		key[len(tenant):len(tenant)+len(Separator)] == Separator
}
