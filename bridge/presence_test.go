package bridge

import "testing"

// TestPresence: the embedded broker's retained events may reach a bridge
// in any order; EMQX's carry no subscription count.
func TestPresence(t *testing.T) {
	const base = "$SYS/brokers/drover/clients/farm1/cow-1/"
	tests := []struct {
		name   string
		events [][2]string // event, payload
		online bool
	}{
		{"connected without subscriptions", [][2]string{{"connected", `{"clientid":"farm1/cow-1","connected_at":100,"subscriptions":0}`}}, false},
		{"then subscribed", [][2]string{{"connected", `{"connected_at":100,"subscriptions":0}`}, {"subscribed", `{"subscribed_at":101}`}}, true},
		{"retained, subscribed first", [][2]string{{"subscribed", `{"subscribed_at":101}`}, {"connected", `{"connected_at":100,"subscriptions":0}`}}, true},
		{"stale subscription of an earlier connection", [][2]string{{"subscribed", `{"subscribed_at":50}`}, {"connected", `{"connected_at":100,"subscriptions":0}`}}, false},
		{"resumed session", [][2]string{{"connected", `{"connected_at":100,"subscriptions":2}`}}, true},
		{"EMQX (no count)", [][2]string{{"connected", `{"clientid":"farm1/cow-1","connected_at":100}`}}, true},
		{"disconnected later", [][2]string{{"connected", `{"connected_at":100}`}, {"disconnected", `{"disconnected_at":200}`}}, false},
		{"retained disconnect of an earlier connection", [][2]string{{"disconnected", `{"disconnected_at":90}`}, {"connected", `{"connected_at":100}`}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPresence()
			for _, e := range tt.events {
				p.observe(base+e[0], []byte(e[1]))
			}
			if got := p.online("farm1/cow-1"); got != tt.online {
				t.Errorf("online = %v, want %v", got, tt.online)
			}
		})
	}
	p := newPresence()
	if p.observe("$SYS/brokers/drover/clients/drover-bridge-1/connected", []byte(`{"connected_at":1}`)) || p.online("drover-bridge-1") {
		t.Error("a service's client id counted as a device")
	}
}
