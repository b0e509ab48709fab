package ingest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		kind   Kind
		reason string
	}{
		{nil, Accepted, ""},
		{&decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonInvalidValue}, Refused, "invalid_value"},
		{fmt.Errorf("x: %w", &decode.Error{Stage: decode.StageDecode, Reason: decode.ReasonPayloadTooLarge}), TooLarge, "payload_too_large"},
		{&decode.Error{Stage: decode.StageRoute, Reason: ReasonUnknownDevice}, Unauthenticated, "unknown_device"},
		{&decode.Error{Stage: decode.StageRoute, Reason: ReasonDeviceRevoked}, Forbidden, "device_revoked"},
		{fmt.Errorf("view: %w", registry.ErrUnknownDevice), Unauthenticated, "unknown_device"},
		{&registry.InactiveError{Key: "a/b", Status: registry.StatusSuspended}, Forbidden, "device_revoked"},
		{fmt.Errorf("in flight: %w", ErrUnavailable), Unavailable, "unavailable"},
		{context.DeadlineExceeded, Unavailable, "unavailable"},
		{errors.New("boom"), Internal, "internal_error"},
	} {
		o := Classify(tc.err)
		if o.Kind != tc.kind || o.Reason != tc.reason {
			t.Errorf("Classify(%v) = %+v, want kind %d reason %q", tc.err, o, tc.kind, tc.reason)
		}
	}
}
