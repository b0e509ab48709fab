package smoke

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	coapmsg "github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// The CoAP fixture: one reading of coapMetric, posted confirmable to the
// CoAP door as the run's CoAP device.
const (
	coapMetric = "smoke.coap"
	coapValue  = 11.0
)

// The LoRaWAN fixture: one ChirpStack v4 uplink (?event=up) of the run's
// LoRaWAN device, named by its DevEUI, whose decoded object carries
// loraMetric; the network server's RSSI becomes a reading of its own.
const (
	loraMetric = "smoke_lora"
	loraValue  = 21.5
	loraRSSI   = -57.0
)

// devEUI is the run's LoRaWAN device's DevEUI: 16 hex digits derived from
// the tenant and the run id, so that runs do not collide in the registry.
func devEUI(tenant, run string) string {
	h := sha256.Sum256([]byte("drover smoke " + tenant + "/" + run))
	return hex.EncodeToString(h[:8])
}

// coapPath is the CoAP door's path of the run's CoAP device's readings.
func coapPath(p *plan) string { return "/devices/" + p.tenant + "/" + p.coap + "/sensor" }

// postCoAP posts one reading through the CoAP door (drover coap, plain
// CoAP in drover dev: the registry checks the path's device): 2.04 means
// Kafka has it.
func postCoAP(ctx context.Context, c Config, p *plan, cl *Checklist) {
	name := "coap: POST " + coapPath(p) + " → 2.04"
	switch {
	case c.CoAPURL == "":
		cl.Add(Result{Name: name, Status: Skip, Detail: "no DROVER_COAP_URL: the stack runs no CoAP door"})
		return
	case p.secrets == nil:
		cl.Add(Result{Name: name, Status: Skip, Detail: "the run registered no devices (no device registry), and the door admits registered devices only"})
		return
	}
	u, err := url.Parse(c.CoAPURL)
	if err != nil || u.Scheme != "coap" || u.Host == "" {
		cl.Add(Result{Name: name, Status: Fail, Detail: fmt.Sprintf("DROVER_COAP_URL %q: want coap://HOST:PORT", c.CoAPURL)})
		return
	}
	start := time.Now()
	conn, err := udp.Dial(u.Host)
	if err != nil {
		cl.Add(Result{Name: name, Status: Fail, Detail: err.Error()})
		return
	}
	defer conn.Close()
	body := fmt.Sprintf(`{"ts":%d,"metric":%q,"value":%v}`, p.now.UnixMilli(), coapMetric, coapValue)
	var detail string
	// As for HTTP: the door's registry view may learn of the run's devices
	// a moment after they were registered (4.01 is retried for up to 20 s).
	for attempt := 0; attempt < 40; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := conn.Post(rctx, coapPath(p), coapmsg.AppJSON, strings.NewReader(body))
		cancel()
		if err != nil {
			detail = err.Error()
			break
		}
		if resp.Code() == codes.Changed {
			cl.Add(Result{Name: name, Status: Pass, Took: time.Since(start)})
			return
		}
		answer, _ := resp.ReadBody()
		detail = resp.Code().String() + " " + string(answer)
		if resp.Code() != codes.Unauthorized {
			break
		}
		select {
		case <-ctx.Done():
			attempt = 40
		case <-time.After(500 * time.Millisecond):
		}
	}
	cl.Add(Result{Name: name, Status: Fail, Detail: detail})
}

// chirpStackUp is the run's LoRaWAN uplink: the shape of ChirpStack v4's
// HTTP integration event (ingest/lorawan/testdata/chirpstack-up.json,
// from ChirpStack's documentation) with the run's DevEUI, time and
// decoded object.
func chirpStackUp(p *plan) []byte {
	ev := map[string]any{
		"deduplicationId": "smoke-" + p.run,
		"time":            p.now.Format(time.RFC3339Nano),
		"deviceInfo":      map[string]any{"deviceName": p.lora, "devEui": p.loraEUI},
		"devAddr":         "00189440",
		"fCnt":            1,
		"fPort":           1,
		"data":            "qg==",
		"object":          map[string]any{loraMetric: loraValue},
		"rxInfo":          []map[string]any{{"gatewayId": "0016c001f153a14c", "rssi": loraRSSI, "snr": 10.5}},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // a fixed, valid document
	}
	return b
}

