package lorawan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/drover-iot/drover/ingest/decode"
)

func newErr(stage decode.Stage, reason decode.Reason, field, format string, args ...any) *decode.Error {
	msg := decode.Escape(fmt.Sprintf(format, args...))
	if len(msg) > decode.MaxMessage {
		msg = strings.ToValidUTF8(msg[:decode.MaxMessage], "")
	}
	return &decode.Error{Stage: stage, Reason: reason, Field: field, Message: msg}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
