package groupkit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/drover-iot/drover/schemas"
)

// BadRecord is what an input codec returns, instead of an error, for a
// value that can never be decoded (not in the wire format, a schema id the
// registry does not know, a body that does not match its schema). goka
// stops the whole processor on a codec error, so callbacks receive the bad
// record, count it and move on; the bytes stay in the input topic.
type BadRecord struct {
	// Topic is the topic the codec reads.
	Topic string
	// Err says why the value is bad.
	Err error
	// Size is the value's length in bytes.
	Size int
	// Raw is the value as read (shared with the consumed message, not
	// copied), for a dead letter.
	Raw []byte
}

// Error implements error.
func (b *BadRecord) Error() string {
	return fmt.Sprintf("undecodable %s value (%d bytes): %v", b.Topic, b.Size, b.Err)
}

// Unwrap returns the decoding error.
func (b *BadRecord) Unwrap() error { return b.Err }

// AvroCodec is a goka.Codec for one topic's records (T is one of the
// schemas record types) in the Confluent wire format, through the shared
// Serde. Encode takes T or *T; Decode returns *T, or a *BadRecord for a
// value that can never be decoded. Transient failures (the registry is
// unreachable) are errors, which stop the processor so the record is
// retried after a restart rather than lost.
type AvroCodec[T any] struct {
	Serde *schemas.Serde
	Topic string
}

// The codecs pass context.Background() to the serde: only a schema id's
// first use reaches the registry, and the registry client bounds each
// request (franz-go's sr client: 5 s by default). A per-record context
// with a deadline cost 4% of the features group's CPU.

// Encode implements goka.Codec.
func (c AvroCodec[T]) Encode(v interface{}) ([]byte, error) {
	return c.Serde.Encode(context.Background(), c.Topic, v)
}

// Decode implements goka.Codec.
func (c AvroCodec[T]) Decode(b []byte) (interface{}, error) {
	v := new(T)
	if _, err := c.Serde.DecodeTopic(context.Background(), c.Topic, b, v); err != nil {
		if Permanent(err) {
			return &BadRecord{Topic: c.Topic, Err: err, Size: len(b), Raw: b}, nil
		}
		return nil, fmt.Errorf("decoding %s value: %w", c.Topic, err)
	}
	return v, nil
}

// Permanent reports whether a serde error will recur on every retry: the
// value is not in the wire format, its schema id is unknown, or its body
// does not decode.
func Permanent(err error) bool {
	var unknown *schemas.UnknownSchemaError
	var dec *schemas.DecodeError
	return errors.Is(err, schemas.ErrNotWireFormat) || errors.As(err, &unknown) || errors.As(err, &dec)
}

// JSONCodec is a goka.Codec storing *T as JSON: the compact, debuggable
// encoding drover uses for group-table state. Encode takes T or *T; Decode
// returns *T.
type JSONCodec[T any] struct{}

// Encode implements goka.Codec.
func (JSONCodec[T]) Encode(v interface{}) ([]byte, error) { return json.Marshal(v) }

// Decode implements goka.Codec.
func (JSONCodec[T]) Decode(b []byte) (interface{}, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decoding %T state: %w", v, err)
	}
	return v, nil
}
