package decode

import (
	"strconv"
	"strings"
	"testing"
)

// BenchmarkDecode measures Decode per payload form, with one reused
// Output as the bridge's workers use it. The sensor forms are the bulk of
// the traffic; the others show what the general (reflection) paths cost.
//
//	go test -run '^$' -bench . -benchtime 1x ./ingest/decode/   # smoke: every form once
//	go test -run '^$' -bench . ./ingest/decode/                 # figures
func BenchmarkDecode(b *testing.B) {
	imu := func(hz, n int) string {
		var s strings.Builder
		s.WriteString(`{"ts":1777636740000,"hz":` + strconv.Itoa(hz))
		for _, axis := range []string{"ax", "ay", "az"} {
			s.WriteString(`,"` + axis + `":[`)
			for i := range n {
				if i > 0 {
					s.WriteByte(',')
				}
				s.WriteString(strconv.FormatFloat(float64(i)/100, 'f', 2, 64))
			}
			s.WriteByte(']')
		}
		s.WriteString(`,"mode":"burst"}`)
		return s.String()
	}
	for _, bc := range []struct{ name, decoder, kind, payload string }{
		{"sensor-flat", "sensor", "", `{"ts":1777636740000,"metric":"temperature","value":38.6,"unit":"Cel","attrs":{"site":"north"}}`},
		{"sensor-measurements", "sensor", "", `{"ts":1777636740000,"measurements":{"temperature":38.6,"activity":0.42,"accel_x":0.12,"accel_y":-0.03},"units":{"temperature":"Cel"}}`},
		{"senml", "sensor", "", `[{"bn":"collar.","bt":1777636740,"bu":"Cel","n":"temp","v":38.5},{"n":"temp","t":30,"v":38.7},{"n":"moving","vb":true},{"n":"steps","u":"count","s":1200}]`},
		{"gps", "gps", "", `{"ts":"2026-05-01T11:59:00Z","lat":47.5,"lon":8.7,"alt":420,"hdop":0.9,"satellites":9,"speed":1.2}`},
		{"heartbeat", "heartbeat", "", `{"ts":1777636740000,"battery":87,"rssi":-71,"uptime":86400,"firmware":"1.4.2"}`},
		{"events", "event", "", `[{"ts":1777636740000,"event":"door_open"},{"ts":1777636741000,"event":"door_open","value":0,"message":"closed"},{"ts":1777636742000,"event":"tamper","severity":"warning"}]`},
		{"wildfi-gps-batch", "wildfi-gps", "gps", `[{"ts":1777636740000,"lat":47.1,"lon":8.2,"sats":7},{"ts":1777636741000,"lat":47.2,"lon":8.3,"sats":8}]`},
		{"wildfi-imu-25", "wildfi-sensor", "imu", imu(25, 25)},
	} {
		d, ok := Lookup(bc.decoder)
		if !ok {
			b.Fatalf("no decoder %s", bc.decoder)
		}
		b.Run(bc.name, func(b *testing.B) {
			var out Output
			lim := DefaultLimits()
			payload := []byte(bc.payload)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				in := Input{Tenant: "farm1", DeviceID: "cow-7", Source: bc.decoder, Kind: bc.kind, Payload: payload, ReceivedAt: now}
				if err := Decode(d.Func, &in, lim, &out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
