package simulate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Channels counted in a Summary (valid messages only).
const (
	ChannelSensor    = "sensor"    // JSON sensor messages (metric or measurements form)
	ChannelSenML     = "senml"     // SenML arrays on the sensor channel
	ChannelGPS       = "gps"       // GPS fixes
	ChannelHeartbeat = "heartbeat" // heartbeats
	ChannelMedia     = "media"     // media metadata messages (after the S3 upload)
	ChannelWildFi    = "wildfi"    // WildFi collar messages
	ChannelEvents    = "events"    // device events (tamper, button, ...)
)

// Message is one generated MQTT message.
type Message struct {
	Topic   string
	Payload []byte
	Device  string
	// Channel is one of the Channel constants ("" for invalid messages).
	Channel string
	// Class is the bad-input class, "" when the message is valid.
	Class Class
	// Media, when set, must be uploaded before the message is published.
	Media *Media

	dev int // index of the device in the herd
}

// Generator produces the traffic of one herd. It is deterministic: the same
// Config (Seed included) and the same sequence of event times passed to
// Next give the same messages. Not safe for concurrent use.
type Generator struct {
	cfg     Config
	rng     *rand.Rand
	devices []*device
	cursor  int

	cameraShare float64
	maxSilent   int
	silent      []int // indices of devices that may be silent
	invalidSeq  int
}

// NewGenerator validates cfg (apart from the broker URL, which it does not
// use) and builds the herd at event time cfg.Clock.Now().
func NewGenerator(cfg Config) (*Generator, error) {
	if cfg.MQTTURL == "" {
		cfg.MQTTURL = "tcp://unused:1883"
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Generator{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		maxSilent: int(math.Floor(cfg.MaxSilentShare * float64(cfg.Devices))),
	}
	now := cfg.Clock.Now()
	nWild := int(math.Round(cfg.WildFiRatio * float64(cfg.Devices)))
	nSenML := int(math.Round(cfg.SenMLRatio * float64(cfg.Devices)))
	width := len(strconv.Itoa(cfg.Devices))
	width = max(width, 4)
	cameras := 0
	rest, js := cfg.Devices-nWild, 0
	for i := range cfg.Devices {
		// Spread the kinds over the herd deterministically: every k-th
		// device is a WildFi collar, and every j-th of the others a SenML
		// one.
		kind := kindJSON
		switch {
		case nWild > 0 && i*nWild/cfg.Devices != (i+1)*nWild/cfg.Devices:
			kind = kindWildFi
		default:
			if nSenML > 0 && js*nSenML/rest != (js+1)*nSenML/rest {
				kind = kindSenML
			}
			js++
		}
		var id string
		if kind == kindWildFi {
			id = fmt.Sprintf("wildfi-%0*d", width, i+1)
		} else {
			id = fmt.Sprintf("%s-%0*d", cfg.DevicePrefix, width, i+1)
		}
		d := newDevice(id, kind, cfg.Seed, i, *cfg.Pasture, now)
		if cameras == 0 && kind != kindWildFi && i == cfg.Devices-1 {
			d.camera = true // at least one camera in any herd with JSON devices
		}
		if d.camera {
			cameras++
		}
		g.devices = append(g.devices, d)
	}
	if cameras > 0 {
		g.cameraShare = float64(cameras) / float64(cfg.Devices)
	}
	return g, nil
}

// Next returns the next message at event time now: the next device in turn
// that is not silent speaks. ok is false when every device is silent.
func (g *Generator) Next(now time.Time) (msg Message, ok bool) {
	n := len(g.devices)
	g.pruneSilent(now)
	for range n {
		idx := g.cursor
		d := g.devices[idx]
		g.cursor = (g.cursor + 1) % n
		if now.Before(d.silentTo) {
			continue
		}
		dt := now.Sub(d.last)
		d.advance(now, *g.cfg.Pasture, g.cfg.FeverRate)
		if dt > 0 && g.cfg.SilenceRate > 0 && len(g.silent) < g.maxSilent &&
			d.rng.Float64() < 1-math.Exp(-g.cfg.SilenceRate*min(dt, maxCatchUp).Seconds()/86400) {
			d.silentTo = now.Add(minSilence + time.Duration(d.rng.Int64N(int64(maxSilence-minSilence))))
			d.silences++
			g.silent = append(g.silent, idx)
			continue
		}
		d.drainForMessage()
		if g.cfg.InvalidRatio > 0 && g.rng.Float64() < g.cfg.InvalidRatio {
			msg = g.invalid(d, now)
		} else {
			msg = g.valid(d, now)
		}
		msg.dev = idx
		return msg, true
	}
	return Message{}, false
}

func (g *Generator) pruneSilent(now time.Time) {
	kept := g.silent[:0]
	for _, i := range g.silent {
		if now.Before(g.devices[i].silentTo) {
			kept = append(kept, i)
		}
	}
	g.silent = kept
}

func (g *Generator) invalid(d *device, now time.Time) Message {
	classes := Classes()
	var msg Message
	for range 4 * len(classes) {
		class := classes[g.invalidSeq%len(classes)]
		variants := invalidByClass[class]
		v := variants[(g.invalidSeq/len(classes))%len(variants)]
		g.invalidSeq++
		topic, payload := v.build(fixtureCtx{now: now.UTC(), tenant: g.cfg.Tenant, device: d.id})
		msg = Message{Topic: topic, Payload: payload, Device: d.id, Class: class}
		if g.cfg.Credentials == nil || g.ownTopic(d, topic) {
			return msg
		}
	}
	return g.valid(d, now) // unreachable with the shipped classes
}

// ownTopic reports whether a broker that enforces the registry lets
// device d publish to topic (registry.DeviceACL).
func (g *Generator) ownTopic(d *device, topic string) bool {
	if strings.HasPrefix(topic, "devices/"+g.cfg.Tenant+"/"+d.id+"/") {
		return true
	}
	return d.kind == kindWildFi && strings.HasPrefix(topic, "wildfi/"+d.id+"/")
}

// HerdDevice is one device of a simulated herd.
type HerdDevice struct {
	ID     string
	WildFi bool // a WildFi collar (registry type "wildfi")
}

// Herd returns the devices cfg simulates, in order: what a registry needs
// before the simulator connects with Credentials.
func Herd(cfg Config) ([]HerdDevice, error) {
	cfg.Credentials = nil
	g, err := NewGenerator(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]HerdDevice, len(g.devices))
	for i, d := range g.devices {
		out[i] = HerdDevice{ID: d.id, WildFi: d.kind == kindWildFi}
	}
	return out, nil
}

