package timescale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// Reasons recorded in dead_letters for records the sink rejects itself
// (stage "sink").
const (
	ReasonNotWireFormat = "not_wire_format"      // not Confluent wire format
	ReasonUnknownSchema = "unknown_schema"       // schema id the registry does not know
	ReasonUndecodable   = "undecodable"          // Avro body does not decode
	ReasonInvalid       = "invalid_record"       // decodes, but a field is unusable
	ReasonRejected      = "rejected_by_database" // the database refused the row
	ReasonTimeRange     = "ts_out_of_range"      // event time before 2000 or too far ahead
	StageSink           = "sink"                 // dead_letters.stage of the sink's own rows
	deadLetterIDPrefix  = "sink:"                // + topic:partition:offset
	minEventTime        = "2000-01-01T00:00:00Z" // earliest accepted event time
	maxFutureDefault    = 366 * 24 * time.Hour   // latest accepted event time, ahead of now
	mediaTopicSeparator = "."                    // raw.<kind>.meta
)

// AppTopicPrefix starts the stream apps' target topics (apps.TargetPrefix):
// with Config.AppRecords the sink consumes every topic with it, those
// created later included, into app_records.
const AppTopicPrefix = "apps."

// SinkTopics are the topics the sink consumes by default.
var SinkTopics = []string{
	topics.RawSensor, topics.RawGPS,
	topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D,
	topics.Features, topics.Alerts, topics.StateLatest, topics.DLQ, topics.DevicesRegistry, topics.CommandStatus,
}

// invalidError is a record that decoded but cannot be stored; it becomes a
// dead letter with ReasonInvalid (or Reason when set).
type invalidError struct {
	reason string
	msg    string
}

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{reason: ReasonInvalid, msg: fmt.Sprintf(format, args...)}
}

// minTime is minEventTime parsed.
var minTime, _ = time.Parse(time.RFC3339, minEventTime)

// decoder turns Kafka records into batch rows.
type decoder struct {
	serde     *schemas.Serde
	now       func() time.Time
	maxFuture time.Duration
}

func newDecoder(serde *schemas.Serde, now func() time.Time) *decoder {
	return &decoder{serde: serde, now: now, maxFuture: maxFutureDefault}
}

// outcome says what add did with a record.
type outcome int

const (
	outRow        outcome = iota // a row for its table
	outDeadLetter                // a dead letter (poison record)
	outSkipped                   // a tombstone: nothing to write
	outIgnored                   // a device state without an event time, a registry tenant entry: nothing to write
)

// outcomeLabels are the outcome label values of drover_sink_records_total.
var outcomeLabels = [...]string{outRow: "row", outDeadLetter: "dead_letter", outSkipped: "tombstone", outIgnored: "skipped"}

// errNoEventTime is a state.latest record of a device never seen: ts and
// last_seen are the epoch (the state processor emitted such records for an
// alert that reached a device's state before any reading). It says nothing
// device_state can hold (last_seen is NOT NULL and means "seen"), and the
// device's first real state carries its alerts, so it is skipped and
// counted (drover_sink_records_total{outcome="skipped"}).
var errNoEventTime = errors.New("device state without an event time")

// add decodes r into b. Poison records become dead letters in b; the only
// errors returned are transient (e.g. the registry is unreachable), after
// which b is unchanged.
func (d *decoder) add(ctx context.Context, b *Batch, r *kgo.Record) (outcome, error) {
	if r.Value == nil {
		if r.Topic == topics.StateLatest && len(r.Key) > 0 {
			b.deleteState(string(r.Key)) // the device was removed from the compacted state
		}
		if r.Topic == topics.DevicesRegistry {
			b.deleteDevice(string(r.Key)) // the registry forgot a (revoked) device
		}
		return outSkipped, nil
	}
	err := d.decodeInto(ctx, b, r)
	if err == nil {
		return outRow, nil
	}
	if errors.Is(err, errNoEventTime) || errors.Is(err, errTenantEntry) {
		return outIgnored, nil
	}
	reason := ""
	var ie *invalidError
	var use *schemas.UnknownSchemaError
	var de *schemas.DecodeError
	switch {
	case errors.As(err, &ie):
		reason = ie.reason
	case errors.Is(err, schemas.ErrNotWireFormat):
		reason = ReasonNotWireFormat
	case errors.As(err, &use):
		reason = ReasonUnknownSchema
	case errors.As(err, &de):
		reason = ReasonUndecodable
	default:
		return 0, err
	}
	b.DeadLetters = append(b.DeadLetters, d.poison(r, reason, err.Error()))
	return outDeadLetter, nil
}

