package backfill

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/topics"
)

//go:embed mapping.yaml
var defaultMapping []byte

// DefaultMappingYAML returns the embedded default mapping file.
func DefaultMappingYAML() []byte { return bytes.Clone(defaultMapping) }

// Reason codes of the dead letters written for objects that cannot be
// mapped (DeadLetter.reason).
const (
	ReasonUnknownKind  = "unknown_kind"     // the layout's {kind} segment is not a media kind
	ReasonNoKind       = "no_kind"          // no layout kind, rule, extension or metadata says the kind
	ReasonNoDevice     = "no_device"        // neither the key layout nor x-amz-meta-device-id names the device
	ReasonNoTenant     = "no_tenant"        // neither the key layout, a rule nor x-amz-meta-tenant names the tenant
	ReasonBadIdentity  = "invalid_identity" // tenant or device id outside the identity alphabet (package identity)
	ReasonBadEvent     = "invalid_event"    // (live) a media.object.events record without bucket or key
	metaDevice         = "device-id"
	metaTenant         = "tenant"
	metaKind           = "kind"
	defaultContentType = "application/octet-stream"
)

// Mapping decides, for one S3 object, its media kind (and so its topic),
// tenant and device. It is immutable and safe for concurrent use.
//
// Resolution order: kind from the layout's {kind} segment, else the first
// matching rule's kind, else the file extension, else x-amz-meta-kind;
// tenant from the layout, else the rule, else x-amz-meta-tenant, else
// DefaultTenant; device from the layout, else x-amz-meta-device-id.
type Mapping struct {
	// Layout is the date-partitioned key layout; nil = keys carry no
	// identity and listing is never pruned.
	Layout *Layout
	// PartitionSlack widens the listed date partitions before the window
	// start, because a partition holds capture dates while the window
	// filters upload times (a collar buffering for a day uploads late).
	PartitionSlack time.Duration
	// Extensions maps a lower-case extension (no dot) to a media kind.
	Extensions map[string]string
	// ContentTypes maps a lower-case extension to the content type written
	// into records (default application/octet-stream).
	ContentTypes map[string]string
	// Rules apply per bucket and key prefix, first match wins.
	Rules []Rule
	// DefaultTenant is the tenant when nothing else names one ("" = none:
	// such objects are unmappable).
	DefaultTenant string
	// Buckets are listed when no --bucket is given.
	Buckets []string
}

// Rule overrides the kind and/or tenant of the objects of a bucket (empty
// = any) under a key prefix (empty = all).
type Rule struct {
	Bucket string `yaml:"bucket"`
	Prefix string `yaml:"prefix"`
	Kind   string `yaml:"kind"`
	Tenant string `yaml:"tenant"`
}

// MappingError is a problem in a mapping file; Field names the offending
// key (e.g. "rules[2].kind").
type MappingError struct {
	File  string
	Field string
	Err   error
}

func (e *MappingError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Field, e.Err)
}

func (e *MappingError) Unwrap() error { return e.Err }

type mappingYAML struct {
	Layout         string            `yaml:"layout"`
	PartitionSlack string            `yaml:"partition_slack"`
	Extensions     map[string]string `yaml:"extensions"`
	ContentTypes   map[string]string `yaml:"content_types"`
	Rules          []Rule            `yaml:"rules"`
	DefaultTenant  string            `yaml:"default_tenant"`
	Buckets        []string          `yaml:"buckets"`
}

// DefaultMapping returns the embedded default mapping: the simulator's
// layout {kind}/{tenant}/{device}/YYYY/MM/DD/..., one day of slack, the
// usual image, point-cloud and video extensions, bucket drover-media.
func DefaultMapping() *Mapping {
	m, err := ParseMapping("mapping.yaml (embedded)", defaultMapping)
	if err != nil {
		panic(err) // the embedded file is tested
	}
	return m
}

// LoadMapping reads and validates a mapping file.
func LoadMapping(file string) (*Mapping, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &MappingError{File: file, Err: err}
	}
	return ParseMapping(file, b)
}

