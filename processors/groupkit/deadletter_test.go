package groupkit

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
)

func TestDeadLetter(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name       string
		cause      error
		key        string
		wantReason string
		wantDevice bool
	}{
		{"not wire format", fmt.Errorf("decoding: %w", schemas.ErrNotWireFormat), "cow-1", ReasonUndecodable, true},
		{"unknown schema id", &schemas.UnknownSchemaError{ID: 7, Err: errors.New("404")}, "cow-1", ReasonUnknownSchema, true},
		{"body does not match", &schemas.DecodeError{ID: 3, Err: errors.New("short buffer")}, "", ReasonUndecodable, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !Permanent(tc.cause) {
				t.Fatalf("%v is not permanent", tc.cause)
			}
			o := Origin{Group: "features", Topic: "raw.gps", Partition: 3, Offset: 41, Key: tc.key}
			dl := NewDeadLetter(o, []byte("raw"), DecodeReason(tc.cause), tc.cause, now)
			switch {
			case dl.Stage != DeadLetterStage || dl.Reason != tc.wantReason || dl.Message != tc.cause.Error():
				t.Errorf("stage/reason/message %q/%q/%q", dl.Stage, dl.Reason, dl.Message)
			case string(dl.Payload) != "raw" || dl.PayloadSize != 3 || dl.Source != "kafka:raw.gps/3@41":
				t.Errorf("payload/source %q/%d/%q", dl.Payload, dl.PayloadSize, dl.Source)
			case (dl.DeviceID != nil) != tc.wantDevice || (tc.wantDevice && *dl.DeviceID != tc.key):
				t.Errorf("device %v", dl.DeviceID)
			case dl.Headers["group"] != "features" || dl.Headers["partition"] != "3" || dl.Headers["offset"] != "41" || dl.Headers["topic"] != "raw.gps":
				t.Errorf("headers %v", dl.Headers)
			case !dl.TS.Equal(now.Truncate(time.Millisecond)) || dl.TS.Location() != time.UTC:
				t.Errorf("ts %v", dl.TS)
			}
		})
	}
	// The id depends on the record's coordinates only, not on the group.
	a := NewDeadLetter(Origin{Group: "alerts", Topic: "raw.gps", Partition: 3, Offset: 41}, nil, ReasonUndecodable, nil, now)
	b := NewDeadLetter(Origin{Group: "state", Topic: "raw.gps", Partition: 3, Offset: 41}, nil, ReasonUndecodable, nil, now)
	c := NewDeadLetter(Origin{Group: "state", Topic: "raw.gps", Partition: 3, Offset: 42}, nil, ReasonUndecodable, nil, now)
	if a.ID != b.ID || a.ID == c.ID || len(a.ID) != 32 {
		t.Errorf("ids %s %s %s", a.ID, b.ID, c.ID)
	}
	if a.Payload == nil || a.Message != ReasonUndecodable {
		t.Errorf("nil payload or cause: %+v", a)
	}
}
