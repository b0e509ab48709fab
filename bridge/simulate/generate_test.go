package simulate

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func newTestGenerator(t *testing.T, cfg Config) (*Generator, *fakeClock) {
	t.Helper()
	clk := newFakeClock(epoch)
	cfg.Clock = clk
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g, clk
}

// TestFeverEpisodes runs 50 devices for 20 days of event time and checks
// that episodes occur at the configured rate and each keeps the body
// temperature above 39.5 °C for more than 10 minutes.
func TestFeverEpisodes(t *testing.T) {
	const (
		devices = 50
		days    = 20
		rate    = 1.0 // episodes per device-day
	)
	g, _ := newTestGenerator(t, Config{Devices: devices, FeverRate: rate, SilenceRate: -1})
	var episodes int
	for _, d := range g.devices {
		now := epoch
		var feverStart, feverEnd time.Time
		inFever := false
		for now.Before(epoch.Add(days * 24 * time.Hour)) {
			now = now.Add(time.Minute)
			d.advance(now, *g.cfg.Pasture, g.cfg.FeverRate)
			temp := d.bodyTemp()
			switch {
			case d.fevering && !inFever:
				inFever, feverStart = true, now
				episodes++
			case !d.fevering && inFever:
				inFever, feverEnd = false, now
				if dur := now.Sub(feverStart); dur <= 10*time.Minute {
					t.Errorf("%s: fever episode of only %s", d.id, dur)
				}
			}
			if d.fevering && temp <= FeverThreshold {
				t.Fatalf("%s: %.2f °C during a fever episode", d.id, temp)
			}
			if !d.fevering && now.Sub(feverEnd) > 30*time.Minute && temp > 39.3 {
				t.Fatalf("%s: %.2f °C outside a fever episode", d.id, temp)
			}
			if temp < 37.5 || temp > 41.5 {
				t.Fatalf("%s: implausible body temperature %.2f °C", d.id, temp)
			}
		}
	}
	// Episodes cannot start during one (mean 37.5 min of 24 h), so the
	// observed rate is slightly below the configured one.
	want := float64(devices * days * rate)
	if got := float64(episodes); got < 0.8*want || got > 1.1*want {
		t.Fatalf("%d fever episodes in %d device-days, want about %.0f", episodes, devices*days, want)
	}
	// And none at all when switched off.
	g, _ = newTestGenerator(t, Config{Devices: 5, FeverRate: -1})
	for _, d := range g.devices {
		d.advance(epoch.Add(24*time.Hour), *g.cfg.Pasture, g.cfg.FeverRate)
		if d.fevers != 0 {
			t.Fatalf("%s had %d fevers with fever rate off", d.id, d.fevers)
		}
	}
}

// TestBatteryDrains checks the reported battery of every device never rises
// over 50k messages and a simulated week.
func TestBatteryDrains(t *testing.T) {
	g, clk := newTestGenerator(t, Config{Devices: 20, SilenceRate: -1, SenMLRatio: -1, WildFiRatio: -1, MediaRatio: -1})
	last := map[string]float64{}
	seen := 0
	for range 50_000 {
		clk.Add(12 * time.Second)
		msg, ok := g.Next(clk.Now())
		if !ok || msg.Channel != ChannelHeartbeat {
			continue
		}
		var hb struct {
			Battery  float64 `json:"battery"`
			RSSI     float64 `json:"rssi"`
			Firmware string  `json:"firmware"`
		}
		if err := json.Unmarshal(msg.Payload, &hb); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[msg.Device]; ok && hb.Battery > prev {
			t.Fatalf("%s: battery rose from %v to %v", msg.Device, prev, hb.Battery)
		}
		if hb.Battery < batteryFloor || hb.Battery > 100 || hb.RSSI > -55 || hb.RSSI < -115 || hb.Firmware == "" {
			t.Fatalf("implausible heartbeat %s", msg.Payload)
		}
		last[msg.Device] = hb.Battery
		seen++
	}
	if seen < 1000 || len(last) != 20 {
		t.Fatalf("%d heartbeats from %d devices", seen, len(last))
	}
	for _, d := range g.devices {
		if d.battery >= 99.9 {
			t.Errorf("%s: battery %v did not drain in a week", d.id, d.battery)
		}
	}
}

