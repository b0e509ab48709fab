package schemas

import (
	"github.com/drover-iot/drover/cli"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// magic is the first byte of every Confluent wire-format value.
const magic = 0

// HeaderSize is the length of the wire-format header: the magic byte and a
// 4-byte big-endian schema id.
const HeaderSize = 5

// maxBytes bounds a single Avro bytes or string value when decoding (hamba's
// default is 1 MiB; dead letters and raw notifications can be larger).
const maxBytes = 16 << 20

// Header returns the 5-byte wire-format header for schema id.
func Header(id int) []byte { return AppendHeader(make([]byte, 0, HeaderSize), id) }

// AppendHeader appends the wire-format header for schema id to dst.
func AppendHeader(dst []byte, id int) []byte {
	dst = append(dst, magic)
	return binary.BigEndian.AppendUint32(dst, uint32(id))
}

// ParseHeader splits a wire-format value into its schema id and Avro body.
// The error wraps ErrNotWireFormat when b is shorter than the header or does
// not start with the magic byte.
func ParseHeader(b []byte) (id int, body []byte, err error) {
	if len(b) < HeaderSize {
		return 0, nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrNotWireFormat, len(b), HeaderSize)
	}
	if b[0] != magic {
		return 0, nil, fmt.Errorf("%w: magic byte is 0x%02x, want 0x00", ErrNotWireFormat, b[0])
	}
	return int(binary.BigEndian.Uint32(b[1:HeaderSize])), b[HeaderSize:], nil
}

// Option configures NewSerde, Register and Check. Each option says which of
// them it affects.
type Option func(*options)

type options struct {
	autoRegister bool
	schemas      map[string]string
}

// AutoRegister makes a Serde register a topic's schema (after the same
// BACKWARD compatibility check as Register) the first time it encodes for a
// topic whose schema is not registered yet, overriding the default (false:
// Encode fails with ErrNotRegistered, because registration is an explicit
// deployment step). Serde only.
func AutoRegister(on bool) Option { return func(o *options) { o.autoRegister = on } }

// WithSchemas replaces the embedded schema of each topic in m with the given
// avsc text, and limits the default topic set of Register and Check to the
// keys of m. Topics not in m keep their embedded schema. Meant for tests and
// migrations (e.g. register v1, then try v2). Affects Serde, Register and
// Check.
func WithSchemas(m map[string]string) Option {
	return func(o *options) {
		o.schemas = make(map[string]string, len(m))
		for k, v := range m {
			o.schemas[k] = v
		}
	}
}

// localSchema is the schema a process writes and reads a topic with.
type localSchema struct {
	text   string
	schema avro.Schema
}

// localSchemas returns the topic → schema table: the embedded schemas with
// the overrides of WithSchemas applied.
func (o *options) localSchemas() (map[string]localSchema, error) {
	cat := loadCatalog()
	m := make(map[string]localSchema, len(cat.byTopic)+len(o.schemas))
	for topic, r := range cat.byTopic {
		m[topic] = localSchema{text: r.text, schema: r.schema}
	}
	for topic, text := range o.schemas {
		s, err := parse(text)
		if err != nil {
			return nil, fmt.Errorf("parsing schema of %s: %w", topic, err)
		}
		m[topic] = localSchema{text: text, schema: s}
	}
	return m, nil
}

// encoding is the cached state for encoding one topic.
type encoding struct {
	topic  string
	id     int
	header [HeaderSize]byte
	schema avro.Schema
	fast   fastKind // the hand-written encoder the schema allows (fastavro.go)
}

type resolvedKey struct {
	id     int
	reader avro.Schema
}

type resolved struct {
	schema avro.Schema
	err    error
}

// Serde encodes and decodes values in the Confluent wire format with the
// schemas of this package and a schema registry.
//
// A Serde caches each topic's schema id and each writer schema by id, so
// after the first record of a topic (or after Prepare) encoding and decoding
// make no registry requests. Registry failures are not cached: a schema registered
// later is picked up on the next call. A Serde is safe for concurrent use.
type Serde struct {
	client       *sr.Client
	api          avro.API
	autoRegister bool
	local        map[string]localSchema // immutable after NewSerde

	enc      sync.Map // topic → *encoding
	byID     sync.Map // schema id → avro.Schema (writer schema)
	resolved sync.Map // resolvedKey → resolved
	writers  sync.Pool
	// last is the encoding last looked up: a run of records for one
	// topic (a batch of readings) skips enc's hashing.
	last atomic.Pointer[encoding]
}