// ParseMapping parses and validates a mapping file strictly (unknown keys
// are errors); errors are *MappingError.
func ParseMapping(file string, b []byte) (*Mapping, error) {
	var y mappingYAML
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&y); err != nil {
		return nil, &MappingError{File: file, Err: err}
	}
	m := &Mapping{Extensions: map[string]string{}, ContentTypes: map[string]string{}, DefaultTenant: y.DefaultTenant, Buckets: y.Buckets}
	if y.Layout != "" {
		l, err := ParseLayout(y.Layout)
		if err != nil {
			return nil, &MappingError{File: file, Field: "layout", Err: err}
		}
		m.Layout = l
	}
	if y.PartitionSlack != "" {
		d, err := time.ParseDuration(y.PartitionSlack)
		if err != nil || d < 0 {
			return nil, &MappingError{File: file, Field: "partition_slack", Err: fmt.Errorf("want a non-negative duration like 24h, got %q", y.PartitionSlack)}
		}
		m.PartitionSlack = d
	}
	for ext, kind := range y.Extensions {
		if _, ok := topics.MediaTopic(kind); !ok {
			return nil, &MappingError{File: file, Field: "extensions." + ext, Err: fmt.Errorf("unknown media kind %q (want image2d, image3d, video2d or video3d)", kind)}
		}
		m.Extensions[normExt(ext)] = kind
	}
	for ext, ct := range y.ContentTypes {
		if !strings.Contains(ct, "/") {
			return nil, &MappingError{File: file, Field: "content_types." + ext, Err: fmt.Errorf("%q is not a content type", ct)}
		}
		m.ContentTypes[normExt(ext)] = ct
	}
	for i, r := range y.Rules {
		if r.Kind == "" && r.Tenant == "" {
			return nil, &MappingError{File: file, Field: fmt.Sprintf("rules[%d]", i), Err: errors.New("a rule needs kind or tenant")}
		}
		if r.Kind != "" {
			if _, ok := topics.MediaTopic(r.Kind); !ok {
				return nil, &MappingError{File: file, Field: fmt.Sprintf("rules[%d].kind", i), Err: fmt.Errorf("unknown media kind %q", r.Kind)}
			}
		}
		if r.Tenant != "" {
			if err := identity.ValidTenant(r.Tenant); err != nil {
				return nil, &MappingError{File: file, Field: fmt.Sprintf("rules[%d].tenant", i), Err: err}
			}
		}
		m.Rules = append(m.Rules, r)
	}
	if m.DefaultTenant != "" {
		if err := identity.ValidTenant(m.DefaultTenant); err != nil {
			return nil, &MappingError{File: file, Field: "default_tenant", Err: err}
		}
	}
	for i, b := range m.Buckets {
		if b == "" {
			return nil, &MappingError{File: file, Field: fmt.Sprintf("buckets[%d]", i), Err: errors.New("empty bucket name")}
		}
	}
	return m, nil
}

func normExt(ext string) string { return strings.ToLower(strings.TrimPrefix(ext, ".")) }

// Target is where one object's record goes and whose it is.
type Target struct {
	Kind        string
	Topic       string
	Tenant      string
	DeviceID    string
	ContentType string
}

// UnmappableError says why an object cannot be mapped; Reason is one of
// the Reason* codes.
type UnmappableError struct {
	Bucket, Key string
	Reason      string
	Message     string
}

func (e *UnmappableError) Error() string {
	return fmt.Sprintf("s3://%s/%s: %s: %s", e.Bucket, e.Key, e.Reason, e.Message)
}