// poison builds the dead letter that replaces record r.
func (d *decoder) poison(r *kgo.Record, reason, msg string) DeadLetter {
	return recordLetter(r, reason, msg, d.now())
}

// recordLetter builds the sink's dead letter (stage sink) for Kafka record
// r: id sink:topic:partition:offset, the record's bytes and headers, its
// Kafka coordinates, and its timestamp as the receive time (now when it
// has none).
func recordLetter(r *kgo.Record, reason, msg string, now time.Time) DeadLetter {
	ts := r.Timestamp.UTC().Truncate(time.Millisecond)
	if ts.IsZero() || ts.Before(minTime) {
		ts = now.UTC().Truncate(time.Millisecond)
	}
	headers := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		headers[cleanText(h.Key)] = cleanText(string(h.Value))
	}
	var tenant, device *string
	if len(r.Key) > 0 {
		k := cleanText(string(r.Key))
		device = &k
		// Records are keyed TENANT/DEVICE (identity.Key).
		if t, dev, err := identity.ParseKey(k); err == nil {
			tenant, device = &t, &dev
		}
	}
	payload := r.Value
	if r.Topic == topics.DevicesRegistry {
		// A registry record carries a device's secret hash: the dead
		// letter names the record (topic, partition, offset) instead.
		payload = []byte{}
	}
	return DeadLetter{
		DeadLetter: schemas.DeadLetter{
			ID:          fmt.Sprintf("%s%s:%d:%d", deadLetterIDPrefix, r.Topic, r.Partition, r.Offset),
			Stage:       StageSink,
			Reason:      reason,
			Message:     cleanText(msg),
			Source:      r.Topic,
			Tenant:      tenant,
			DeviceID:    device,
			Payload:     payload,
			PayloadSize: int64(len(r.Value)),
			Headers:     headers,
			ReceivedAt:  ts,
			TS:          ts,
			IngestedAt:  now.UTC().Truncate(time.Millisecond),
		},
		KafkaTopic:     r.Topic,
		KafkaPartition: r.Partition,
		KafkaOffset:    r.Offset,
	}
}

