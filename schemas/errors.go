package schemas

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/sr"
)

// ErrNotWireFormat means the bytes are not in the Confluent wire format:
// shorter than the 5-byte header, or not starting with the magic byte 0.
var ErrNotWireFormat = errors.New("not confluent wire format")

// ErrNotRegistered means a topic's local schema is not registered under its
// subject. Run `drover schemas register` (or build the Serde with
// AutoRegister(true)).
var ErrNotRegistered = errors.New("schema not registered")

// ErrUnknownTopic means a topic has no schema in this package.
var ErrUnknownTopic = errors.New("topic has no schema")

// UnknownSchemaError means the registry does not know a schema id found in a
// record header. Err is the registry's answer, if any.
type UnknownSchemaError struct {
	ID  int
	Err error
}

func (e *UnknownSchemaError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("unknown schema id %d: %v", e.ID, e.Err)
	}
	return fmt.Sprintf("unknown schema id %d", e.ID)
}

func (e *UnknownSchemaError) Unwrap() error { return e.Err }

// DecodeError is a failure to decode an Avro body written with schema ID.
type DecodeError struct {
	ID  int
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding avro body (schema id %d): %v", e.ID, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// IncompatibleError reports a local schema that cannot read data written with
// the schema registered under Subject (BACKWARD compatibility). Field is the
// dotted path of the first field that breaks it ("" when the record itself
// does, e.g. a rename); Reason says why.
type IncompatibleError struct {
	Subject string
	Version int // registered version checked against
	Field   string
	Reason  string
}

func (e *IncompatibleError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("subject %s: schema is not backward compatible with version %d: %s", e.Subject, e.Version, e.Reason)
	}
	return fmt.Sprintf("subject %s: schema is not backward compatible with version %d: field %q: %s", e.Subject, e.Version, e.Field, e.Reason)
}

// registryCode returns the schema registry error code of err (e.g. 40401
// subject not found), or 0.
func registryCode(err error) int {
	var re *sr.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return 0
}

func isNotFound(err error) bool {
	switch registryCode(err) {
	case sr.ErrSubjectNotFound.Code, sr.ErrVersionNotFound.Code, sr.ErrSchemaNotFound.Code:
		return true
	}
	return false
}