// postLoRaWAN posts the run's uplink to the HTTP door's ChirpStack
// webhook with drover dev's webhook token: 202 means Kafka has it.
func postLoRaWAN(ctx context.Context, c Config, p *plan, cl *Checklist) {
	const path = "/v1/lorawan/chirpstack?event=up"
	name := "lorawan: POST " + path + " (DevEUI " + p.loraEUI + ") → 202"
	switch {
	case c.HTTPURL == "" || c.LoRaWANToken == "":
		cl.Add(Result{Name: name, Status: Skip, Detail: "no DROVER_HTTP_URL or DROVER_DEV_LORAWAN_TOKEN_FILE: the stack serves no LoRaWAN webhook"})
		return
	case p.secrets == nil:
		cl.Add(Result{Name: name, Status: Skip, Detail: "the run registered no devices (no device registry), and a DevEUI resolves through the registry only"})
		return
	}
	start := time.Now()
	body := chirpStackUp(p)
	var detail string
	// A refused webhook is answered 200 with its outcome (a network server
	// cannot correct it): unknown_device while the door's registry view
	// has not caught up is retried for up to 20 s.
	for attempt := 0; attempt < 40; attempt++ {
		code, answer := postWebhook(ctx, strings.TrimSuffix(c.HTTPURL, "/")+path, c.LoRaWANToken, body)
		if code == http.StatusAccepted {
			cl.Add(Result{Name: name, Status: Pass, Took: time.Since(start)})
			return
		}
		detail = fmt.Sprint(code) + " " + answer
		if code != http.StatusOK || !strings.Contains(answer, string(ingest.ReasonUnknownDevice)) {
			break
		}
		select {
		case <-ctx.Done():
			attempt = 40
		case <-time.After(500 * time.Millisecond):
		}
	}
	cl.Add(Result{Name: name, Status: Fail, Detail: detail})
}

func postWebhook(ctx context.Context, url, token string, body []byte) (int, string) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(http.MaxBytesReader(nil, resp.Body, 4096))
	return resp.StatusCode, b.String()
}

// checkLPWAN checks the CoAP and LoRaWAN doors' readings on raw.sensor,
// with their drover.door headers; the database check then finds their
// rows (the devices are the run's).
func checkLPWAN(w *waiter, c Config, p *plan, col *collector) {
	reading := func(dev, metric string, want float64, door string) func() string {
		return func() string {
			for _, r := range col.snapshot(topics.RawSensor) {
				v, ok := r.Value.(*schemas.SensorReading)
				if !ok || v.DeviceID != dev || v.Metric != metric {
					continue
				}
				if v.Value != want || v.Tenant != p.tenant || r.Headers[ingest.HeaderDoor] != door {
					return fmt.Sprintf("reading %+v headers %v: want value %v, tenant %s, header %s=%s", v, r.Headers, want, p.tenant, ingest.HeaderDoor, door)
				}
				return ""
			}
			return fmt.Sprintf("no reading %s of %s", metric, dev)
		}
	}
	if c.CoAPURL != "" && p.secrets != nil {
		w.check(fmt.Sprintf("coap: the reading posted as %s → %s (door coap)", p.coap, topics.RawSensor),
			reading(p.coap, coapMetric, coapValue, "coap"))
	}
	if c.HTTPURL != "" && c.LoRaWANToken != "" && p.secrets != nil {
		w.check(fmt.Sprintf("lorawan: the uplink of DevEUI %s → %s as %s (door lorawan)", p.loraEUI, topics.RawSensor, p.lora),
			reading(p.lora, loraMetric, loraValue, ingest.LoRaWAN))
		w.check(fmt.Sprintf("lorawan: the uplink's RSSI → %s %s", topics.RawSensor, lorawan.MetricRSSI),
			reading(p.lora, lorawan.MetricRSSI, loraRSSI, ingest.LoRaWAN))
	}
}
