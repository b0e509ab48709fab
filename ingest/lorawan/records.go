package lorawan

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/schemas"
)

// Source is the source of every record a network server's webhook yields.
const Source = "lorawan"

// Metrics of the records that describe the radio link rather than the
// decoded payload.
const (
	MetricFCnt          = "lorawan.fcnt"           // uplink frame counter
	MetricRSSI          = "lorawan.rssi"           // best RSSI over the gateways, dBm
	MetricSNR           = "lorawan.snr"            // best SNR over the gateways, dB
	MetricGateways      = "lorawan.gateways"       // gateways that received the frame
	MetricBattery       = "lorawan.battery"        // battery level, percent (status)
	MetricMargin        = "lorawan.margin"         // demodulation margin, dB (status)
	MetricExternalPower = "lorawan.external_power" // 1 when on an external power source (status)
	MetricJoin          = decode.EventMetricPrefix + "lorawan_join"
	MetricStatus        = decode.EventMetricPrefix + "lorawan_status"
)

// MaxDepth is how deep Records descends into a decoded payload's nested
// objects; deeper values are skipped.
const MaxDepth = 4

// Records appends the records of e, from the registry's device
// tenant/device, to out: for an uplink one raw.sensor reading per numeric
// (or boolean, as 0/1) leaf of the decoded payload, named by its path
// ("temperature", "sensors.soil.moisture"), a raw.gps fix for each object
// with numeric latitude/lat and longitude/lon/lng (altitude/alt optional),
// and the radio readings (MetricFCnt, MetricRSSI, MetricSNR,
// MetricGateways); for a join an event reading; for a status an event
// reading and MetricBattery, MetricMargin, MetricExternalPower. Every
// record's ts is the network server's receive time; its event id derives
// from the frame (DevEUI, DevAddr, counter, port, bytes), not from the
// webhook body. It returns the number of decoded values skipped (strings,
// nulls, arrays, deeper than MaxDepth) and a *decode.Error for a number
// that is not finite.
func Records(e *Event, tenant, device string, receivedAt time.Time, out *decode.Output) (skipped int, err error) {
	r := &recorder{e: e, out: out, in: decode.Input{Tenant: tenant, DeviceID: device, Source: Source, Payload: frameKey(e), ReceivedAt: receivedAt}}
	r.attrs = map[string]string{"network": string(e.Network), "deveui": e.DevEUI}
	switch e.Kind {
	case KindJoin:
		a := r.with("severity", "info")
		if e.DevAddr != "" {
			a["dev_addr"] = e.DevAddr
		}
		r.add(MetricJoin, 1, a)
	case KindStatus:
		r.status()
	case KindUp:
		if e.FPort != nil {
			r.attrs["fport"] = strconv.FormatUint(uint64(*e.FPort), 10)
		}
		if len(e.Object) > 0 {
			v, err := parseObject(e.Object)
			if err != nil {
				return 0, err
			}
			if err := r.walk(v, "", 1); err != nil {
				return 0, err
			}
		}
		r.radio()
	}
	return r.skipped, nil
}

type recorder struct {
	e       *Event
	in      decode.Input
	out     *decode.Output
	attrs   map[string]string
	idx     int
	skipped int
}

func (r *recorder) with(k, v string) map[string]string {
	a := make(map[string]string, len(r.attrs)+1)
	for k, v := range r.attrs {
		a[k] = v
	}
	a[k] = v
	return a
}

func (r *recorder) add(metric string, v float64, attrs map[string]string) {
	if attrs == nil {
		attrs = r.attrs
	}
	r.out.Sensor = append(r.out.Sensor, schemas.SensorReading{
		EventID: r.in.EventID(metric, r.idTime(), r.idx), Tenant: r.in.Tenant, DeviceID: r.in.DeviceID,
		TS: r.e.Time, IngestedAt: r.in.ReceivedAt, Metric: metric, Value: v, Source: Source, Attrs: attrs,
	})
	r.idx++
}

// idTime is the time an event id derives from: none for an uplink, whose
// frame key identifies it whatever server or gateway delivered it (and at
// what time), the event's time otherwise.
func (r *recorder) idTime() time.Time {
	if r.e.Kind == KindUp {
		return time.Time{}
	}
	return r.e.Time
}

func (r *recorder) status() {
	s := r.e.Status
	a := r.with("severity", "info")
	if s.Margin != nil {
		a["margin"] = strconv.FormatFloat(*s.Margin, 'g', -1, 64)
		r.add(MetricMargin, *s.Margin, nil)
	}
	if s.BatteryLevel != nil && !s.BatteryLevelUnavailable && !s.ExternalPowerSource {
		a["battery_level"] = strconv.FormatFloat(*s.BatteryLevel, 'g', -1, 64)
		r.add(MetricBattery, *s.BatteryLevel, nil)
	}
	ext := 0.0
	if s.ExternalPowerSource {
		ext = 1
	}
	r.add(MetricExternalPower, ext, nil)
	r.add(MetricStatus, 1, a)
}

