package decode

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/drover-iot/drover/schemas"
)

// DefaultMaxPayload is the default size limit of one MQTT payload (256 KiB).
const DefaultMaxPayload = 256 << 10

// Input is one received MQTT message with the identity its topic gives it.
type Input struct {
	Tenant     string    // from the topic (or the WildFi default tenant)
	DeviceID   string    // from the topic
	Source     string    // channel the records come from, e.g. sensor, media/image2d, wildfi/imu
	Kind       string    // media kind (image2d, ...) or WildFi type (imu, gps, ...); decoder specific
	Payload    []byte    // the original bytes
	ReceivedAt time.Time // when the bridge received the message; becomes ingested_at

	digest [sha256.Size]byte
	hashed bool
}

// Limits are the semantic checks applied after decoding. A zero field
// disables its check.
type Limits struct {
	MaxPayload int           // bytes; default DefaultMaxPayload when 0 is passed through DefaultLimits
	MaxFuture  time.Duration // how far ts may lie after ReceivedAt (clock skew)
	MaxAge     time.Duration // how far ts may lie before ReceivedAt
}

// DefaultLimits returns the bridge's default limits: 256 KiB, 5 minutes of
// future skew, 30 days of age (collars buffer while out of coverage).
func DefaultLimits() Limits {
	return Limits{MaxPayload: DefaultMaxPayload, MaxFuture: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour}
}

// Output collects the records decoded from one message. Reuse one Output
// per goroutine with Reset to save allocations.
type Output struct {
	Sensor []schemas.SensorReading
	GPS    []schemas.GPSFix
	Media  []schemas.MediaObject

	// sensorIndex[i] is Sensor[i]'s index in the message (the one its
	// event id is derived from), for messages that name records.
	sensorIndex []int
	seen        map[readingKey]int // checkUnique's, kept for reuse
}

// Reset empties o, keeping its capacity.
func (o *Output) Reset() {
	clear(o.Sensor)
	clear(o.GPS)
	clear(o.Media)
	o.Sensor, o.GPS, o.Media, o.sensorIndex = o.Sensor[:0], o.GPS[:0], o.Media[:0], o.sensorIndex[:0]
}

// Len is the number of records in o.
func (o *Output) Len() int { return len(o.Sensor) + len(o.GPS) + len(o.Media) }

// Func decodes in.Payload into out. It returns an *Error on rejection.
type Func func(in *Input, out *Output) error

// Kind is the record type a decoder produces.
type Kind string

// Record kinds.
const (
	KindSensor Kind = "sensor" // schemas.SensorReading
	KindGPS    Kind = "gps"    // schemas.GPSFix
	KindMedia  Kind = "media"  // schemas.MediaObject
)

// Decoder is a named decoder and the record type it produces.
type Decoder struct {
	Name     string
	Produces Kind
	Func     Func
}

var decoders = map[string]Decoder{
	"sensor":        {"sensor", KindSensor, decodeSensor},
	"senml":         {"senml", KindSensor, decodeSenML},
	"gps":           {"gps", KindGPS, decodeGPS},
	"media":         {"media", KindMedia, decodeMedia},
	"heartbeat":     {"heartbeat", KindSensor, decodeHeartbeat},
	"event":         {"event", KindSensor, decodeEvent},
	"wildfi-gps":    {"wildfi-gps", KindGPS, decodeWildFiGPS},
	"wildfi-sensor": {"wildfi-sensor", KindSensor, decodeWildFiSensor},
	// Sparkplug B is binary (protobuf) and stateful (birth certificates,
	// aliases, sequence numbers): no Func; the door decodes it with its
	// Sparkplug session (package ingest/sparkplug) and checks the records
	// with Validate.
	Sparkplug: {Sparkplug, KindSensor, nil},
}

// Sparkplug is the name of the Sparkplug B decoder, which a door runs with
// its session instead of a Func.
const Sparkplug = "sparkplug"