func (g *Generator) valid(d *device, now time.Time) Message {
	if d.kind == kindWildFi {
		return g.wildfi(d, now)
	}
	if d.camera && g.cameraShare > 0 && g.rng.Float64() < g.cfg.MediaRatio/g.cameraShare {
		return g.media(d, now)
	}
	base := "devices/" + g.cfg.Tenant + "/" + d.id + "/"
	p := d.rng.Float64()
	switch {
	case p < 0.5 && d.kind == kindSenML:
		return Message{Topic: base + "sensor", Payload: d.senml(now), Device: d.id, Channel: ChannelSenML}
	case p < 0.5:
		return Message{Topic: base + "sensor", Payload: d.sensorJSON(now), Device: d.id, Channel: ChannelSensor}
	case p < 0.85:
		return Message{Topic: base + "gps", Payload: d.gpsJSON(now, true), Device: d.id, Channel: ChannelGPS}
	case p < 1-eventShare:
		return Message{Topic: base + "heartbeat", Payload: d.heartbeat(now), Device: d.id, Channel: ChannelHeartbeat}
	default:
		return Message{Topic: base + "events", Payload: d.event(now), Device: d.id, Channel: ChannelEvents}
	}
}

// eventShare is the share of a JSON or SenML device's turns that send a
// device event (about one event every 20 s at drover dev's 5 msg/s).
const eventShare = 0.01

// simEvents are the events a collar reports, with their weights.
var simEvents = []struct {
	name, severity, message string
	weight                  float64
}{
	{"button", "info", "button pressed", 0.4},
	{"tamper", "warning", "case opened", 0.25},
	{"collar_removed", "critical", "collar strap open", 0.15},
	{"firmware_update_failed", "warning", "image checksum mismatch", 0.1},
	{"low_signal", "info", "", 0.1},
}

