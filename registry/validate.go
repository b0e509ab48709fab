package registry

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/drover-iot/drover/identity"
)

// Limits on free-form fields: they end up in SQL rows, JSON, logs and
// operators' terminals.
const (
	MaxLabels        = 64
	MaxLabelValueLen = 256
	MaxAltIDs        = 8
	MaxCerts         = 8
	// MaxOfflineTimeout bounds a device's own offline timeout.
	MaxOfflineTimeout = 365 * 24 * time.Hour
)

// validateDevice checks every field of d; the first problem is returned as
// a *FieldError (or an identity error for the ids).
func validateDevice(d *Device) error {
	if err := identity.ValidTenant(d.Tenant); err != nil {
		return &FieldError{Field: "tenant", Err: err}
	}
	if err := identity.ValidDevice(d.ID); err != nil {
		return &FieldError{Field: "device_id", Err: err}
	}
	if _, err := ParseStatus(string(d.Status)); err != nil {
		return &FieldError{Field: "status", Err: err}
	}
	if d.Type != "" {
		if err := identity.ValidDevice(d.Type); err != nil {
			return fieldErr("type", "%q is not in the identity alphabet [A-Za-z0-9._:-]", d.Type)
		}
	}
	if err := validateLabels(d.Labels); err != nil {
		return err
	}
	if err := validateAltIDs(d.AltIDs); err != nil {
		return err
	}
	if d.OfflineTimeout < 0 || d.OfflineTimeout > MaxOfflineTimeout {
		return fieldErr("offline_timeout", "%s is out of range (0 to %s)", d.OfflineTimeout, MaxOfflineTimeout)
	}
	if d.Secret != nil {
		if err := d.Secret.check(); err != nil {
			return fieldErr("secret", "%v", err)
		}
	}
	if len(d.CertFingerprints) > MaxCerts {
		return fieldErr("cert_fingerprint", "%d certificates (at most %d)", len(d.CertFingerprints), MaxCerts)
	}
	for _, fp := range d.CertFingerprints {
		if n, err := ParseFingerprint(fp); err != nil || n != fp {
			return fieldErr("cert_fingerprint", "%q is not a lowercase SHA-256 fingerprint", fp)
		}
	}
	return nil
}

func validateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fieldErr("labels", "%d labels (at most %d)", len(labels), MaxLabels)
	}
	for _, k := range sortedKeys(labels) {
		if err := identity.ValidDevice(k); err != nil {
			return fieldErr("label."+printable(k), "label key is not in the identity alphabet [A-Za-z0-9._:-]")
		}
		if err := checkText(labels[k], MaxLabelValueLen); err != nil {
			return fieldErr("label."+k, "%v", err)
		}
	}
	return nil
}

func validateAltIDs(alt map[string]string) error {
	if len(alt) > MaxAltIDs {
		return fieldErr("alt_ids", "%d alternative ids (at most %d)", len(alt), MaxAltIDs)
	}
	for _, k := range sortedKeys(alt) {
		if err := identity.ValidDevice(k); err != nil {
			return fieldErr("alt."+printable(k), "alternative id kind is not in the identity alphabet [A-Za-z0-9._:-]")
		}
		v := alt[k]
		if err := identity.ValidDevice(v); err != nil {
			return fieldErr("alt."+k, "%q is not in the identity alphabet [A-Za-z0-9._:-]", v)
		}
		if k == AltDevEUI {
			if n, err := NormaliseDevEUI(v); err != nil || n != v {
				return fieldErr("alt."+k, "%q is not a DevEUI in lowercase (16 hex digits)", v)
			}
		}
	}
	return nil
}

// NormaliseDevEUI returns a LoRaWAN DevEUI (16 hex digits, optionally
// separated by '-' or ':') as 16 lowercase hex digits.
func NormaliseDevEUI(s string) (string, error) {
	n := strings.ToLower(strings.NewReplacer("-", "", ":", "").Replace(strings.TrimSpace(s)))
	if len(n) != 16 {
		return "", fmt.Errorf("DevEUI %q is not 16 hex digits", s)
	}
	if _, err := hex.DecodeString(n); err != nil {
		return "", fmt.Errorf("DevEUI %q is not 16 hex digits", s)
	}
	return n, nil
}

// checkText accepts valid UTF-8 of at most max bytes without control or
// format characters (no escape sequences, no bidi overrides, no zero-width
// characters).
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is %d bytes long (at most %d)", len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("has a control or format character %U at byte %d", r, i)
		}
	}
	return nil
}

// printable quotes s for an error message when it is not plain.
func printable(s string) string {
	q := fmt.Sprintf("%+q", s)
	if q[1:len(q)-1] == s {
		return s
	}
	return q
}

func validateTenant(t *Tenant) error {
	if err := identity.ValidTenant(t.ID); err != nil {
		return &FieldError{Field: "tenant", Err: err}
	}
	if t.CACertPEM != "" {
		c, err := t.CACert()
		if err != nil {
			return fieldErr("ca_cert", "%v", err)
		}
		if !c.IsCA {
			return fieldErr("ca_cert", "certificate %q is not a CA (basic constraints)", c.Subject.String())
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
