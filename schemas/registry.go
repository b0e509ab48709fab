package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// RegisterStatus says what Register did for one subject.
type RegisterStatus string

const (
	// Created means a new schema version was registered.
	Created RegisterStatus = "created"
	// Unchanged means the schema was already registered under the subject.
	Unchanged RegisterStatus = "unchanged"
)

// Result is the outcome of Register for one topic.
type Result struct {
	Topic   string
	Subject string
	ID      int // registry schema id
	Version int // version of the schema under Subject
	Status  RegisterStatus
}

// CheckStatus compares a local schema with the registry's latest version.
type CheckStatus string

const (
	// Missing means the subject has no schema in the registry.
	Missing CheckStatus = "missing"
	// Identical means the latest registered version is the local schema.
	Identical CheckStatus = "identical"
	// Compatible means the local schema differs from the latest version
	// but can read data written with it (BACKWARD); Register would add a
	// version.
	Compatible CheckStatus = "compatible"
	// Incompatible means the local schema cannot read data written with
	// the latest version; Register refuses it.
	Incompatible CheckStatus = "incompatible"
)

// CheckResult is the outcome of Check for one topic.
type CheckResult struct {
	Topic   string
	Subject string
	Status  CheckStatus
	ID      int    // id of the latest registered version; 0 when Missing
	Version int    // latest registered version; 0 when Missing
	Field   string // Incompatible: dotted path of the field that breaks compatibility
	Reason  string // Incompatible: why
}

// OK reports whether the subject needs no attention: its latest registered
// version is the local schema, or one the local schema can read.
func (r CheckResult) OK() bool { return r.Status == Identical || r.Status == Compatible }

