package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/registry"
)

// BenchmarkLoRaWANWebhook measures the HTTP door's ChirpStack webhook
// (token check, the frame dedup, the ingest core's DevEUI lookup in the
// registry, decoding of the uplink's object and radio metadata, Avro,
// produce, 202 after Kafka's ack) from 16 concurrent Go HTTP clients over
// TCP on the embedded Kafka (kfake, in the process). Each uplink is a new
// frame (its fCnt) with one decoded value and one gateway, five readings
// on raw.sensor. It reports the rate and the process CPU per accepted
// uplink, to set next to the MQTT bridge's and the other doors'.
//
//	go test -run '^$' -bench LoRaWANWebhook -benchtime 20000x ./doors/httpapi/
func BenchmarkLoRaWANWebhook(b *testing.B) {
	e := ingesttest.New(b)
	const eui, token = "70b3d57ed0000001", "bench-token-0123456789"
	e.AddDevice(b, registry.NewDevice{Tenant: ingesttest.Tenant, ID: "lora-1", AltIDs: map[string]string{registry.AltDevEUI: eui}})
	door, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0", MaxInFlight: 4 * benchClients}, e.View, e.Core,
		httpapi.WithLoRaWAN(httpapi.LoRaWAN{Tokens: map[lorawan.Network]string{lorawan.ChirpStack: token}, Dedup: lorawan.NewDedup(time.Hour, 1<<20)}))
	if err != nil {
		b.Fatal(err)
	}
	url := serveBench(b, door.Handler()) + "/v1/lorawan/chirpstack?event=up"
	now := time.Now()
	uplink := func(i int) []byte {
		return fmt.Appendf(nil, `{"time":%q,"deviceInfo":{"devEui":%q},"devAddr":"00189440","fCnt":%d,"fPort":1,"data":"qg==",`+
			`"object":{"temperature":%d},"rxInfo":[{"gatewayId":"0016c001f153a14c","rssi":-57,"snr":10.5}]}`,
			now.Add(-time.Minute).Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), eui, i, i%40)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}, Timeout: time.Minute}
	post := func(i int) error {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(uplink(i)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var a httpapi.Answer
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusAccepted {
			err = fmt.Errorf("uplink %d: %d %+v", i, resp.StatusCode, a)
		}
		return err
	}
	run := func(first, n int) (time.Duration, time.Duration) {
		return ingesttest.Load(b, benchClients, first, n, func() (func(int) error, func(), error) { return post, nil, nil })
	}
	warm := max(1, b.N/10)
	run(0, warm)
	b.ResetTimer()
	wall, cpu := run(warm, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/wall.Seconds(), "uplink/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "lorawan-cpu-us/uplink")
	b.ReportMetric(0, "ns/op")
}
