package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", MaxLen)
	for _, tc := range []struct {
		name, tenant, device, err string
	}{
		{"plain", "farm1", "cow-0001", ""},
		{"all allowed punctuation", "acme.eu_1", "00:11:22:33:44:55:66:77", ""},
		{"max length", long, long, ""},
		{"empty tenant", "", "cow", "tenant id \"\" is empty"},
		{"empty device", "farm", "", "device id \"\" is empty"},
		{"too long", "farm", long + "b", "is 129 bytes long (at most 128)"},
		{"slash", "farm", "a/b", "outside [A-Za-z0-9._:-] at byte 1"},
		{"mqtt wildcard", "farm", "a+", "at byte 1"},
		{"hash", "fa#rm", "cow", "tenant id"},
		{"space", "farm", "cow 1", "at byte 3"},
		{"nul", "farm", "cow\x00", `"cow\x00"`},
		{"control char", "farm", "cow\x1b[31m", `"cow\x1b[31m"`},
		{"bidi override escaped", "farm", "cow\u202e1", `"cow\u202e1"`},
		{"non-ascii letter", "färm", "cow", "at byte 1"},
		{"leading dash", "farm", "-cow", "must start with a letter or digit"},
		{"leading dot", ".farm", "cow", "must start with a letter or digit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.tenant, tc.device)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Validate(%q, %q) = %v, want nil", tc.tenant, tc.device, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate(%q, %q) = %v, want an error containing %q", tc.tenant, tc.device, err, tc.err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			for _, r := range err.Error() {
				if r < 0x20 || r > 0x7e {
					t.Fatalf("error message %q carries a non-printable or non-ASCII rune %U", err.Error(), r)
				}
			}
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	k := Key("farm1", "cow-7")
	if k != "farm1/cow-7" {
		t.Fatalf("Key = %q", k)
	}
	tn, dev, err := ParseKey(k)
	if err != nil || tn != "farm1" || dev != "cow-7" {
		t.Fatalf("ParseKey(%q) = %q, %q, %v", k, tn, dev, err)
	}
	for _, bad := range []string{"cow-7", "farm1/", "/cow", "farm1/cow/7", "farm\u202e/cow"} {
		if _, _, err := ParseKey(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseKey(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDeviceOfAndKeyMatches(t *testing.T) {
	for key, want := range map[string]string{"farm1/cow-1": "cow-1", "cow-1": "cow-1", "": ""} {
		if got := DeviceOf(key); got != want {
			t.Errorf("DeviceOf(%q) = %q, want %q", key, got, want)
		}
	}
	cases := []struct {
		key, tenant, device string
		want                bool
	}{
		{"farm1/cow-1", "farm1", "cow-1", true},
		{"cow-1", "farm1", "cow-1", true}, // a legacy key
		{"farm2/cow-1", "farm1", "cow-1", false},
		{"farm1/cow-2", "farm1", "cow-1", false},
		{"farm1xcow-1", "farm1", "cow-1", false},
		{"farm1/cow-1", "", "cow-1", false},
	}
	for _, c := range cases {
		if got := KeyMatches(c.key, c.tenant, c.device); got != c.want {
			t.Errorf("KeyMatches(%q, %q, %q) = %v, want %v", c.key, c.tenant, c.device, got, c.want)
		}
	}
}
