package groupkit

import (
	"errors"
	"fmt"

	"github.com/hamba/avro/v2"
)

// StateCodec is a goka.Codec for group-table state: a version byte
// followed by a raw Avro body (no registry, no wire-format header). It is
// several times faster and smaller than JSON, which matters because goka
// decodes and encodes a key's state for every input record.
//
// Versions are the schemas the state has had, oldest first; values are
// written with the newest (version len(versions)) and a value written with
// an older one is read with that schema, field by field into T (fields
// the old schema lacks keep their zero value). Encode takes *T; Decode
// returns *T.
type StateCodec[T any] struct {
	api      avro.API
	versions []avro.Schema
}

// NewStateCodec parses the schema versions (avsc text, oldest first).
func NewStateCodec[T any](versions ...string) (*StateCodec[T], error) {
	if len(versions) == 0 || len(versions) > 255 {
		return nil, errors.New("state codec: need 1 to 255 schema versions")
	}
	c := &StateCodec[T]{api: avro.Config{TagKey: "avro"}.Freeze()}
	for i, text := range versions {
		s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("state codec: schema version %d: %w", i+1, err)
		}
		c.versions = append(c.versions, s)
	}
	return c, nil
}

// MustStateCodec is NewStateCodec for schemas compiled into the program;
// it panics on a schema that does not parse (a programming error caught
// by every test).
func MustStateCodec[T any](versions ...string) *StateCodec[T] {
	c, err := NewStateCodec[T](versions...)
	if err != nil {
		panic(err)
	}
	return c
}

// Encode implements goka.Codec.
func (c *StateCodec[T]) Encode(v interface{}) ([]byte, error) {
	b, err := c.api.Marshal(c.versions[len(c.versions)-1], v)
	if err != nil {
		return nil, fmt.Errorf("encoding %T state: %w", v, err)
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, byte(len(c.versions)))
	return append(out, b...), nil
}

// Decode implements goka.Codec.
func (c *StateCodec[T]) Decode(b []byte) (interface{}, error) {
	v := new(T)
	if len(b) == 0 {
		return nil, fmt.Errorf("decoding %T state: empty value", v)
	}
	ver := int(b[0])
	if ver < 1 || ver > len(c.versions) {
		return nil, fmt.Errorf("decoding %T state: unknown version %d (this build knows 1 to %d)", v, ver, len(c.versions))
	}
	if err := c.api.Unmarshal(c.versions[ver-1], b[1:], v); err != nil {
		return nil, fmt.Errorf("decoding %T state (version %d): %w", v, ver, err)
	}
	return v, nil
}
