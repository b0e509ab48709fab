package features

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"sort"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// MotionMetric is the metric name of GPS-derived motion features.
const MotionMetric = "motion"

// deviceState is one device's entry in the group table (JSON, see
// README.md "Group-table state"). Times are Unix milliseconds.
type deviceState struct {
	Tenant string `json:"tenant,omitempty" avro:"tenant"`
	// Watermark is the device's event-time progress: the newest event
	// time seen, or further when the wall clock closed windows.
	Watermark int64 `json:"wm" avro:"wm"`
	// LastWall is the wall-clock time the last record was processed.
	LastWall int64 `json:"lw" avro:"lw"`
	// Windows are the open (or emitted but still accepting late data)
	// windows, every metric and size.
	Windows []*window `json:"w,omitempty" avro:"w"`
	// Fix is the newest GPS fix, the start of the next motion segment.
	Fix *fix `json:"fix,omitempty" avro:"fix"`
	// SensorNext and GPSNext are the input offsets after the last
	// raw.sensor and raw.gps record applied to this state (a device's
	// records are on one partition of each). A record below them was
	// applied already — goka redelivers what was processed but not yet
	// committed after a crash or rebalance — and is skipped, so windows
	// count every record once.
	SensorNext int64 `json:"so,omitempty" avro:"so"`
	GPSNext    int64 `json:"go,omitempty" avro:"go"`
}

type fix struct {
	TS  int64   `json:"ts" avro:"ts"`
	Lat float64 `json:"lat" avro:"lat"`
	Lon float64 `json:"lon" avro:"lon"`
}

// window is one tumbling window of one metric.
type window struct {
	Metric string `json:"m" avro:"m"`
	Size   int64  `json:"z" avro:"z"`
	Start  int64  `json:"s" avro:"s"`

	Count   int64   `json:"n" avro:"n"`
	Min     float64 `json:"min" avro:"min"`
	Max     float64 `json:"max" avro:"max"`
	Mean    float64 `json:"mean" avro:"mean"`
	M2      float64 `json:"m2" avro:"m2"` // Welford: sum of squared deviations
	First   float64 `json:"f" avro:"f"`
	FirstTS int64   `json:"fts" avro:"fts"`
	Last    float64 `json:"l" avro:"l"`
	LastTS  int64   `json:"lts" avro:"lts"`

	// Motion windows only.
	Motion     bool    `json:"mo,omitempty" avro:"mo"`
	Dist       float64 `json:"d,omitempty" avro:"d"`
	MaxSpeed   float64 `json:"vmax,omitempty" avro:"vmax"`
	Moving     float64 `json:"mov,omitempty" avro:"mov"`
	Stationary float64 `json:"sta,omitempty" avro:"sta"`

	Late    int64 `json:"late,omitempty" avro:"late"`
	Emitted bool  `json:"e,omitempty" avro:"e"`
}

func (w *window) end() int64 { return w.Start + w.Size }

func (w *window) add(ts int64, v float64) {
	w.Count++
	if w.Count == 1 {
		w.Min, w.Max, w.Mean, w.M2 = v, v, v, 0
		w.First, w.FirstTS, w.Last, w.LastTS = v, ts, v, ts
		return
	}
	w.Min = math.Min(w.Min, v)
	w.Max = math.Max(w.Max, v)
	d := v - w.Mean
	w.Mean += d / float64(w.Count)
	w.M2 += d * (v - w.Mean)
	if ts < w.FirstTS {
		w.First, w.FirstTS = v, ts
	}
	if ts >= w.LastTS {
		w.Last, w.LastTS = v, ts
	}
}

// FeatureID returns the deterministic id of the feature of device's metric
// in the window of size starting at start: the first 16 bytes of
// SHA-256(device, metric, start ms, size ms), hex encoded. device is the
// record key, the tenant-qualified TENANT/DEVICE (identity.Key), so one
// device id in two tenants gives two ids. A feature
// re-emitted after a late update, a restart or a rebalance keeps its id.
func FeatureID(device, metric string, start time.Time, size time.Duration) string {
	h := sha256.New()
	h.Write([]byte(device))
	h.Write([]byte{0})
	h.Write([]byte(metric))
	h.Write([]byte{0})
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(start.UnixMilli()))
	binary.BigEndian.PutUint64(b[8:], uint64(size.Milliseconds()))
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// emitReason says why a feature is emitted; it labels a metric.
type emitReason string

