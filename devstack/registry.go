package devstack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/drover-iot/drover/devstack/devstage"
)

// Registry is the embedded schema registry: srfake (the Confluent REST API,
// in memory) behind a handler that adds what srfake lacks and drover needs:
//
//   - compatibility enforcement: POST /subjects/{s}/versions checks an Avro
//     schema against the subject's existing versions at the subject's
//     compatibility level (BACKWARD unless configured) and answers 409 with
//     a Confluent error body when it is incompatible; POST
//     /compatibility/subjects/{s}/versions[/{v}] answers truthfully
//     (srfake's always says compatible);
//   - persistence (when created with a snapshot path): after every
//     successful mutating request the registry's subjects, versions, ids,
//     schemas and compatibility levels are written atomically to the
//     snapshot file, and NewRegistry reseeds srfake from it, so schema ids
//     keep resolving after a restart.
//
// Registry is an http.Handler and is safe for concurrent use. Changes made
// through Fake's Go methods bypass both additions; go through HTTP.
type Registry struct {
	// Fake is the underlying srfake registry, for inspection in tests.
	Fake *srfake.Registry

	inner http.Handler
	mux   *http.ServeMux
	path  string // snapshot file; "" = in memory only
	log   *slog.Logger

	mu    sync.Mutex // serialises mutating requests and snapshots
	order []schemaKey
}

type schemaKey struct {
	Subject string
	Version int
}

// registrySnapshot is the persisted form of the registry.
type registrySnapshot struct {
	Format        int               `json:"format"`
	GlobalCompat  string            `json:"global_compat,omitempty"`
	SubjectCompat map[string]string `json:"subject_compat,omitempty"`
	// Schemas are in registration order, so replaying them reproduces
	// versions, ids and references.
	Schemas []snapshotSchema `json:"schemas"`
}

type snapshotSchema struct {
	sr.SubjectSchema
	Deleted bool `json:"deleted,omitempty"`
}