// event is a device event on the events channel; now and then two in one
// message (an array: the second a second later).
func (d *device) event(now time.Time) []byte {
	one := func(b []byte, at time.Time) []byte {
		p := d.rng.Float64()
		e := simEvents[len(simEvents)-1]
		for _, x := range simEvents {
			if p < x.weight {
				e = x
				break
			}
			p -= x.weight
		}
		b = d.appendTS(append(b, `{"ts":`...), at)
		b = append(b, `,"event":`...)
		b = strconv.AppendQuote(b, e.name)
		b = append(b, `,"severity":`...)
		b = strconv.AppendQuote(b, e.severity)
		if e.message != "" {
			b = append(b, `,"message":`...)
			b = strconv.AppendQuote(b, e.message)
		}
		switch e.name {
		case "firmware_update_failed":
			b = append(b, `,"value":`...)
			b = strconv.AppendInt(b, int64(1+d.rng.IntN(5)), 10)
			b = append(b, `,"attrs":{"from":`...)
			b = strconv.AppendQuote(b, d.firmware)
			b = append(b, `,"to":"1.5.0"}`...)
		case "low_signal":
			b = append(b, `,"value":`...)
			b = strconv.AppendInt(b, int64(math.Round(d.rssi)), 10)
			b = append(b, `,"unit":"dBm"`...)
		}
		return append(b, '}')
	}
	if d.rng.IntN(5) > 0 {
		return one(nil, now)
	}
	b := one([]byte{'['}, now.Add(-time.Second))
	b = one(append(b, ','), now)
	return append(b, ']')
}

func (g *Generator) media(d *device, now time.Time) Message {
	p := g.rng.Float64()
	kind := "image2d"
	switch {
	case p < 0.6:
	case p < 0.8:
		kind = "video2d"
	case p < 0.92:
		kind = "image3d"
	default:
		kind = "video3d"
	}
	m := newMedia(g.rng, kind, g.cfg.Bucket, g.cfg.Tenant, d.id, now)
	b := d.appendTS([]byte(`{"ts":`), now)
	b = fmt.Appendf(b, `,"bucket":%q,"key":%q,"size":%d,"content_type":%q,"sha256":%q}`, m.Bucket, m.Key, len(m.Body), m.ContentType, m.SHA256)
	return Message{Topic: "devices/" + g.cfg.Tenant + "/" + d.id + "/media/" + kind, Payload: b, Device: d.id, Channel: ChannelMedia, Media: m}
}

// wildfiBurst is the number of IMU samples per WildFi imu message.
const wildfiBurst = 5

var wildfiTypes = []struct {
	typ    string
	weight float64
}{
	{"gps", 0.30}, {"imu", 0.25}, {"env", 0.15}, {"move", 0.15}, {"prox", 0.05}, {"meta", 0.05}, {"gnss", 0.03}, {"rawgps", 0.02},
}

func (g *Generator) wildfi(d *device, now time.Time) Message {
	p := d.rng.Float64()
	typ := wildfiTypes[len(wildfiTypes)-1].typ
	for _, t := range wildfiTypes {
		if p < t.weight {
			typ = t.typ
			break
		}
		p -= t.weight
	}
	return Message{Topic: "wildfi/" + d.id + "/" + typ, Payload: d.wildfiJSON(typ, now), Device: d.id, Channel: ChannelWildFi}
}

// appendTS appends the event time as the device formats it: epoch
// milliseconds or an RFC 3339 string with milliseconds.
func (d *device) appendTS(b []byte, now time.Time) []byte {
	if d.epochTS {
		return strconv.AppendInt(b, now.UnixMilli(), 10)
	}
	b = append(b, '"')
	b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	return append(b, '"')
}

func appendNum(b []byte, v float64, digits int) []byte {
	return strconv.AppendFloat(b, round(v, digits), 'f', -1, 64)
}

// accel returns an IMU acceleration sample (m/s², gravity on z) scaled by
// the current activity.
func (d *device) accel() (x, y, z float64) {
	a := d.activity
	return d.rng.NormFloat64() * (0.05 + 1.5*a), d.rng.NormFloat64() * (0.05 + 1.5*a), 9.81 + d.rng.NormFloat64()*(0.02+0.8*a)
}

func (d *device) sensorJSON(now time.Time) []byte {
	b := d.appendTS([]byte(`{"ts":`), now)
	if d.rng.IntN(2) == 0 {
		b = append(b, `,"metric":"temperature","value":`...)
		b = appendNum(b, d.bodyTemp(), 2)
		return append(b, `,"unit":"Cel"}`...)
	}
	x, y, z := d.accel()
	b = append(b, `,"measurements":{"activity":`...)
	b = appendNum(b, d.activity, 3)
	b = append(b, `,"accel_x":`...)
	b = appendNum(b, x, 3)
	b = append(b, `,"accel_y":`...)
	b = appendNum(b, y, 3)
	b = append(b, `,"accel_z":`...)
	b = appendNum(b, z, 3)
	return append(b, `},"units":{"activity":"/","accel_x":"m/s2","accel_y":"m/s2","accel_z":"m/s2"}}`...)
}

