package sparkplug

import (
	"math"
	"strconv"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
)

// Source is the source of every record a Sparkplug B message yields.
const Source = "sparkplug"

// Metrics of the records that report the session rather than a measurement.
const (
	// GapMetric: a sequence gap; value = messages missing, severity warning.
	GapMetric = decode.EventMetricPrefix + "sparkplug_seq_gap"
	// OfflineMetric: a death certificate took the device offline; the state
	// group marks it offline at once, not after its silence timeout.
	OfflineMetric = decode.MetricOffline
)

// Records appends the raw.sensor readings of m to out: one per numeric
// metric (attrs group, edge, device, historical), one GapMetric reading when
// m reports a gap and one OfflineMetric reading per device a death took
// offline (at in.ReceivedAt, the time the door learnt it). in must carry the
// message's payload and receive time; Records sets its Tenant, DeviceID and
// Source. A value that is not finite is refused with
// decode.ReasonInvalidValue.
func Records(m *Message, in *decode.Input, out *decode.Output) error {
	in.Tenant, in.DeviceID, in.Source = m.Topic.Tenant(), m.Topic.DeviceID(), Source
	attrs := map[string]string{"group": m.Topic.Group, "edge": m.Topic.Edge}
	if m.Topic.Device != "" {
		attrs["device"] = m.Topic.Device
	}
	idx := 0
	add := func(device, metric string, v float64, ts time.Time, a map[string]string) {
		out.Sensor = append(out.Sensor, schemas.SensorReading{
			EventID: in.EventID(metric, ts, idx), Tenant: in.Tenant, DeviceID: device, TS: ts,
			IngestedAt: in.ReceivedAt, Metric: metric, Value: v, Source: Source, Attrs: a,
		})
		idx++
	}
	for i, mt := range m.Metrics {
		if math.IsNaN(mt.Value) || math.IsInf(mt.Value, 0) {
			return newErr(decode.StageValidate, decode.ReasonInvalidValue, field(i, "value"), "value of %q is %v, not a finite number", mt.Name, mt.Value)
		}
		a := attrs
		if mt.Historical {
			a = withAttr(attrs, "historical", "true")
		}
		add(in.DeviceID, mt.Name, mt.Value, mt.TS, a)
	}
	if m.Gap != nil {
		a := withAttr(attrs, "severity", "warning")
		a["expected_seq"], a["seq"] = strconv.Itoa(int(m.Gap.Expected)), strconv.Itoa(int(m.Gap.Got))
		add(in.DeviceID, GapMetric, float64(m.Gap.Missing()), in.ReceivedAt, a)
	}
	for _, dev := range m.Offline {
		a := withAttr(attrs, "severity", "info")
		a["cause"] = string(m.Topic.Type)
		add(dev, OfflineMetric, 1, in.ReceivedAt, a)
	}
	return nil
}

func withAttr(attrs map[string]string, k, v string) map[string]string {
	a := make(map[string]string, len(attrs)+3)
	for k, v := range attrs {
		a[k] = v
	}
	a[k] = v
	return a
}