func sequence(t *testing.T, cfg Config, n int) []Message {
	g, clk := newTestGenerator(t, cfg)
	var out []Message
	for len(out) < n {
		clk.Add(time.Second)
		if m, ok := g.Next(clk.Now()); ok {
			out = append(out, m)
		}
	}
	return out
}

func TestSeedReproduces(t *testing.T) {
	cfg := Config{Devices: 30, InvalidRatio: 0.1, MediaRatio: 0.05, Seed: 7}
	a, b := sequence(t, cfg, 5000), sequence(t, cfg, 5000)
	for i := range a {
		if a[i].Topic != b[i].Topic || !bytes.Equal(a[i].Payload, b[i].Payload) || (a[i].Media == nil) != (b[i].Media == nil) {
			t.Fatalf("message %d differs with the same seed:\n%s %s\n%s %s", i, a[i].Topic, a[i].Payload, b[i].Topic, b[i].Payload)
		}
		if a[i].Media != nil && !bytes.Equal(a[i].Media.Body, b[i].Media.Body) {
			t.Fatalf("media %d differs with the same seed", i)
		}
	}
	cfg.Seed = 8
	c := sequence(t, cfg, 5000)
	same := 0
	for i := range a {
		if bytes.Equal(a[i].Payload, c[i].Payload) {
			same++
		}
	}
	if same > 500 {
		t.Fatalf("%d of 5000 messages equal with another seed", same)
	}
}

// TestTrafficMix checks that a run produces every channel and every bad
// input class in about the configured shares, and that the bridge's
// decoders accept every valid message and reject every invalid one with
// its class.
func TestTrafficMix(t *testing.T) {
	const n = 20_000
	msgs := sequence(t, Config{Devices: 50, InvalidRatio: 0.1, MediaRatio: 0.01, SilenceRate: -1}, n)
	channels := map[string]int{}
	classes := map[Class]int{}
	for i, m := range msgs {
		if m.Class != "" {
			classes[m.Class]++
		} else {
			channels[m.Channel]++
		}
		if !strings.Contains(m.Topic, m.Device) && m.Class != ClassBadIdentity {
			t.Fatalf("message %d of %s on %s", i, m.Device, m.Topic)
		}
		// Decode at the time the message was made (1 s per message).
		recv := epoch.Add(time.Duration(i+1) * time.Second)
		kt, records, reason, err := bridgeVerdict(t, m.Topic, m.Payload, recv)
		if m.Class == "" {
			if reason != "" || records == 0 {
				t.Fatalf("valid %s message rejected: %s %v\n%s %s", m.Channel, reason, err, m.Topic, m.Payload)
			}
			if m.Media != nil && kt == "" {
				t.Fatal("media message without topic")
			}
		} else if string(reason) != string(m.Class) {
			t.Fatalf("invalid message of class %s rejected as %q (%v): %s %.100s", m.Class, reason, err, m.Topic, m.Payload)
		}
	}
	for _, ch := range []string{ChannelSensor, ChannelSenML, ChannelGPS, ChannelHeartbeat, ChannelEvents, ChannelMedia, ChannelWildFi} {
		if channels[ch] == 0 {
			t.Errorf("no %s messages in %d", ch, n)
		}
	}
	for _, c := range Classes() {
		if classes[c] == 0 {
			t.Errorf("no %s messages in %d", c, n)
		}
	}
	inv := 0
	for _, v := range classes {
		inv += v
	}
	if share := float64(inv) / n; math.Abs(share-0.1) > 0.02 {
		t.Errorf("invalid share %.3f, want 0.1", share)
	}
	if share := float64(channels[ChannelMedia]) / n; share < 0.005 || share > 0.015 {
		t.Errorf("media share %.4f, want about 0.01", share)
	}
}

