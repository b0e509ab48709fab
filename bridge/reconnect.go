package bridge

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// Defaults of Reconnect.
const (
	DefaultReconnectMin    = 250 * time.Millisecond
	DefaultReconnectMax    = 30 * time.Second
	DefaultReconnectStable = 30 * time.Second
)

// reasonSessionTakenOver is the MQTT 5 DISCONNECT reason code a broker
// sends when another client connected with the same client id.
const reasonSessionTakenOver = 0x8E

// Reconnect shapes how the bridge reconnects to the broker: a jittered
// exponential back-off that grows with every failed attempt and with every
// connection that ended before it was Stable, and starts over after a
// connection that lasted. Zero fields take the defaults.
type Reconnect struct {
	// Min is the base delay after the first failure; default 250ms.
	Min time.Duration
	// Max bounds every delay; default 30s.
	Max time.Duration
	// Stable is how long a connection must last for the next loss to
	// count as a fresh start (reconnect at once); default 30s.
	Stable time.Duration
}

func (r Reconnect) withDefaults() (Reconnect, error) {
	if r.Min == 0 {
		r.Min = DefaultReconnectMin
	}
	if r.Max == 0 {
		r.Max = DefaultReconnectMax
	}
	if r.Stable == 0 {
		r.Stable = DefaultReconnectStable
	}
	if r.Min < 0 || r.Max < r.Min || r.Stable < 0 {
		return r, fmt.Errorf("%w: Reconnect: want 0 < Min <= Max and Stable >= 0, got %+v", ErrConfig, r)
	}
	return r, nil
}

// backoff is the bridge's reconnect delay. autopaho restarts its attempt
// count at every connection loss and waits nothing before the first
// attempt, so on its own a client that is thrown out right after each
// connect (another client taking its session over) reconnects in a tight
// loop: 3,476 times in 8 s in the incident of issue 14. backoff remembers
// the connections that did not last across autopaho's cycles. Its methods
// are safe for concurrent use.
type backoff struct {
	cfg  Reconnect
	now  func() time.Time
	rand func(n int64) int64 // [0, n)

	mu      sync.Mutex
	short   int       // consecutive connections that ended before cfg.Stable
	upSince time.Time // when the current connection came up; zero while down
}

func newBackoff(cfg Reconnect, now func() time.Time) *backoff {
	return &backoff{cfg: cfg, now: now, rand: rand.Int64N}
}

// delay is autopaho's ReconnectBackoff: the wait before connection attempt
// number attempt (0 = the first after a loss, or the very first).
func (b *backoff) delay(attempt int) time.Duration {
	b.mu.Lock()
	n := b.short + attempt
	b.mu.Unlock()
	if n == 0 {
		return 0
	}
	d := b.cfg.Min
	for i := 1; i < n && d < b.cfg.Max; i++ {
		d *= 2
	}
	d = min(d, b.cfg.Max)
	// "Equal jitter": half fixed, half random, so replicas thrown out
	// together do not come back together, and the delay never collapses.
	half := d / 2
	return half + time.Duration(b.rand(int64(d-half)+1))
}

// up records that a connection came up.
func (b *backoff) up() {
	b.mu.Lock()
	b.upSince = b.now()
	b.mu.Unlock()
}

// down records that the connection went down and reports how long it had
// lasted and how many connections in a row have now ended before Stable.
func (b *backoff) down() (lasted time.Duration, short int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.upSince.IsZero() {
		lasted = b.now().Sub(b.upSince)
	}
	b.upSince = time.Time{}
	if lasted >= b.cfg.Stable {
		b.short = 0
	} else {
		b.short++
	}
	return lasted, b.short
}

// onServerDisconnect handles a DISCONNECT from the broker. A session
// takeover is an error, not a blip: while another client holds the
// bridge's client id, the broker delivers the session's queued messages to
// it, and whatever it acknowledges is gone although its publishers got
// their PUBACKs. Bind the bridge's client ids to its principal in the
// broker (compose/README.md) so that this cannot happen.
func (b *Bridge) onServerDisconnect(d *paho.Disconnect) {
	reason := ""
	if d.Properties != nil {
		reason = d.Properties.ReasonString
	}
	if d.ReasonCode == reasonSessionTakenOver {
		b.m.takeovers.Inc()
		b.log.Error("mqtt session taken over: another client connected with the bridge's client id; "+
			"messages queued in the session may be delivered to it instead of Kafka. "+
			"Bind the bridge's client ids to its principal in the broker",
			"broker", b.cfg.MQTTURL, "client_id", b.cfg.ClientID, "reason_code", "0x8e", "reason", reason)
		return
	}
	b.log.Warn("mqtt server disconnected us", "broker", b.cfg.MQTTURL, "client_id", b.cfg.ClientID,
		"reason_code", d.ReasonCode, "reason", reason)
}

// shortConnectionsAlarm is how many connections in a row that ended before
// Reconnect.Stable make a lost connection an error: a broker that drops a
// taken-over session without a reason code (Mosquitto 2.0) shows nothing
// else.
const shortConnectionsAlarm = 3

// logConnectionLost logs a lost connection: a warning, or an error once
// several connections in a row ended right after they came up.
func (b *Bridge) logConnectionLost(lasted time.Duration, short int) {
	args := []any{"broker", b.cfg.MQTTURL, "client_id", b.cfg.ClientID,
		"lasted", lasted.Round(time.Millisecond).String(), "short_connections_in_a_row", short}
	if short >= shortConnectionsAlarm {
		b.log.Error("mqtt connection keeps dropping right after it comes up; reconnecting with back-off. "+
			"Another client may be using the bridge's client id (Mosquitto 2.0 drops a taken-over session without saying so)", args...)
		return
	}
	b.log.Warn("mqtt connection lost; reconnecting with back-off", args...)
}