// NewRegistry returns an embedded registry. With snapshotPath set, state is
// loaded from that file if it exists and saved to it after every change;
// with "" the registry lives in memory only. log may be nil.
func NewRegistry(snapshotPath string, log *slog.Logger) (*Registry, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fake := srfake.NewRegistry()
	r := &Registry{Fake: fake, inner: fake.Handler(), path: snapshotPath, log: log}
	r.mux = http.NewServeMux()
	r.mux.HandleFunc("POST /subjects/{subject}/versions", r.handleRegister)
	r.mux.HandleFunc("POST /compatibility/subjects/{subject}/versions/{version}", r.handleCompat)
	r.mux.HandleFunc("POST /compatibility/subjects/{subject}/versions", r.handleCompat)
	r.mux.Handle("/", r.inner)
	if snapshotPath != "" {
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ServeHTTP implements http.Handler.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		r.inner.ServeHTTP(w, req)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	r.mux.ServeHTTP(sw, req)
	if r.path != "" && sw.status >= 200 && sw.status < 300 && !strings.HasPrefix(req.URL.Path, "/compatibility/") {
		if err := r.save(); err != nil {
			r.log.Error("schema registry: persist snapshot", "path", r.path, "err", err)
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// handleRegister checks compatibility before handing the registration to
// srfake. A schema already registered under the subject is passed through,
// as Confluent returns its existing id without a check.
func (r *Registry) handleRegister(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
	if err != nil {
		writeRegistryError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	var sch sr.Schema
	if err := json.Unmarshal(body, &sch); err != nil || sch.Type != sr.TypeAvro {
		r.inner.ServeHTTP(w, req) // srfake reports bad bodies; only Avro is checked
		return
	}
	if _, err := r.parseAvro(sch); err != nil {
		writeRegistryError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	if r.innerStatus(http.MethodPost, "/subjects/"+url.PathEscape(subject), body) == http.StatusOK {
		r.inner.ServeHTTP(w, req) // already registered: srfake returns its id
		return
	}
	versions := r.activeVersions(subject)
	if len(versions) > 0 {
		level := r.compatLevel(subject)
		if msgs := r.checkCompat(sch, subject, versions, level, true); len(msgs) > 0 {
			writeRegistryError(w, http.StatusConflict, 409, fmt.Sprintf(
				"Schema being registered is incompatible with an earlier schema for subject %q (compatibility %s), details: [%s]",
				subject, level, strings.Join(msgs, "; ")))
			return
		}
	}
	r.inner.ServeHTTP(w, req)
}

// handleCompat answers POST /compatibility/subjects/{s}/versions[/{v}].
func (r *Registry) handleCompat(w http.ResponseWriter, req *http.Request) {
	subject := req.PathValue("subject")
	var sch sr.Schema
	if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 1<<20)).Decode(&sch); err != nil {
		writeRegistryError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	if sch.Type != sr.TypeAvro {
		r.inner.ServeHTTP(w, req)
		return
	}
	if _, err := r.parseAvro(sch); err != nil {
		writeRegistryError(w, http.StatusUnprocessableEntity, 42201, "Invalid schema: "+err.Error())
		return
	}
	versions := r.activeVersions(subject)
	if len(versions) == 0 {
		writeRegistryError(w, http.StatusNotFound, 40401, fmt.Sprintf("Subject '%s' not found.", subject))
		return
	}
	level := r.compatLevel(subject)
	transitive := true
	if v := req.PathValue("version"); v != "" {
		n := versions[len(versions)-1]
		if v != "latest" && v != "-1" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || !contains(versions, n) {
				writeRegistryError(w, http.StatusNotFound, 40402, fmt.Sprintf("Version %s not found.", v))
				return
			}
		}
		versions, transitive = []int{n}, false
	}
	msgs := r.checkCompat(sch, subject, versions, level, transitive)
	resp := map[string]any{"is_compatible": len(msgs) == 0}
	if req.URL.Query().Get("verbose") == "true" {
		if msgs == nil {
			msgs = []string{}
		}
		resp["messages"] = msgs
	}
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	_ = json.NewEncoder(w).Encode(resp)
}

// checkCompat returns why sch is incompatible with the given versions of
// subject at level, or nil. With transitive false (or a non-transitive
// level) only the last of versions is checked.
func (r *Registry) checkCompat(sch sr.Schema, subject string, versions []int, level sr.CompatibilityLevel, transitive bool) []string {
	var backward, forward bool
	switch level {
	case sr.CompatNone:
		return nil
	case sr.CompatBackward, sr.CompatBackwardTransitive:
		backward = true
	case sr.CompatForward, sr.CompatForwardTransitive:
		forward = true
	default: // FULL, FULL_TRANSITIVE
		backward, forward = true, true
	}
	switch level {
	case sr.CompatBackwardTransitive, sr.CompatForwardTransitive, sr.CompatFullTransitive:
	default:
		transitive = false
	}
	if !transitive {
		versions = versions[len(versions)-1:]
	}
	neu, err := r.parseAvro(sch)
	if err != nil {
		return []string{err.Error()}
	}
	var msgs []string
	for _, v := range versions {
		old, ok := r.Fake.GetSchema(subject, v)
		if !ok || old.Type != sr.TypeAvro {
			continue
		}
		oldParsed, err := r.parseAvro(old.Schema)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("version %d does not parse: %v", v, err))
			continue
		}
		compat := avro.NewSchemaCompatibility()
		if backward {
			if err := compat.Compatible(neu, oldParsed); err != nil {
				msgs = append(msgs, fmt.Sprintf("new schema cannot read data written with version %d: %v", v, err))
			}
		}
		if forward {
			if err := compat.Compatible(oldParsed, neu); err != nil {
				msgs = append(msgs, fmt.Sprintf("version %d cannot read data written with the new schema: %v", v, err))
			}
		}
	}
	return msgs
}

// parseAvro parses an Avro schema with its references, in a fresh cache so
// that two versions of the same named type do not collide.
func (r *Registry) parseAvro(sch sr.Schema) (avro.Schema, error) {
	cache := &avro.SchemaCache{}
	if err := r.parseRefs(sch.References, cache, 0); err != nil {
		return nil, err
	}
	return avro.ParseWithCache(sch.Schema, "", cache)
}

func (r *Registry) parseRefs(refs []sr.SchemaReference, cache *avro.SchemaCache, depth int) error {
	if depth > 32 {
		return errors.New("schema references nested too deep")
	}
	for _, ref := range refs {
		ss, ok := r.Fake.GetSchema(ref.Subject, ref.Version)
		if !ok {
			return fmt.Errorf("reference %s: subject %q version %d not found", ref.Name, ref.Subject, ref.Version)
		}
		if err := r.parseRefs(ss.References, cache, depth+1); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(ss.Schema.Schema, "", cache); err != nil {
			return fmt.Errorf("reference %s: %w", ref.Name, err)
		}
	}
	return nil
}

// activeVersions lists subject's non-deleted versions, ascending.
func (r *Registry) activeVersions(subject string) []int {
	var versions []int
	r.innerJSON("/subjects/"+url.PathEscape(subject)+"/versions", &versions)
	sort.Ints(versions)
	return versions
}

// compatLevel is subject's compatibility level, or the global one.
func (r *Registry) compatLevel(subject string) sr.CompatibilityLevel {
	var resp struct {
		Level sr.CompatibilityLevel `json:"compatibilityLevel"`
	}
	if !r.innerJSON("/config/"+url.PathEscape(subject), &resp) || resp.Level == 0 {
		return sr.CompatBackward
	}
	return resp.Level
}

// innerJSON GETs path from srfake and decodes a 200 answer into v.
func (r *Registry) innerJSON(path string, v any) bool {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, req)
	return rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), v) == nil
}

func (r *Registry) innerStatus(method, path string, body []byte) int {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	rec := httptest.NewRecorder()
	r.inner.ServeHTTP(rec, req)
	return rec.Code
}

func writeRegistryError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": code, "message": msg})
}