// Register registers each topic's local schema under Subject(topic), with
// the subject's compatibility level set to BACKWARD. With no topics it
// registers every topic of Topics (or of WithSchemas, when given).
//
// Registration is idempotent: a schema already registered under the subject
// is reported Unchanged with its existing id and version. Before anything is
// written, every new schema is checked client side for BACKWARD
// compatibility with the subject's latest version (the embedded registry does
// not check, real ones do); if any topic is incompatible, nothing is
// registered and the error holds one *IncompatibleError per subject, naming
// the field that breaks it. Options: WithSchemas.
func Register(ctx context.Context, client *sr.Client, topics []string, opts ...Option) ([]Result, error) {
	local, topics, err := resolveTopics(topics, opts)
	if err != nil {
		return nil, err
	}
	// Pass 1, read only: refuse the whole set if any schema is incompatible.
	var errs []error
	for _, t := range topics {
		cr, err := checkOne(ctx, client, t, local[t])
		if err != nil {
			return nil, err
		}
		if cr.Status == Incompatible {
			errs = append(errs, cr.incompatibleError())
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	results := make([]Result, 0, len(topics))
	for _, t := range topics {
		r, err := registerOne(ctx, client, t, local[t])
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// Check compares each topic's local schema with the latest version
// registered under Subject(topic), under BACKWARD compatibility. With no
// topics it checks every topic of Topics (or of WithSchemas, when given).
// Incompatible or missing subjects are results, not errors: the error is
// for a registry that could not be asked. Check writes nothing. Options:
// WithSchemas.
func Check(ctx context.Context, client *sr.Client, topics []string, opts ...Option) ([]CheckResult, error) {
	local, topics, err := resolveTopics(topics, opts)
	if err != nil {
		return nil, err
	}
	results := make([]CheckResult, 0, len(topics))
	for _, t := range topics {
		r, err := checkOne(ctx, client, t, local[t])
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

// resolveTopics applies opts and returns the local schemas and the topics to
// work on: the given ones (each must have a schema), or the defaults.
func resolveTopics(topics []string, opts []Option) (map[string]localSchema, []string, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	local, err := o.localSchemas()
	if err != nil {
		return nil, nil, err
	}
	if len(topics) == 0 {
		if o.schemas != nil {
			for t := range o.schemas {
				topics = append(topics, t)
			}
			slices.Sort(topics)
		} else {
			topics = Topics()
		}
	}
	for _, t := range topics {
		if _, ok := local[t]; !ok {
			return nil, nil, fmt.Errorf("%w: %s", ErrUnknownTopic, t)
		}
	}
	return local, topics, nil
}

// registerOne sets the subject to BACKWARD, then registers l unless it is
// already registered, after checking compatibility with the latest version.
func registerOne(ctx context.Context, client *sr.Client, topic string, l localSchema) (Result, error) {
	subject := Subject(topic)
	res := Result{Topic: topic, Subject: subject}
	set := client.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject)
	if len(set) == 1 && set[0].Err != nil {
		return res, fmt.Errorf("setting compatibility of subject %s to BACKWARD: %w", subject, set[0].Err)
	}
	want := sr.Schema{Schema: l.text, Type: sr.TypeAvro}
	ss, err := client.LookupSchema(ctx, subject, want)
	if err == nil {
		res.ID, res.Version, res.Status = ss.ID, ss.Version, Unchanged
		return res, nil
	}
	if !isNotFound(err) {
		return res, fmt.Errorf("looking up schema of subject %s: %w", subject, err)
	}
	cr, err := checkOne(ctx, client, topic, l)
	if err != nil {
		return res, err
	}
	if cr.Status == Incompatible {
		return res, cr.incompatibleError()
	}
	if _, err := client.RegisterSchema(ctx, subject, want, -1, -1); err != nil {
		return res, fmt.Errorf("registering schema of subject %s: %w", subject, err)
	}
	ss, err = client.LookupSchema(ctx, subject, want)
	if err != nil {
		return res, fmt.Errorf("looking up schema of subject %s after registering it: %w", subject, err)
	}
	res.ID, res.Version, res.Status = ss.ID, ss.Version, Created
	return res, nil
}

// checkOne compares l with the latest version registered for topic.
func checkOne(ctx context.Context, client *sr.Client, topic string, l localSchema) (CheckResult, error) {
	subject := Subject(topic)
	res := CheckResult{Topic: topic, Subject: subject}
	latest, err := client.SchemaByVersion(ctx, subject, -1)
	if err != nil {
		if isNotFound(err) {
			res.Status = Missing
			return res, nil
		}
		return res, fmt.Errorf("fetching latest schema of subject %s: %w", subject, err)
	}
	res.ID, res.Version = latest.ID, latest.Version
	if sameJSON(latest.Schema.Schema, l.text) {
		res.Status = Identical
		return res, nil
	}
	if latest.Type != sr.TypeAvro {
		res.Status, res.Reason = Incompatible, fmt.Sprintf("registered schema is %s, not avro", latest.Type)
		return res, nil
	}
	old, err := parse(latest.Schema.Schema)
	if err != nil {
		return res, fmt.Errorf("parsing latest schema of subject %s (id %d): %w", subject, latest.ID, err)
	}
	sc := avro.NewSchemaCompatibility()
	if err := sc.Compatible(l.schema, old); err != nil {
		res.Status = Incompatible
		res.Field, res.Reason = explain(sc, l.schema, old, "")
		return res, nil
	}
	res.Status = Compatible
	return res, nil
}

func (r CheckResult) incompatibleError() *IncompatibleError {
	return &IncompatibleError{Subject: r.Subject, Version: r.Version, Field: r.Field, Reason: r.Reason}
}

// sameJSON reports whether a and b are the same JSON document (key order
// and white space aside), as registries compare schemas.
func sameJSON(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

// explain finds the first field of reader that cannot read writer's data
// and says why; path is the dotted field path so far. hamba/avro's own
// message names a missing field but not a field whose type changed.
func explain(sc *avro.SchemaCompatibility, reader, writer avro.Schema, path string) (field, reason string) {
	reader, writer = deref(reader), deref(writer)
	switch r := reader.(type) {
	case *avro.RecordSchema:
		if w, ok := writer.(*avro.RecordSchema); ok && sameName(r, w) {
			for _, f := range r.Fields() {
				p := joinPath(path, f.Name())
				wf := findField(w, f)
				if wf == nil {
					if f.HasDefault() {
						continue
					}
					return p, "new field has no default, so records written with the registered schema cannot be read"
				}
				if sc.Compatible(f.Type(), wf.Type()) != nil {
					return explain(sc, f.Type(), wf.Type(), p)
				}
			}
		}
	case *avro.MapSchema:
		if w, ok := writer.(*avro.MapSchema); ok {
			return explain(sc, r.Values(), w.Values(), path+"[]")
		}
	case *avro.ArraySchema:
		if w, ok := writer.(*avro.ArraySchema); ok {
			return explain(sc, r.Items(), w.Items(), path+"[]")
		}
	}
	msg := "incompatible"
	if err := sc.Compatible(reader, writer); err != nil {
		msg = err.Error()
	}
	return path, fmt.Sprintf("type changed from %s (registered) to %s: %s", typeString(writer), typeString(reader), msg)
}

func deref(s avro.Schema) avro.Schema {
	if r, ok := s.(*avro.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func sameName(r, w avro.NamedSchema) bool {
	return r.Name() == w.Name() || slices.Contains(r.Aliases(), w.FullName())
}

func findField(w *avro.RecordSchema, f *avro.Field) *avro.Field {
	for _, wf := range w.Fields() {
		if wf.Name() == f.Name() || slices.Contains(f.Aliases(), wf.Name()) {
			return wf
		}
	}
	return nil
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// typeString is a short human form of a schema: long, timestamp-millis,
// union[null,string], map<string>, io.drover.SensorReading.
func typeString(s avro.Schema) string {
	switch t := deref(s).(type) {
	case avro.NamedSchema:
		return t.FullName()
	case *avro.UnionSchema:
		parts := make([]string, 0, len(t.Types()))
		for _, m := range t.Types() {
			parts = append(parts, typeString(m))
		}
		return "union[" + strings.Join(parts, ",") + "]"
	case *avro.MapSchema:
		return "map<" + typeString(t.Values()) + ">"
	case *avro.ArraySchema:
		return "array<" + typeString(t.Items()) + ">"
	case *avro.PrimitiveSchema:
		if l := t.Logical(); l != nil {
			return string(t.Type()) + "(" + string(l.Type()) + ")"
		}
	}
	return string(s.Type())
}
