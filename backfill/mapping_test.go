package backfill

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseMapping(t *testing.T) {
	cases := []struct{ name, yaml, wantErr string }{
		{name: "default", yaml: string(DefaultMappingYAML())},
		{name: "minimal", yaml: "extensions: {jpg: image2d}\n"},
		{name: "unknown key", yaml: "layuot: x\n", wantErr: "field layuot not found"},
		{name: "bad kind", yaml: "extensions: {foo: hologram}\n", wantErr: "extensions.foo: unknown media kind"},
		{name: "bad slack", yaml: "partition_slack: soon\n", wantErr: "partition_slack"},
		{name: "rule without effect", yaml: "rules: [{bucket: b}]\n", wantErr: "rules[0]: a rule needs kind or tenant"},
		{name: "rule kind", yaml: "rules: [{prefix: a/, kind: photo}]\n", wantErr: "rules[0].kind"},
		{name: "rule tenant", yaml: "rules: [{prefix: a/, tenant: 'a/b'}]\n", wantErr: "rules[0].tenant"},
		{name: "rule tenant bidi", yaml: "rules: [{prefix: a/, tenant: \"farm\\u202e\"}]\n", wantErr: `rules[0].tenant: tenant id "farm\u202e" has a character outside`},
		{name: "default tenant space", yaml: "default_tenant: 'my farm'\n", wantErr: "default_tenant: tenant id"},
		{name: "bad content type", yaml: "content_types: {jpg: jpeg}\n", wantErr: "content_types.jpg"},
		{name: "layout date order", yaml: "layout: '{device}/MM/YYYY/...'\n", wantErr: "layout: "},
		{name: "layout partial var", yaml: "layout: 'cam-{device}/...'\n", wantErr: "a variable is a whole segment"},
		{name: "layout rest not last", yaml: "layout: '{device}/.../x'\n", wantErr: "... must be the last"},
		{name: "empty bucket", yaml: "buckets: ['']\n", wantErr: "buckets[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseMapping("m.yaml", []byte(c.yaml))
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
			var me *MappingError
			if err != nil && !errors.As(err, &me) {
				t.Fatalf("error %T is not a *MappingError", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	m, err := ParseMapping("m.yaml", []byte(`
layout: "{kind}/{tenant}/{device}/YYYY/MM/DD/..."
extensions: {jpg: image2d, mp4: video2d}
content_types: {jpg: image/jpeg}
rules:
  - {bucket: traps, prefix: "site-a/", kind: image3d, tenant: farm-a}
`))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, bucket, key string
		meta              map[string]string
		want              Target
		wantReason        string
	}{
		{name: "layout", bucket: "b", key: "image2d/farm/cow-1/2026/11/22/x.jpg",
			want: Target{Kind: "image2d", Topic: "raw.image2d.meta", Tenant: "farm", DeviceID: "cow-1", ContentType: "image/jpeg"}},
		{name: "layout kind beats extension", bucket: "b", key: "video3d/farm/cow-1/2026/11/22/x.jpg",
			want: Target{Kind: "video3d", Topic: "raw.video3d.meta", Tenant: "farm", DeviceID: "cow-1", ContentType: "image/jpeg"}},
		{name: "unknown kind segment", bucket: "b", key: "thermal/farm/cow-1/2026/11/22/x.jpg", wantReason: ReasonUnknownKind},
		{name: "bad date is off-layout", bucket: "b", key: "image2d/farm/cow-1/2026/13x/22/x.jpg", wantReason: ReasonNoTenant},
		{name: "rule and metadata", bucket: "traps", key: "site-a/x.bin", meta: map[string]string{"Device-Id": "trap-3"},
			want: Target{Kind: "image3d", Topic: "raw.image3d.meta", Tenant: "farm-a", DeviceID: "trap-3", ContentType: "application/octet-stream"}},
		{name: "rule other bucket", bucket: "other", key: "site-a/x.bin", wantReason: ReasonNoKind},
		{name: "metadata only", bucket: "b", key: "up/x.mp4", meta: map[string]string{"x-amz-meta-tenant": "t", "x-amz-meta-device-id": "d"},
			want: Target{Kind: "video2d", Topic: "raw.video2d.meta", Tenant: "t", DeviceID: "d", ContentType: "application/octet-stream"}},
		{name: "no device", bucket: "b", key: "up/x.mp4", meta: map[string]string{"tenant": "t"}, wantReason: ReasonNoDevice},
		{name: "bad kind metadata", bucket: "b", key: "up/x", meta: map[string]string{"kind": "hologram"}, wantReason: ReasonUnknownKind},
		{name: "too long device", bucket: "b", key: "image2d/farm/" + strings.Repeat("d", 200) + "/2026/11/22/x.jpg", wantReason: ReasonBadIdentity},
		{name: "device with bidi override", bucket: "b", key: "image2d/farm/cow\u202e1/2026/11/22/x.jpg", wantReason: ReasonBadIdentity},
		{name: "device with space", bucket: "b", key: "image2d/farm/cow 1/2026/11/22/x.jpg", wantReason: ReasonBadIdentity},
		{name: "metadata device with escape", bucket: "b", key: "up/x.mp4", meta: map[string]string{"tenant": "t", "device-id": "d\x1b[31m"}, wantReason: ReasonBadIdentity},
		{name: "metadata tenant not ascii", bucket: "b", key: "up/x.mp4", meta: map[string]string{"tenant": "färm", "device-id": "d"}, wantReason: ReasonBadIdentity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := m.Resolve(c.bucket, c.key, c.meta)
			if c.wantReason != "" {
				var ue *UnmappableError
				if !errors.As(err, &ue) || ue.Reason != c.wantReason {
					t.Fatalf("err %v, want reason %s", err, c.wantReason)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
	if m.NeedsMetadata("b", "image2d/farm/cow-1/2026/11/22/x.jpg") || !m.NeedsMetadata("b", "up/x.mp4") {
		t.Fatal("NeedsMetadata: HEAD only when the layout does not name everything")
	}
}

func TestDatePrefixes(t *testing.T) {
	l, err := ParseLayout("{kind}/YYYY/MM/DD/...")
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) time.Time { t, _ := ParseTime(s); return t }
	cases := []struct {
		name     string
		from, to string
		want     string
	}{
		{"one hour", "2026-11-22T10:00", "2026-11-22T11:00", "2026/11/22/"},
		{"midnight end is exclusive", "2026-11-21T23:00", "2026-11-22T00:00", "2026/11/21/"},
		{"month edge", "2026-11-30T23:00", "2026-12-01T01:00", "2026/11/30/ 2026/12/01/"},
		{"long window coarsens to months", "2025-01-01", "2026-03-01", "2025/01/ 2025/02/ 2025/03/ 2025/04/ 2025/05/ 2025/06/ 2025/07/ 2025/08/ 2025/09/ 2025/10/ 2025/11/ 2025/12/ 2026/01/ 2026/02/"},
		{"centuries merge years into decimal runs", "1990-06-01", "2431-01-01", "199 20 21 22 23 240 241 242 2430/"},
		{"every year is the identity prefix itself", "0000-01-01", "9999-12-31", ""},
		{"the issue's window", "0001-01-01", "9999-12-31", "0001/ 0002/ 0003/ 0004/ 0005/ 0006/ 0007/ 0008/ 0009/ 001 002 003 004 005 006 007 008 009 01 02 03 04 05 06 07 08 09 1 2 3 4 5 6 7 8 9"},
		{"the last day keys can hold", "9999-12-31T23:00", "9999-12-31T23:30", "9999/12/31/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := strings.Join(l.datePrefixes(d(c.from), d(c.to)), " "); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestDatePrefixesCoverEveryWindow checks the property the backfill relies
// on, at the extremes and in between: every date partition of the window
// is under one of the listed prefixes (nothing is dropped, however wide
// the window), no prefix reaches a year entirely outside it, and the list
// stays bounded.
func TestDatePrefixesCoverEveryWindow(t *testing.T) {
	l, err := ParseLayout("{kind}/YYYY/MM/DD/HH/...")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	windows := [][2]time.Time{
		{at(1, 1, 1, 0), at(9999, 12, 31, 0)},
		{at(-5, 1, 1, 0), at(12000, 1, 1, 0)}, // beyond what keys can hold
		{at(0, 1, 1, 0), at(1, 1, 1, 0)},
		{at(1969, 12, 31, 23), at(1970, 1, 1, 1)},
		{at(2000, 1, 1, 0), at(2400, 1, 1, 0)},
		{at(1999, 12, 31, 23), at(2026, 11, 23, 5)},
		{at(2026, 11, 22, 10), at(2026, 11, 22, 11)},
		{at(9998, 3, 1, 0), at(9999, 12, 31, 23)},
	}
	for _, w := range windows {
		prefixes := l.datePrefixes(w[0], w[1])
		if len(prefixes) > maxDatePrefixes {
			t.Errorf("[%s, %s): %d prefixes, want at most %d", w[0], w[1], len(prefixes), maxDatePrefixes)
		}
		covered := func(key string) bool {
			for _, p := range prefixes {
				if strings.HasPrefix(key, p) {
					return true
				}
			}
			return false
		}
		// Hours at the edges and spread over the window, clamped to the
		// years keys can carry.
		from, to := maxTime(w[0], firstKeyYear), minTime(w[1], endKeyYear)
		step := max(to.Sub(from)/5000, time.Hour)
		for _, h := range []time.Time{from, to.Add(-time.Hour), from.Add(to.Sub(from) / 2)} {
			if key := h.Format("2006/01/02/15/"); !covered(key) {
				t.Errorf("[%s, %s): partition %s is not listed (prefixes %q)", w[0], w[1], key, prefixes)
			}
		}
		for h := from; h.Before(to); h = h.Add(step) {
			if key := h.Format("2006/01/02/15/"); !covered(key) {
				t.Fatalf("[%s, %s): partition %s is not listed", w[0], w[1], key)
			}
		}
		// A year before or after the window is not listed.
		for _, y := range []int{from.Year() - 1, to.Add(-time.Nanosecond).Year() + 1} {
			if y < 0 || y > 9999 {
				continue
			}
			if key := fmt.Sprintf("%04d/06/15/12/", y); covered(key) {
				t.Errorf("[%s, %s): year %d outside the window is listed (prefixes %q)", w[0], w[1], y, prefixes)
			}
		}
	}
}