// TestSilentDevices checks that devices go silent for a while, that the
// cap on silent devices holds, and that a silent device says nothing.
func TestSilentDevices(t *testing.T) {
	g, clk := newTestGenerator(t, Config{Devices: 40, SilenceRate: 200, MaxSilentShare: 0.25})
	spoke := map[string]time.Time{}
	for range 40 * 2000 {
		clk.Add(250 * time.Millisecond)
		now := clk.Now()
		silent := 0
		for _, d := range g.devices {
			if now.Before(d.silentTo) {
				silent++
			}
		}
		if silent > 10 {
			t.Fatalf("%d of 40 devices silent at once, cap is 10", silent)
		}
		m, ok := g.Next(now)
		if !ok {
			continue
		}
		for _, d := range g.devices {
			if d.id == m.Device && now.Before(d.silentTo) {
				t.Fatalf("%s spoke while silent", d.id)
			}
		}
		spoke[m.Device] = now
	}
	spells := 0
	for _, d := range g.devices {
		spells += d.silences
	}
	if spells < 10 {
		t.Fatalf("only %d silent spells", spells)
	}
}

func TestKindsAndIDs(t *testing.T) {
	g, _ := newTestGenerator(t, Config{Devices: 100, SenMLRatio: 0.2, WildFiRatio: 0.1, DevicePrefix: "cow"})
	kinds := map[deviceKind]int{}
	ids := map[string]bool{}
	for _, d := range g.devices {
		kinds[d.kind]++
		if ids[d.id] {
			t.Fatalf("duplicate id %s", d.id)
		}
		ids[d.id] = true
		want := "cow-"
		if d.kind == kindWildFi {
			want = "wildfi-"
		}
		if !strings.HasPrefix(d.id, want) || len(d.id) != len(want)+4 {
			t.Fatalf("device id %q for a %s device", d.id, d.kind)
		}
	}
	if kinds[kindWildFi] != 10 || kinds[kindSenML] < 15 || kinds[kindSenML] > 20 {
		t.Fatalf("kinds = %v, want 10 WildFi and about 20 SenML", kinds)
	}
}

// TestCredentialsKeepDevicesOnTheirTopics: with Credentials every message,
// malformed ones included, goes to a topic of its own device (what a
// broker enforcing the registry allows), and the classes that need another
// topic are left out while the others still come round.
func TestCredentialsKeepDevicesOnTheirTopics(t *testing.T) {
	herd, err := Herd(Config{Devices: 20})
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{}
	for _, d := range herd {
		creds[d.ID] = "secret-" + d.ID
	}
	g, _ := newTestGenerator(t, Config{Devices: 20, InvalidRatio: 1, Credentials: creds, SilenceRate: -1})
	classes := map[Class]bool{}
	now := epoch
	for range 2000 {
		now = now.Add(time.Second)
		m, ok := g.Next(now)
		if !ok {
			continue
		}
		own := strings.HasPrefix(m.Topic, "devices/"+DefaultTenant+"/"+m.Device+"/") ||
			strings.HasPrefix(m.Device, "wildfi-") && strings.HasPrefix(m.Topic, "wildfi/"+m.Device+"/")
		if !own {
			t.Fatalf("device %s published to %s", m.Device, m.Topic)
		}
		classes[m.Class] = true
	}
	if classes[ClassUnknownTopic] || classes[ClassBadIdentity] {
		t.Errorf("classes needing a foreign topic were sent: %v", classes)
	}
	if !classes[ClassNotJSON] || !classes[ClassUnknownChannel] || len(classes) < 15 {
		t.Errorf("only %d classes came round: %v", len(classes), classes)
	}
	if len(herd) != 20 || herd[9].ID != "wildfi-0010" || !herd[9].WildFi || herd[0].ID != "collar-0001" {
		t.Errorf("herd %v", herd)
	}
}