func (d *decoder) decodeInto(ctx context.Context, b *Batch, r *kgo.Record) error {
	switch r.Topic {
	case topics.RawSensor:
		var v schemas.SensorReading
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.EventID), d.eventTime(v.TS),
			text("metric", v.Metric, true), text("source", v.Source, false), optText("unit", v.Unit), attrs(v.Attrs)); err != nil {
			return err
		}
		b.Readings = append(b.Readings, v)
		b.src.readings = append(b.src.readings, r)
	case topics.RawGPS:
		var v schemas.GPSFix
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.EventID), d.eventTime(v.TS),
			text("source", v.Source, false), attrs(v.Attrs)); err != nil {
			return err
		}
		if math.IsNaN(v.Lat) || math.IsNaN(v.Lon) || v.Lat < -90 || v.Lat > 90 || v.Lon < -180 || v.Lon > 180 {
			return invalidf("position %v,%v is not a valid latitude/longitude", v.Lat, v.Lon)
		}
		b.Fixes = append(b.Fixes, v)
		b.src.fixes = append(b.src.fixes, r)
	case topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D:
		var v schemas.MediaObject
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if v.Kind == "" {
			v.Kind = strings.Split(r.Topic, mediaTopicSeparator)[1]
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.EventID), d.eventTime(v.TS),
			text("bucket", v.Bucket, true), text("key", v.Key, true), text("kind", v.Kind, true),
			text("content_type", v.ContentType, false), optText("sha256", v.SHA256), optText("etag", v.ETag), attrs(v.Attrs)); err != nil {
			return err
		}
		b.Media = append(b.Media, v)
		b.src.media = append(b.src.media, r)
	case topics.Features:
		var v schemas.Feature
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.FeatureID), d.eventTime(v.TS), text("metric", v.Metric, true)); err != nil {
			return err
		}
		b.Features = append(b.Features, v)
		b.src.features = append(b.src.features, r)
	case topics.Alerts:
		var v schemas.Alert
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.AlertID), d.eventTime(v.TS), text("rule", v.Rule, true),
			text("kind", v.Kind, false), text("severity", v.Severity, false), text("message", v.Message, false)); err != nil {
			return err
		}
		if v.State != "firing" && v.State != "resolved" {
			return invalidf("alert state %q is neither firing nor resolved", cleanText(v.State))
		}
		b.Alerts = append(b.Alerts, v)
		b.src.alerts = append(b.src.alerts, r)
	case topics.StateLatest:
		var v schemas.DeviceState
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if v.TS.UnixMilli() == 0 && v.LastSeen.UnixMilli() == 0 {
			return errNoEventTime
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, "-"), d.eventTime(v.TS), optText("firmware", v.Firmware)); err != nil {
			return err
		}
		for k, m := range v.Metrics {
			if err := text("metrics key", k, true); err != nil {
				return err
			}
			if math.IsNaN(m) || math.IsInf(m, 0) {
				delete(v.Metrics, k) // JSON has no NaN; the reading itself is in sensor_readings
			}
		}
		b.States = append(b.States, v)
	case topics.DLQ:
		var v schemas.DeadLetter
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if v.ID == "" {
			return invalidf("dead letter has an empty id")
		}
		// Dead letters must land: clean their text rather than reject them.
		v.ID, v.Stage, v.Reason, v.Message, v.Source = cleanText(v.ID), cleanText(v.Stage), cleanText(v.Reason), cleanText(v.Message), cleanText(v.Source)
		v.Tenant, v.DeviceID, v.ContentType = cleanOpt(v.Tenant), cleanOpt(v.DeviceID), cleanOpt(v.ContentType)
		h := make(map[string]string, len(v.Headers))
		for k, x := range v.Headers {
			h[cleanText(k)] = cleanText(x)
		}
		v.Headers = h
		if v.ReceivedAt.IsZero() {
			v.ReceivedAt = v.TS
		}
		// The row's key is the dlq.events record: one row per dead letter,
		// even for identical payloads (which share the dead letter's id).
		b.DeadLetters = append(b.DeadLetters, DeadLetter{DeadLetter: v, KafkaTopic: r.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset})
	case topics.DevicesRegistry:
		var v schemas.RegistryRecord
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		row, err := d.deviceFromRecord(string(r.Key), &v)
		if err != nil {
			return err
		}
		b.Devices = append(b.Devices, row)
	case topics.CommandStatus:
		var v schemas.CommandStatus
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.CommandID), d.eventTime(v.TS), text("name", v.Name, true),
			optText("message", v.Message)); err != nil {
			return err
		}
		if !control.Status(v.Status).Valid() {
			return invalidf("command %s: unknown status %q", v.CommandID, v.Status)
		}
		b.Commands = append(b.Commands, v)
	default:
		if !strings.HasPrefix(r.Topic, AppTopicPrefix) {
			return invalidf("topic %s is not one the sink writes", r.Topic)
		}
		var v schemas.AppRecord
		if _, err := d.serde.Decode(ctx, r.Value, &v); err != nil {
			return err
		}
		if err := errors.Join(d.ident(v.Tenant, v.DeviceID, v.EventID), text("source_tenant", v.SourceTenant, true),
			text("app", v.App, true), text("source_topic", v.SourceTopic, true), optText("agreement", v.Agreement), d.eventTime(v.TS)); err != nil {
			return err
		}
		if !json.Valid([]byte(v.Payload)) || !strings.HasPrefix(strings.TrimSpace(v.Payload), "{") {
			return invalidf("payload is not a JSON object")
		}
		if strings.Contains(v.Payload, `\u0000`) {
			return invalidf("payload contains a NUL character")
		}
		b.Apps = append(b.Apps, AppRecord{AppRecord: v, KafkaTopic: r.Topic})
	}
	return nil
}

func (d *decoder) ident(tenant, device, id string) error {
	return errors.Join(text("tenant", tenant, true), text("device_id", device, true), text("id", id, true))
}

// eventTime rejects event times the partitions cannot sensibly hold.
func (d *decoder) eventTime(ts time.Time) error {
	if ts.Before(minTime) || ts.After(d.now().Add(d.maxFuture)) {
		return &invalidError{reason: ReasonTimeRange, msg: fmt.Sprintf("event time %s is before %s or more than %s ahead", ts.UTC().Format(time.RFC3339), minEventTime, d.maxFuture)}
	}
	return nil
}

// text checks that s can be stored in a text column: valid UTF-8 without
// NUL, and not empty when required.
func text(field, s string, required bool) error {
	switch {
	case required && s == "":
		return invalidf("%s is empty", field)
	case !utf8.ValidString(s):
		return invalidf("%s is not valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return invalidf("%s contains a NUL byte", field)
	}
	return nil
}

func optText(field string, s *string) error {
	if s == nil {
		return nil
	}
	return text(field, *s, false)
}

func attrs(m map[string]string) error {
	for k, v := range m {
		if err := errors.Join(text("attrs key", k, true), text("attrs value", v, false)); err != nil {
			return err
		}
	}
	return nil
}

// cleanText makes s storable: invalid UTF-8 becomes U+FFFD, NUL is removed.
func cleanText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func cleanOpt(s *string) *string {
	if s == nil {
		return nil
	}
	c := cleanText(*s)
	return &c
}