func (r *recorder) radio() {
	r.add(MetricFCnt, float64(*r.e.FCnt), nil)
	if len(r.e.Rx) == 0 {
		return
	}
	var rssi, snr *float64
	gw := ""
	for _, x := range r.e.Rx {
		if x.RSSI != nil && (rssi == nil || *x.RSSI > *rssi) {
			rssi, gw = x.RSSI, x.Gateway
		}
		if x.SNR != nil && (snr == nil || *x.SNR > *snr) {
			snr = x.SNR
		}
	}
	a := r.attrs
	if gw != "" {
		a = r.with("gateway", gw)
	}
	if rssi != nil {
		r.add(MetricRSSI, *rssi, a)
	}
	if snr != nil {
		r.add(MetricSNR, *snr, a)
	}
	r.add(MetricGateways, float64(len(r.e.Rx)), nil)
}

// object is a decoded JSON object that keeps its keys' order.
type object struct {
	keys []string
	vals map[string]any
}

func parseObject(raw json.RawMessage) (*object, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, newErr(decode.StageDecode, decode.ReasonWrongShape, "object", "decoded payload: %v", err)
	}
	return toObject(m), nil
}

func toObject(m map[string]any) *object {
	o := &object{vals: m}
	for k := range m {
		o.keys = append(o.keys, k)
	}
	slices.Sort(o.keys)
	return o
}

var (
	latKeys = []string{"latitude", "lat"}
	lonKeys = []string{"longitude", "lon", "lng"}
	altKeys = []string{"altitude", "alt"}
)

func (r *recorder) walk(o *object, prefix string, depth int) error {
	used, err := r.position(o, prefix)
	if err != nil {
		return err
	}
	for _, k := range o.keys {
		if used[k] {
			continue
		}
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		switch v := o.vals[k].(type) {
		case json.Number:
			f, err := strconv.ParseFloat(string(v), 64)
			if err != nil || math.IsInf(f, 0) {
				return newErr(decode.StageValidate, decode.ReasonInvalidValue, name, "value of %q is %s, not a finite number", name, v)
			}
			r.add(name, f, nil)
		case bool:
			r.add(name, map[bool]float64{true: 1}[v], nil)
		case map[string]any:
			if depth >= MaxDepth {
				r.skipped++
				continue
			}
			if err := r.walk(toObject(v), name, depth+1); err != nil {
				return err
			}
		default: // string, null, array
			r.skipped++
		}
	}
	return nil
}

// position adds a GPS fix when o has a numeric latitude and longitude and
// returns the keys it used.
func (r *recorder) position(o *object, prefix string) (map[string]bool, error) {
	num := func(keys []string) (string, float64, bool) {
		for _, k := range keys {
			if n, ok := o.vals[k].(json.Number); ok {
				if f, err := strconv.ParseFloat(string(n), 64); err == nil {
					return k, f, true
				}
			}
		}
		return "", 0, false
	}
	latK, lat, ok1 := num(latKeys)
	lonK, lon, ok2 := num(lonKeys)
	if !ok1 || !ok2 {
		return nil, nil
	}
	if lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return nil, newErr(decode.StageValidate, decode.ReasonOutOfRange, prefix, "position %v, %v is outside [-90, 90] x [-180, 180]", lat, lon)
	}
	used := map[string]bool{latK: true, lonK: true}
	fix := schemas.GPSFix{
		EventID: r.in.EventID("gps."+prefix, r.idTime(), r.idx), Tenant: r.in.Tenant, DeviceID: r.in.DeviceID,
		TS: r.e.Time, IngestedAt: r.in.ReceivedAt, Lat: lat, Lon: lon, Source: Source, Attrs: r.attrs,
	}
	if altK, alt, ok := num(altKeys); ok {
		fix.Alt, used[altK] = &alt, true
	}
	if prefix != "" {
		fix.Attrs = r.with("path", prefix)
	}
	r.idx++
	r.out.GPS = append(r.out.GPS, fix)
	return used, nil
}

// frameKey identifies the frame of e independently of the network server
// and gateways that delivered it.
func frameKey(e *Event) []byte {
	var b []byte
	for _, s := range []string{string(e.Kind), e.DevEUI, e.DevAddr} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	if e.Kind == KindUp {
		b = binary.BigEndian.AppendUint32(b, *e.FCnt)
		b = binary.BigEndian.AppendUint32(b, *e.FPort)
		sum := sha256.Sum256(e.Data)
		return append(b, sum[:]...)
	}
	return binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
}