// NewSerde returns a Serde that talks to the registry through client. It
// fails only when a schema given with WithSchemas does not parse.
func NewSerde(client *sr.Client, opts ...Option) (*Serde, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	local, err := o.localSchemas()
	if err != nil {
		return nil, err
	}
	s := &Serde{
		client:       client,
		api:          avro.Config{TagKey: "avro", MaxByteSliceSize: maxBytes}.Freeze(),
		autoRegister: o.autoRegister,
		local:        local,
	}
	s.writers.New = func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(s.api)) }
	return s, nil
}

// Prepare looks up (or, with AutoRegister, registers) the schema id of each
// topic, so that a process fails at start rather than on its first record.
func (s *Serde) Prepare(ctx context.Context, topics ...string) error {
	var errs []error
	for _, t := range topics {
		if _, err := s.encoding(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ID returns the registry id of topic's local schema (cached).
func (s *Serde) ID(ctx context.Context, topic string) (int, error) {
	e, err := s.encoding(ctx, topic)
	if err != nil {
		return 0, err
	}
	return e.id, nil
}

// Encode returns v encoded with topic's local schema in the wire format.
// v is one of this package's record types (or any value hamba/avro can
// encode with that schema). When the schema is not registered the error
// wraps ErrNotRegistered, unless the Serde was built with AutoRegister(true).
func (s *Serde) Encode(ctx context.Context, topic string, v any) ([]byte, error) {
	return s.AppendEncode(ctx, nil, topic, v)
}

// AppendEncode is Encode appending to dst, so callers can reuse buffers.
// On error dst is returned unchanged.
func (s *Serde) AppendEncode(ctx context.Context, dst []byte, topic string, v any) ([]byte, error) {
	e, err := s.encoding(ctx, topic)
	if err != nil {
		return dst, err
	}
	if e.fast != fastNone {
		if out, ok := appendFast(dst, e.header[:], e.fast, v); ok {
			return out, nil
		}
	}
	w := s.writers.Get().(*avro.Writer)
	w.Reset(nil)
	w.Error = nil
	w.WriteVal(e.schema, v)
	if err := w.Error; err != nil {
		w.Error = nil
		s.writers.Put(w)
		return dst, fmt.Errorf("encoding %s value: %w", topic, err)
	}
	body := w.Buffer()
	dst = slices.Grow(dst, HeaderSize+len(body))
	dst = append(dst, e.header[:]...)
	dst = append(dst, body...)
	if cap(body) <= 64<<10 { // do not pin huge buffers in the pool
		s.writers.Put(w)
	}
	return dst, nil
}

// encoding returns the cached id and schema of topic, looking them up in
// the registry on first use.
func (s *Serde) encoding(ctx context.Context, topic string) (*encoding, error) {
	if e := s.last.Load(); e != nil && e.topic == topic {
		return e, nil
	}
	if v, ok := s.enc.Load(topic); ok {
		e := v.(*encoding)
		s.last.Store(e)
		return e, nil
	}
	l, ok := s.local[topic]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	subject := Subject(topic)
	ss, err := s.client.LookupSchema(ctx, subject, sr.Schema{Schema: l.text, Type: sr.TypeAvro})
	var id int
	switch {
	case err == nil:
		id = ss.ID
	case !isNotFound(err):
		return nil, fmt.Errorf("looking up schema of subject %s: %w", subject, err)
	case !s.autoRegister:
		return nil, fmt.Errorf("subject %s: %w (run drover schemas register)", subject, ErrNotRegistered)
	default:
		res, err := registerOne(ctx, s.client, topic, l)
		if err != nil {
			return nil, err
		}
		id = res.ID
	}
	e := &encoding{topic: topic, id: id, schema: l.schema, fast: fastKindOf(l.schema)}
	copy(e.header[:], Header(id))
	s.byID.LoadOrStore(id, l.schema)
	actual, _ := s.enc.LoadOrStore(topic, e)
	s.last.Store(actual.(*encoding))
	return actual.(*encoding), nil
}

// Decode decodes a wire-format value into v, a pointer. When v is one of
// this package's record types (e.g. *SensorReading), data written with
// another version of its schema is resolved into it (Avro schema
// resolution: new fields take their defaults, removed fields are skipped);
// otherwise v is decoded with the writer schema as is. It returns the schema
// id of the value.
func (s *Serde) Decode(ctx context.Context, b []byte, v any) (id int, err error) {
	var reader avro.Schema
	if r := recordFor(reflectType(v)); r != nil {
		reader = r.schema
	}
	return s.decode(ctx, b, v, reader)
}

// DecodeTopic is Decode with topic's local schema as the reader schema, for
// values of types this package does not know (or to honour WithSchemas).
func (s *Serde) DecodeTopic(ctx context.Context, topic string, b []byte, v any) (id int, err error) {
	l, ok := s.local[topic]
	if !ok {
		return 0, fmt.Errorf("%w: %s", ErrUnknownTopic, topic)
	}
	return s.decode(ctx, b, v, l.schema)
}

// DecodeAny decodes a wire-format value with its writer schema into generic
// Go values: a record becomes map[string]any, timestamp-millis time.Time, a
// non-null union member its plain value (hamba/avro's generic mapping).
func (s *Serde) DecodeAny(ctx context.Context, b []byte) (id int, value any, err error) {
	id, body, err := ParseHeader(b)
	if err != nil {
		return 0, nil, err
	}
	writer, err := s.WriterSchema(ctx, id)
	if err != nil {
		return id, nil, err
	}
	if err := s.unmarshal(writer, body, &value); err != nil {
		return id, nil, &DecodeError{ID: id, Err: err}
	}
	return id, value, nil
}

func (s *Serde) decode(ctx context.Context, b []byte, v any, reader avro.Schema) (int, error) {
	id, body, err := ParseHeader(b)
	if err != nil {
		return 0, err
	}
	writer, err := s.WriterSchema(ctx, id)
	if err != nil {
		return id, err
	}
	sch := writer
	if reader != nil && reader != writer {
		if sch, err = s.resolve(id, reader, writer); err != nil {
			return id, &DecodeError{ID: id, Err: err}
		}
	}
	if err := s.unmarshal(sch, body, v); err != nil {
		return id, &DecodeError{ID: id, Err: err}
	}
	return id, nil
}

// readerPool holds avro readers for unmarshal; their config is set per use.
var readerPool = sync.Pool{New: func() any { return avro.NewReader(nil, 0) }}

// errTruncated is returned for a body that ends inside the record.
var errTruncated = fmt.Errorf("avro body is truncated (%w)", io.ErrUnexpectedEOF)

// unmarshal decodes body with sch into v. Unlike avro.API.Unmarshal, which
// treats running out of input as success (leaving the rest of v at its zero
// values), a body that ends before the record does is an error: a truncated
// record must become a dead letter, not a row of zeros.
func (s *Serde) unmarshal(sch avro.Schema, body []byte, v any) error {
	r := readerPool.Get().(*avro.Reader)
	defer readerPool.Put(r)
	avro.WithReaderConfig(s.api)(r)
	r.Reset(body)
	r.Error = nil
	r.ReadVal(sch, v)
	err := r.Error
	r.Reset(nil)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errTruncated
	}
	return err
}

// resolve returns the schema that reads data written with writer (schema
// id) as reader, cached per (id, reader).
func (s *Serde) resolve(id int, reader, writer avro.Schema) (avro.Schema, error) {
	key := resolvedKey{id: id, reader: reader}
	if r, ok := s.resolved.Load(key); ok {
		r := r.(resolved)
		return r.schema, r.err
	}
	var r resolved
	if reader.Fingerprint() == writer.Fingerprint() {
		r.schema = reader // same canonical form: same binary encoding
	} else {
		r.schema, r.err = avro.NewSchemaCompatibility().Resolve(reader, writer)
		if r.err != nil {
			r.err = fmt.Errorf("writer schema %d cannot be read as %s: %w", id, schemaName(reader), r.err)
		}
	}
	s.resolved.Store(key, r)
	return r.schema, r.err
}

// WriterSchema returns the schema registered under id, fetching it from the
// registry once. An id the registry does not know is an *UnknownSchemaError.
func (s *Serde) WriterSchema(ctx context.Context, id int) (avro.Schema, error) {
	if sch, ok := s.byID.Load(id); ok {
		return sch.(avro.Schema), nil
	}
	rs, err := s.client.SchemaByID(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, &UnknownSchemaError{ID: id, Err: err}
		}
		return nil, fmt.Errorf("fetching schema id %d: %w", id, err)
	}
	if rs.Type != sr.TypeAvro {
		return nil, fmt.Errorf("schema id %d is %s, not avro", id, rs.Type)
	}
	if len(rs.References) > 0 {
		return nil, fmt.Errorf("schema id %d uses schema references, which drover does not support", id)
	}
	sch, err := parse(rs.Schema)
	if err != nil {
		return nil, fmt.Errorf("parsing schema id %d: %w", id, err)
	}
	actual, _ := s.byID.LoadOrStore(id, sch)
	return actual.(avro.Schema), nil
}

func schemaName(s avro.Schema) string {
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

// ConnSerde is NewSerde over the schema registry client of a command's
// connection flags (--schema-registry-url and its TLS and auth settings).
func ConnSerde(conn *cli.Conn) (*Serde, error) {
	reg, err := conn.Registry()
	if err != nil {
		return nil, err
	}
	return NewSerde(reg)
}
