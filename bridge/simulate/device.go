package simulate

import (
	"math"
	"math/rand/v2"
	"time"
)

// deviceKind is how a device talks.
type deviceKind int

const (
	kindJSON   deviceKind = iota // JSON objects on devices/{tenant}/{id}/...
	kindSenML                    // like kindJSON, but SenML arrays on sensor
	kindWildFi                   // WildFi collar on wildfi/{id}/{type}
)

func (k deviceKind) String() string {
	switch k {
	case kindSenML:
		return "senml"
	case kindWildFi:
		return "wildfi"
	}
	return "json"
}

// behaviour of an animal: it sets speed and activity.
type behaviour int

const (
	resting behaviour = iota
	grazing
	walking
)

// Physiology and movement constants.
const (
	FeverThreshold   = 39.5 // °C: a fever reading is above this
	feverFloor       = 39.6 // °C: readings during an episode never go below
	minFever         = 15 * time.Minute
	maxFever         = 60 * time.Minute
	minSilence       = 3 * time.Minute
	maxSilence       = 15 * time.Minute
	batteryFloor     = 2.0 // % where the drain stops (a flat collar still reports)
	maxStep          = 30 * time.Second
	maxCatchUp       = 24 * time.Hour // longer gaps are simulated as this long
	perMessageDrainP = 0.0005         // % of battery per transmission
)

// device is the state of one simulated animal and its collar. Not safe for
// concurrent use; the generator owns it.
type device struct {
	id       string
	kind     deviceKind
	rng      *rand.Rand
	epochTS  bool // ts as epoch milliseconds rather than RFC 3339
	camera   bool // fitted with a camera: uploads media
	firmware string

	last time.Time // event time of the last advance

	pos       Point
	heading   float64 // radians, 0 = east
	speed     float64 // m/s
	beh       behaviour
	behUntil  time.Time
	activity  float64 // 0..1
	baseTemp  float64
	temp      float64
	fevering  bool
	feverTo   time.Time
	feverTemp float64
	fevers    int // episodes started

	battery float64 // %
	drainPH float64 // % per hour
	rssi    float64 // dBm

	silentTo time.Time
	silences int

	sent int64
}

func newDevice(id string, kind deviceKind, seed uint64, index int, pasture Polygon, now time.Time) *device {
	r := rand.New(rand.NewPCG(seed, uint64(index)*0x9e3779b97f4a7c15+1))
	d := &device{
		id:       id,
		kind:     kind,
		rng:      r,
		epochTS:  r.IntN(2) == 0,
		camera:   kind != kindWildFi && r.Float64() < 0.3,
		firmware: []string{"1.4.2", "1.4.3", "1.5.0", "2.0.1"}[r.IntN(4)],
		last:     now,
		pos:      pasture.randomPoint(r),
		heading:  r.Float64() * 2 * math.Pi,
		baseTemp: 38.3 + r.Float64()*0.4,
		battery:  55 + r.Float64()*45,
		drainPH:  0.02 + r.Float64()*0.06,
		rssi:     -60 - r.Float64()*40,
	}
	d.temp = d.baseTemp
	d.pickBehaviour(now)
	return d
}

func (d *device) pickBehaviour(now time.Time) {
	p := d.rng.Float64()
	if d.fevering {
		p *= 0.5 // a sick animal mostly rests
	}
	switch {
	case p < 0.35:
		d.beh, d.speed = resting, 0
	case p < 0.85:
		d.beh, d.speed = grazing, 0.05+d.rng.Float64()*0.25
	default:
		d.beh, d.speed = walking, 0.6+d.rng.Float64()*0.8
	}
	d.behUntil = now.Add(time.Duration(2+d.rng.IntN(18)) * time.Minute)
}

// advance moves the device's state forward to event time now, in steps of
// at most maxStep. Time never runs backwards for a device.
func (d *device) advance(now time.Time, pasture Polygon, feverRate float64) {
	if !now.After(d.last) {
		return
	}
	from := d.last
	if now.Sub(from) > maxCatchUp {
		from = now.Add(-maxCatchUp)
	}
	for t := from; t.Before(now); {
		h := min(maxStep, now.Sub(t))
		t = t.Add(h)
		d.step(t, h.Seconds(), pasture, feverRate)
	}
	d.last = now
}

func (d *device) step(t time.Time, h float64, pasture Polygon, feverRate float64) {
	// Behaviour and movement: a correlated random walk that stays inside
	// the pasture (a step that would leave it turns the animal instead).
	if !t.Before(d.behUntil) {
		d.pickBehaviour(t)
	}
	if d.speed > 0 {
		d.heading += d.rng.NormFloat64() * 0.35 * math.Sqrt(h/10)
		dist := d.speed * h
		moved := false
		for try := 0; try < 12 && !moved; try++ {
			next := offset(d.pos, dist*math.Cos(d.heading), dist*math.Sin(d.heading))
			if pasture.Contains(next) {
				d.pos, moved = next, true
			} else {
				d.heading = d.rng.Float64() * 2 * math.Pi
			}
		}
	}
	targetAct := map[behaviour]float64{resting: 0.05, grazing: 0.4, walking: 0.8}[d.beh]
	d.activity += (targetAct - d.activity) * (1 - math.Exp(-h/60))
	d.activity = clamp(d.activity+d.rng.NormFloat64()*0.02*math.Sqrt(h/10), 0, 1)

	// Fever episodes arrive as a Poisson process of rate feverRate per day.
	if d.fevering && !t.Before(d.feverTo) {
		d.fevering = false
	}
	if !d.fevering && feverRate > 0 && d.rng.Float64() < 1-math.Exp(-feverRate*h/86400) {
		d.fevering = true
		d.fevers++
		d.feverTo = t.Add(minFever + time.Duration(d.rng.Int64N(int64(maxFever-minFever))))
		d.feverTemp = 39.9 + d.rng.Float64()*0.9
		d.temp = math.Max(d.temp, feverFloor)
	}
	target := d.baseTemp + 0.2*math.Sin(2*math.Pi*(float64(t.UTC().Hour())+float64(t.UTC().Minute())/60-10)/24)
	if d.fevering {
		target = d.feverTemp
	}
	d.temp += (target - d.temp) * (1 - math.Exp(-h/300))
	d.temp += d.rng.NormFloat64() * 0.02 * math.Sqrt(h/10)
	if d.fevering {
		d.temp = math.Max(d.temp, feverFloor)
	}

	// The battery only drains.
	d.battery = math.Max(batteryFloor, d.battery-d.drainPH*h/3600)
	d.rssi = clamp(d.rssi+d.rng.NormFloat64()*0.5*math.Sqrt(h/10), -115, -55)
}

// drainForMessage charges one transmission to the battery.
func (d *device) drainForMessage() {
	d.battery = math.Max(batteryFloor, d.battery-perMessageDrainP)
	d.sent++
}

// bodyTemp is the reported body temperature (°C, 2 decimals).
func (d *device) bodyTemp() float64 {
	t := d.temp + d.rng.NormFloat64()*0.03
	if d.fevering {
		t = math.Max(t, feverFloor)
	}
	return round(t, 2)
}

func clamp(v, lo, hi float64) float64 { return math.Min(hi, math.Max(lo, v)) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