// MetricOffline is the metric of a reading that says a device went offline
// (a Sparkplug B death certificate): the state group marks the device
// offline at once rather than after its silence timeout.
const MetricOffline = EventMetricPrefix + "offline"

// Lookup returns the decoder called name.
func Lookup(name string) (Decoder, bool) {
	d, ok := decoders[name]
	return d, ok
}

// Names returns the names of every decoder, sorted.
func Names() []string {
	names := make([]string, 0, len(decoders))
	for n := range decoders {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Decode checks the payload's size and encoding, runs dec and validates the
// records against lim. out is reset first. On rejection it returns an
// *Error and out may hold partial results, which the caller must discard.
func Decode(dec Func, in *Input, lim Limits, out *Output) error {
	out.Reset()
	if len(in.Payload) == 0 {
		return fail(StageDecode, ReasonEmptyPayload, "", "payload is empty")
	}
	if lim.MaxPayload > 0 && len(in.Payload) > lim.MaxPayload {
		return fail(StageDecode, ReasonPayloadTooLarge, "", "payload is %d bytes, limit %d", len(in.Payload), lim.MaxPayload)
	}
	if !utf8.Valid(in.Payload) {
		return fail(StageDecode, ReasonNotUTF8, "", "payload is not valid UTF-8 (first bad byte at offset %d)", firstInvalidUTF8(in.Payload))
	}
	if dec == nil {
		return fail(StageDecode, ReasonInternalError, "", "this route's decoder needs a door's session (Sparkplug B comes through the MQTT bridge)")
	}
	if err := dec(in, out); err != nil {
		return err
	}
	if out.Len() == 0 {
		return fail(StageValidate, ReasonNoRecords, "", "payload carries no value")
	}
	return validate(in, lim, out)
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// Validate checks the records a door decoded itself (Sparkplug B) as Decode
// checks a decoder's: printable metric names, finite values, coordinates in
// range, event times within lim's window around in.ReceivedAt.
func Validate(in *Input, lim Limits, out *Output) error { return validate(in, lim, out) }

func validate(in *Input, lim Limits, out *Output) error {
	for i := range out.Sensor {
		r := &out.Sensor[i]
		if err := checkMetric(r.Metric); err != nil {
			return err
		}
		if !finite(r.Value) {
			return fail(StageValidate, ReasonInvalidValue, "value", "value of %s is %v, not a finite number", quote(r.Metric, 64), r.Value)
		}
		if err := checkTS(in, lim, "ts", r.TS); err != nil {
			return err
		}
	}
	for i := range out.GPS {
		r := &out.GPS[i]
		if !finite(r.Lat) || r.Lat < -90 || r.Lat > 90 {
			return fail(StageValidate, ReasonOutOfRange, "lat", "latitude %v is outside [-90, 90]", r.Lat)
		}
		if !finite(r.Lon) || r.Lon < -180 || r.Lon > 180 {
			return fail(StageValidate, ReasonOutOfRange, "lon", "longitude %v is outside [-180, 180]", r.Lon)
		}
		if err := checkTS(in, lim, "ts", r.TS); err != nil {
			return err
		}
	}
	for i := range out.Media {
		if err := checkTS(in, lim, "ts", out.Media[i].TS); err != nil {
			return err
		}
	}
	return checkUnique(out)
}

// The event times drover accepts at all, whatever the limits: the years
// RFC 3339 can write (0001-9999), which Avro's timestamp-millis, Go and
// PostgreSQL all represent exactly.
var (
	minTS = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTS = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// checkTS checks ts against the absolute range and lim's window around
// the receive time.
func checkTS(in *Input, lim Limits, field string, ts time.Time) error {
	if ts.Before(minTS) || ts.After(maxTS) {
		return fail(StageValidate, ReasonInvalidTS, field, "ts %s is outside the years 0001-9999", ts.Format(time.RFC3339Nano))
	}
	if lim.MaxFuture > 0 && ts.After(in.ReceivedAt.Add(lim.MaxFuture)) {
		return fail(StageValidate, ReasonTSFuture, field, "ts %s is %s after receive time (max skew %s)",
			ts.Format(time.RFC3339Nano), span(in.ReceivedAt, ts), lim.MaxFuture)
	}
	if lim.MaxAge > 0 && ts.Before(in.ReceivedAt.Add(-lim.MaxAge)) {
		msg := "ts %s is %s before receive time (max age %s)"
		if ts.Year() < 1990 {
			msg += "; ts numbers are epoch milliseconds, not seconds"
		}
		return fail(StageValidate, ReasonTSTooOld, field, msg,
			ts.Format(time.RFC3339Nano), span(ts, in.ReceivedAt), lim.MaxAge)
	}
	return nil
}

// span renders how much later b is than a, to the second. time.Duration
// stops at about 292 years (a.Sub(b) saturates), so longer spans are
// given in days and years.
func span(a, b time.Time) string {
	const day = 24 * time.Hour
	ms := b.UnixMilli() - a.UnixMilli() // both within minTS..maxTS: no overflow
	if ms > -200*365*int64(day/time.Millisecond) && ms < 200*365*int64(day/time.Millisecond) {
		return (time.Duration(ms) * time.Millisecond).Round(time.Second).String()
	}
	days := ms / int64(day/time.Millisecond)
	return fmt.Sprintf("%d days (about %d years)", days, days*400/146097)
}

// MaxMetric is the longest metric name, in bytes: names are index keys
// downstream.
const MaxMetric = 256

// checkMetric rejects a blank metric name, an over-long one, and one with
// a character a terminal or a dashboard would interpret or hide (control
// and format characters such as bidi overrides; see Escape).
func checkMetric(m string) error {
	if strings.TrimSpace(m) == "" {
		return fail(StageValidate, ReasonEmptyMetric, "metric", "metric name is empty")
	}
	if len(m) > MaxMetric {
		return fail(StageValidate, ReasonInvalidMetric, "metric", "metric name %s is %d bytes, limit %d", quote(m, 64), len(m), MaxMetric)
	}
	if Escape(m) != m {
		return fail(StageValidate, ReasonInvalidMetric, "metric", "metric name %s has a control, format or other non-printable character", quote(m, 64))
	}
	return nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// EventID returns the deterministic id of one record of in: a hash of
// tenant, device, source, metric (or another per-record discriminator), ts,
// the record's index within the message and the payload bytes. A
// redelivery of the same message yields the same ids.
func (in *Input) EventID(metric string, ts time.Time, index int) string {
	if !in.hashed {
		in.digest = sha256.Sum256(in.Payload)
		in.hashed = true
	}
	var buf [128]byte
	b := buf[:0]
	for _, s := range [...]string{in.Tenant, in.DeviceID, in.Source, metric} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ts.UnixMilli()))
	b = binary.BigEndian.AppendUint32(b, uint32(index))
	b = append(b, in.digest[:]...)
	sum := sha256.Sum256(b)
	var id [32]byte
	hex.Encode(id[:], sum[:16])
	return string(id[:]) // the one allocation
}

// PayloadDigest returns the SHA-256 of the payload.
func (in *Input) PayloadDigest() [sha256.Size]byte {
	if !in.hashed {
		in.digest = sha256.Sum256(in.Payload)
		in.hashed = true
	}
	return in.digest
}

// addSensor appends one reading of in, index being its index in the
// message.
func (o *Output) addSensor(in *Input, metric string, value float64, unit *string, ts time.Time, index int, attrs map[string]string) {
	o.sensorIndex = append(o.sensorIndex, index)
	o.Sensor = append(o.Sensor, schemas.SensorReading{
		EventID:    in.EventID(metric, ts, index),
		Tenant:     in.Tenant,
		DeviceID:   in.DeviceID,
		TS:         ts,
		IngestedAt: in.ReceivedAt,
		Metric:     metric,
		Value:      value,
		Unit:       unit,
		Source:     in.Source,
		Attrs:      attrs,
	})
}