func contains(s []int, n int) bool {
	for _, v := range s {
		if v == n {
			return true
		}
	}
	return false
}

// save writes the snapshot atomically. Callers hold r.mu.
func (r *Registry) save() error {
	var all, active []sr.SubjectSchema
	if !r.innerJSON("/schemas?deleted=true", &all) || !r.innerJSON("/schemas", &active) {
		return errors.New("list schemas from srfake")
	}
	isActive := make(map[schemaKey]bool, len(active))
	for _, s := range active {
		isActive[schemaKey{s.Subject, s.Version}] = true
	}
	byKey := make(map[schemaKey]sr.SubjectSchema, len(all))
	for _, s := range all {
		byKey[schemaKey{s.Subject, s.Version}] = s
	}
	// Keep the known registration order, append what is new (by id, then
	// subject and version, which is the order srfake assigned them in).
	order := r.order[:0:0]
	seen := make(map[schemaKey]bool, len(all))
	for _, k := range r.order {
		if _, ok := byKey[k]; ok {
			order = append(order, k)
			seen[k] = true
		}
	}
	var added []sr.SubjectSchema
	for k, s := range byKey {
		if !seen[k] {
			added = append(added, s)
		}
	}
	sort.Slice(added, func(i, j int) bool {
		a, b := added[i], added[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Subject != b.Subject {
			return a.Subject < b.Subject
		}
		return a.Version < b.Version
	})
	for _, s := range added {
		order = append(order, schemaKey{s.Subject, s.Version})
	}
	r.order = order

	snap := registrySnapshot{Format: 1, SubjectCompat: map[string]string{}}
	var global struct {
		Level sr.CompatibilityLevel `json:"compatibilityLevel"`
	}
	if r.innerJSON("/config", &global) && global.Level != 0 {
		snap.GlobalCompat = global.Level.String()
	}
	var subjects []string
	r.innerJSON("/subjects?deleted=true", &subjects)
	for _, s := range subjects {
		var sc struct {
			Level sr.CompatibilityLevel `json:"compatibilityLevel"`
		}
		if r.innerJSON("/config/"+url.PathEscape(s)+"?defaultToGlobal=false", &sc) && sc.Level != 0 {
			snap.SubjectCompat[s] = sc.Level.String()
		}
	}
	for _, k := range order {
		snap.Schemas = append(snap.Schemas, snapshotSchema{SubjectSchema: byKey[k], Deleted: !isActive[k]})
	}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return err
	}
	return devstage.WriteFileAtomic(r.path, append(data, '\n'), 0o644)
}

// load reseeds srfake from the snapshot file, if there is one. The first
// use of an id is seeded with SeedSchema (which pins the id); a later use of
// the same id under another subject is registered, which makes srfake reuse
// the id, as a real registry does.
func (r *Registry) load() (err error) {
	data, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("schema registry snapshot: %w", err)
	}
	var snap registrySnapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("schema registry snapshot %s: %w", r.path, err)
	}
	defer func() {
		if p := recover(); p != nil { // SeedSchema panics on conflicts
			err = fmt.Errorf("schema registry snapshot %s: %v", r.path, p)
		}
	}()
	seeded := map[int]bool{}
	for _, s := range snap.Schemas {
		if !seeded[s.ID] {
			r.Fake.SeedSchema(s.Subject, s.Version, s.ID, s.Schema)
			seeded[s.ID] = true
		} else {
			id, v, err := r.Fake.RegisterSchema(s.Subject, s.Schema)
			if err != nil {
				return fmt.Errorf("schema registry snapshot %s: reseed %s version %d: %w", r.path, s.Subject, s.Version, err)
			}
			if id != s.ID || v != s.Version {
				r.log.Warn("schema registry: reseeded schema got another slot", "subject", s.Subject,
					"want_version", s.Version, "want_id", s.ID, "version", v, "id", id)
			}
		}
		r.order = append(r.order, schemaKey{s.Subject, s.Version})
	}
	for _, s := range snap.Schemas {
		if s.Deleted {
			path := fmt.Sprintf("/subjects/%s/versions/%d", url.PathEscape(s.Subject), s.Version)
			if code := r.innerStatus(http.MethodDelete, path, nil); code != http.StatusOK {
				r.log.Warn("schema registry: re-delete soft-deleted version", "subject", s.Subject, "version", s.Version, "status", code)
			}
		}
	}
	if snap.GlobalCompat != "" {
		body, _ := json.Marshal(map[string]string{"compatibility": snap.GlobalCompat})
		r.innerStatus(http.MethodPut, "/config", body)
	}
	for subject, level := range snap.SubjectCompat {
		var l sr.CompatibilityLevel
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return fmt.Errorf("schema registry snapshot %s: subject %s: %w", r.path, subject, err)
		}
		if err := r.Fake.SetCompat(subject, l); err != nil {
			return fmt.Errorf("schema registry snapshot %s: subject %s: %w", r.path, subject, err)
		}
	}
	return nil
}