const (
	reasonClose emitReason = "watermark" // the device's event time passed the window end
	reasonLate  emitReason = "late"      // a late record updated an emitted window
	reasonIdle  emitReason = "idle"      // the wall clock closed the window
)

type emitted struct {
	f      *schemas.Feature
	reason emitReason
}

// outcome of adding one record to one window size.
type outcome int

const (
	accepted outcome = iota
	lateUpdate
	tooLate
)

// aggregator holds the window logic, free of goka so it can be tested and
// benchmarked on its own.
type aggregator struct {
	sizes       []int64 // ms, sorted
	lateness    int64   // ms
	idle        int64   // ms
	movingSpeed float64 // m/s
	maxGap      int64   // ms
}

func newAggregator(cfg Config) *aggregator {
	a := &aggregator{
		lateness:    cfg.Lateness.Milliseconds(),
		idle:        cfg.IdleTimeout.Milliseconds(),
		movingSpeed: cfg.MovingSpeed,
		maxGap:      cfg.GPSMaxGap.Milliseconds(),
	}
	for _, w := range cfg.Windows {
		a.sizes = append(a.sizes, w.Milliseconds())
	}
	sort.Slice(a.sizes, func(i, j int) bool { return a.sizes[i] < a.sizes[j] })
	return a
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (a *aggregator) find(d *deviceState, metric string, size, start int64) *window {
	for _, w := range d.Windows {
		if w.Start == start && w.Size == size && w.Metric == metric {
			return w
		}
	}
	return nil
}

// windowFor returns the window of metric and size holding ts, creating it,
// and what adding a record at ts means for it. It returns nil for tooLate.
func (a *aggregator) windowFor(d *deviceState, metric string, motion bool, size, ts int64) (*window, outcome) {
	start := floorDiv(ts, size) * size
	end := start + size
	if end+a.lateness <= d.Watermark {
		return nil, tooLate
	}
	w := a.find(d, metric, size, start)
	if w == nil {
		w = &window{Metric: metric, Size: size, Start: start, Motion: motion}
		d.Windows = append(d.Windows, w)
	}
	if end <= d.Watermark {
		return w, lateUpdate
	}
	return w, accepted
}

// addValue adds one sensor value. It returns the features to emit and the
// outcome per window size (same order as a.sizes).
func (a *aggregator) addValue(d *deviceState, device, metric string, ts int64, v float64, nowWall int64, out []emitted, outcomes []outcome) ([]emitted, []outcome) {
	d.LastWall = nowWall
	for _, size := range a.sizes {
		w, oc := a.windowFor(d, metric, false, size, ts)
		outcomes = append(outcomes, oc)
		if w == nil {
			continue
		}
		w.add(ts, v)
		if oc == lateUpdate {
			w.Late++
			w.Emitted = true
			out = append(out, emitted{a.feature(d, device, w, nowWall), reasonLate})
		}
	}
	return a.advance(d, device, ts, nowWall, reasonClose, out), outcomes
}

// addFix adds one GPS fix to the motion windows.
func (a *aggregator) addFix(d *deviceState, device string, ts int64, lat, lon float64, nowWall int64, out []emitted, outcomes []outcome) ([]emitted, []outcome) {
	d.LastWall = nowWall
	// The segment from the previous fix ends at this one; it belongs to
	// the windows holding this fix. Out-of-order fixes are counted but
	// start no segment.
	var segDist, segDur float64
	seg := false
	if p := d.Fix; p != nil && ts > p.TS && ts-p.TS <= a.maxGap {
		segDist = Haversine(p.Lat, p.Lon, lat, lon)
		segDur = float64(ts-p.TS) / 1000
		seg = true
	}
	if d.Fix == nil || ts > d.Fix.TS {
		d.Fix = &fix{TS: ts, Lat: lat, Lon: lon}
	}
	for _, size := range a.sizes {
		w, oc := a.windowFor(d, MotionMetric, true, size, ts)
		outcomes = append(outcomes, oc)
		if w == nil {
			continue
		}
		w.add(ts, 0)
		if seg {
			w.Dist += segDist
			speed := segDist / segDur
			w.MaxSpeed = math.Max(w.MaxSpeed, speed)
			if speed >= a.movingSpeed {
				w.Moving += segDur
			} else {
				w.Stationary += segDur
			}
		}
		if oc == lateUpdate {
			w.Late++
			w.Emitted = true
			out = append(out, emitted{a.feature(d, device, w, nowWall), reasonLate})
		}
	}
	return a.advance(d, device, ts, nowWall, reasonClose, out), outcomes
}

// advance moves the watermark to wm (if later), emits every window that
// ended and drops every window past its lateness.
func (a *aggregator) advance(d *deviceState, device string, wm, nowWall int64, reason emitReason, out []emitted) []emitted {
	if wm <= d.Watermark {
		return out
	}
	d.Watermark = wm
	keep := d.Windows[:0]
	for _, w := range d.Windows {
		if w.end() <= wm && !w.Emitted {
			w.Emitted = true
			out = append(out, emitted{a.feature(d, device, w, nowWall), reason})
		}
		if w.end()+a.lateness > wm {
			keep = append(keep, w)
		}
	}
	for i := len(keep); i < len(d.Windows); i++ {
		d.Windows[i] = nil
	}
	d.Windows = keep
	sort.SliceStable(d.Windows, func(i, j int) bool { return d.Windows[i].end() < d.Windows[j].end() })
	return out
}

// tick closes windows by wall clock. A window is due when the device has
// been silent for the idle timeout and the wall clock has moved past
// where the device's event time would have closed it:
//
//	now ≥ lastWall + max(idle, end + lateness − watermark)
//
// Closing advances the watermark to end + lateness of the latest due
// window, so the close is final: records for it are too late afterwards.
func (a *aggregator) tick(d *deviceState, device string, now int64, out []emitted) []emitted {
	var due int64 = math.MinInt64
	for _, w := range d.Windows {
		wait := max(a.idle, w.end()+a.lateness-d.Watermark)
		if now >= d.LastWall+wait && w.end()+a.lateness > due {
			due = w.end() + a.lateness
		}
	}
	if due == math.MinInt64 {
		return out
	}
	return a.advance(d, device, due, now, reasonIdle, out)
}

func (a *aggregator) feature(d *deviceState, device string, w *window, nowWall int64) *schemas.Feature {
	start := time.UnixMilli(w.Start).UTC()
	end := time.UnixMilli(w.end()).UTC()
	size := time.Duration(w.Size) * time.Millisecond
	f := &schemas.Feature{
		FeatureID:    FeatureID(device, w.Metric, start, size),
		Tenant:       d.Tenant,
		DeviceID:     identity.DeviceOf(device), // device is the record key, TENANT/DEVICE
		Metric:       w.Metric,
		WindowStart:  start,
		WindowEnd:    end,
		WindowSizeMS: w.Size,
		Count:        w.Count,
		LateUpdates:  w.Late,
		TS:           end,
		IngestedAt:   time.UnixMilli(nowWall).UTC(),
	}
	if w.Motion {
		total := w.Moving + w.Stationary
		mean := 0.0
		if total > 0 {
			mean = w.Dist / total
		}
		f.DistanceM = ptr(w.Dist)
		f.MeanSpeedMPS = ptr(mean)
		f.MaxSpeedMPS = ptr(w.MaxSpeed)
		f.MovingS = ptr(w.Moving)
		f.StationaryS = ptr(w.Stationary)
		return f
	}
	if w.Count > 0 {
		f.Min, f.Max, f.Mean = ptr(w.Min), ptr(w.Max), ptr(w.Mean)
		f.Stddev = ptr(math.Sqrt(w.M2 / float64(w.Count)))
		f.First, f.Last = ptr(w.First), ptr(w.Last)
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// earthRadius is the mean Earth radius in metres (IUGG).
const earthRadius = 6371008.8

// Haversine returns the great-circle distance in metres between two
// points given in degrees.
func Haversine(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	s := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(s)))
}