// NeedsMetadata reports whether Resolve would read object metadata for
// this key (the layout does not give kind, tenant and device), so callers
// HeadObject only when it matters.
func (m *Mapping) NeedsMetadata(bucket, key string) bool {
	var vars map[string]string
	if m.Layout != nil {
		vars, _ = m.Layout.Match(key)
	}
	rule := m.rule(bucket, key)
	if vars["device"] == "" {
		return true
	}
	if vars["tenant"] == "" && rule.Tenant == "" && m.DefaultTenant == "" {
		return true
	}
	if vars["kind"] == "" && rule.Kind == "" && m.Extensions[normExt(path.Ext(key))] == "" {
		return true
	}
	return false
}

func (m *Mapping) rule(bucket, key string) Rule {
	for _, r := range m.Rules {
		if (r.Bucket == "" || r.Bucket == bucket) && strings.HasPrefix(key, r.Prefix) {
			return r
		}
	}
	return Rule{}
}

// Resolve maps one object. meta is its user metadata (x-amz-meta-* with or
// without the prefix, any case), nil when not fetched. The error is an
// *UnmappableError.
func (m *Mapping) Resolve(bucket, key string, meta map[string]string) (Target, error) {
	fail := func(reason, format string, args ...any) (Target, error) {
		return Target{}, &UnmappableError{Bucket: bucket, Key: key, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	var vars map[string]string
	layoutOK := false
	if m.Layout != nil {
		vars, layoutOK = m.Layout.Match(key)
	}
	rule := m.rule(bucket, key)
	ext := normExt(path.Ext(key))
	t := Target{}
	switch {
	case vars["kind"] != "":
		t.Kind = vars["kind"]
		if _, ok := topics.MediaTopic(t.Kind); !ok {
			return fail(ReasonUnknownKind, "key segment %q is not a media kind (want image2d, image3d, video2d or video3d)", t.Kind)
		}
	case rule.Kind != "":
		t.Kind = rule.Kind
	case m.Extensions[ext] != "":
		t.Kind = m.Extensions[ext]
	case metaValue(meta, metaKind) != "":
		t.Kind = metaValue(meta, metaKind)
		if _, ok := topics.MediaTopic(t.Kind); !ok {
			return fail(ReasonUnknownKind, "x-amz-meta-kind %q is not a media kind", t.Kind)
		}
	default:
		return fail(ReasonNoKind, "no media kind: %s, no rule, extension %q is not mapped and no x-amz-meta-kind", layoutWhy(m.Layout, layoutOK), ext)
	}
	t.Topic, _ = topics.MediaTopic(t.Kind)
	t.Tenant = firstNonEmpty(vars["tenant"], rule.Tenant, metaValue(meta, metaTenant), m.DefaultTenant)
	if t.Tenant == "" {
		return fail(ReasonNoTenant, "no tenant: %s, no rule and no x-amz-meta-tenant", layoutWhy(m.Layout, layoutOK))
	}
	t.DeviceID = firstNonEmpty(vars["device"], metaValue(meta, metaDevice))
	if t.DeviceID == "" {
		return fail(ReasonNoDevice, "no device: %s and no x-amz-meta-device-id", layoutWhy(m.Layout, layoutOK))
	}
	if err := identity.Validate(t.Tenant, t.DeviceID); err != nil {
		return fail(ReasonBadIdentity, "%v", err)
	}
	t.ContentType = m.ContentTypes[ext]
	if t.ContentType == "" {
		t.ContentType = defaultContentType
	}
	return t, nil
}

func layoutWhy(l *Layout, ok bool) string {
	switch {
	case l == nil:
		return "no key layout configured"
	case !ok:
		return fmt.Sprintf("key does not follow layout %s", l)
	}
	return fmt.Sprintf("layout %s does not name it", l)
}

func metaValue(meta map[string]string, name string) string {
	for k, v := range meta {
		k = strings.ToLower(k)
		k = strings.TrimPrefix(k, "x-amz-meta-")
		if k == name || (name == metaDevice && (k == "device_id" || k == "deviceid" || k == "device")) {
			return v
		}
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// mediaKinds are the media kinds, each with its raw.{kind}.meta topic.
var mediaKinds = []string{"image2d", "image3d", "video2d", "video3d"}