// senml is an RFC 8428 pack: base time in seconds, temperature, activity
// and acceleration, the IMU samples at relative times.
func (d *device) senml(now time.Time) []byte {
	b := []byte(`[{"bt":`)
	b = strconv.AppendFloat(b, float64(now.UnixMilli())/1000, 'f', 3, 64)
	b = append(b, `,"n":"temperature","u":"Cel","v":`...)
	b = appendNum(b, d.bodyTemp(), 2)
	b = append(b, `},{"n":"activity","u":"/","v":`...)
	b = appendNum(b, d.activity, 3)
	x, y, z := d.accel()
	b = append(b, `},{"n":"accel_x","u":"m/s2","v":`...)
	b = appendNum(b, x, 3)
	b = append(b, `,"t":-1},{"n":"accel_y","u":"m/s2","v":`...)
	b = appendNum(b, y, 3)
	b = append(b, `,"t":-1},{"n":"accel_z","u":"m/s2","v":`...)
	b = appendNum(b, z, 3)
	b = append(b, `,"t":-1}`...)
	if d.sent%10 == 0 {
		b = append(b, `,{"n":"battery","u":"%EL","v":`...)
		b = appendNum(b, d.battery, 1)
		b = append(b, '}')
	}
	return append(b, ']')
}

func (d *device) gpsJSON(now time.Time, full bool) []byte {
	b := d.appendTS([]byte(`{"ts":`), now)
	b = append(b, `,"lat":`...)
	b = appendNum(b, d.pos.Lat, 6)
	b = append(b, `,"lon":`...)
	b = appendNum(b, d.pos.Lon, 6)
	if full {
		b = append(b, `,"alt":`...)
		b = appendNum(b, 85+d.rng.Float64()*6, 1)
		b = append(b, `,"hdop":`...)
		b = appendNum(b, 0.7+d.rng.Float64()*1.5, 1)
		b = append(b, `,"satellites":`...)
		b = strconv.AppendInt(b, int64(6+d.rng.IntN(8)), 10)
		b = append(b, `,"speed":`...)
		b = appendNum(b, d.speed, 2)
	}
	return append(b, '}')
}

func (d *device) heartbeat(now time.Time) []byte {
	b := d.appendTS([]byte(`{"ts":`), now)
	b = append(b, `,"battery":`...)
	b = appendNum(b, d.battery, 1)
	b = append(b, `,"rssi":`...)
	b = strconv.AppendInt(b, int64(math.Round(d.rssi)), 10)
	b = append(b, `,"firmware":`...)
	b = strconv.AppendQuote(b, d.firmware)
	return append(b, '}')
}

func (d *device) wildfiJSON(typ string, now time.Time) []byte {
	switch typ {
	case "gps", "gnss":
		return d.gpsJSON(now, typ == "gnss")
	case "rawgps":
		return d.gpsJSON(now, false)
	}
	b := []byte(`{"ts":`)
	b = strconv.AppendInt(b, now.UnixMilli(), 10)
	switch typ {
	case "imu":
		// A burst of wildfiBurst samples at 10 Hz, one array per axis.
		var ax, ay, az [wildfiBurst]float64
		for i := range wildfiBurst {
			ax[i], ay[i], az[i] = d.accel()
		}
		b = append(b, `,"hz":10`...)
		for _, axis := range []struct {
			name string
			v    *[wildfiBurst]float64
		}{{"ax", &ax}, {"ay", &ay}, {"az", &az}} {
			b = append(b, `,"`+axis.name+`":[`...)
			for i, v := range axis.v {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendNum(b, v, 3)
			}
			b = append(b, ']')
		}
		b = append(b, `,"mode":"burst"`...)
	case "env":
		b = append(b, `,"temperature":`...)
		b = appendNum(b, 12+4*math.Sin(2*math.Pi*float64(now.UTC().Hour()-9)/24)+d.rng.NormFloat64()*0.3, 1)
		b = append(b, `,"humidity":`...)
		b = appendNum(b, clamp(80+d.rng.NormFloat64()*5, 0, 100), 1)
		b = append(b, `,"pressure":`...)
		b = appendNum(b, 1013+d.rng.NormFloat64()*2, 1)
	case "prox":
		b = append(b, `,"proximity_rssi":`...)
		b = strconv.AppendInt(b, int64(-60-d.rng.IntN(40)), 10)
	case "move":
		b = append(b, `,"activity":`...)
		b = appendNum(b, d.activity, 3)
	default: // meta
		b = append(b, `,"battery_voltage":`...)
		b = appendNum(b, 3.3+0.9*d.battery/100, 2)
	}
	return append(b, '}')
}
