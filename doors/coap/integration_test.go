package coap_test

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/drover-iot/drover/doors/coap"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationCoAPDoor: the CoAP door over DTLS on the embedded stack,
// with a go-coap client whose pre-shared key it derives from its secret as
// the registry does: a reading lands on raw.sensor, every bad input of the
// shared table gets the MQTT reason (4.xx) and a dead letter.
func TestIntegrationCoAPDoor(t *testing.T) {
	e := ingesttest.New(t)
	secrets := e.Devices(t)
	s, err := coap.New(coap.Config{DTLSAddr: "127.0.0.1:0", Keys: coap.RegistryKeys{Devices: e.View}}, e.Core)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	_, addr, err := s.Addrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(dev string) func(path string, body []byte) (codes.Code, ingest.Outcome) {
		d, _ := e.View.Device(ingesttest.Tenant, dev)
		key, err := pbkdf2.Key(sha512.New, secrets[dev], d.Secret.Salt, d.Secret.Iterations, len(d.Secret.Hash))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dtls.Dial(addr.String(), dtls.NewDTLSClientOptions(
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithPSKIdentityHint([]byte(ingesttest.Tenant+"/"+dev)),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return func(path string, body []byte) (codes.Code, ingest.Outcome) {
			rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer rcancel()
			resp, err := c.Post(rctx, path, message.AppJSON, bytes.NewReader(body))
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			var o ingest.Outcome
			if b, _ := resp.ReadBody(); len(b) > 0 {
				_ = json.Unmarshal(b, &o)
			}
			return resp.Code(), o
		}
	}
	post := dial(ingesttest.Registered)
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if code, o := post("/devices/farm/collar-1/sensor", []byte(`{"metric":"t","value":1,"ts":`+ts+`}`)); code != codes.Changed {
		t.Fatalf("valid: %v %+v", code, o)
	}
	if got := e.Consume(t, topics.RawSensor, 1, 10*time.Second); len(got) != 1 {
		t.Fatalf("raw.sensor: %d records", len(got))
	}
	letters := 0
	for _, tc := range ingesttest.BadInputs() {
		if tc.Device == ingesttest.Unknown {
			continue // no key, no handshake: nothing to answer
		}
		p := post
		dev := ingesttest.Registered
		if tc.Device != "" {
			dev = tc.Device
		}
		if tc.Device == ingesttest.Revoked {
			// A revoked device has no key any more: its handshake fails.
			continue
		}
		code, o := p("/devices/farm/"+dev+"/"+tc.Channel, []byte(tc.Payload))
		if o.Reason != string(tc.Reason) || code >= codes.InternalServerError || code < codes.BadRequest {
			t.Errorf("%s: %v %+v, want 4.xx with reason %s", tc.Name, code, o, tc.Reason)
		}
		if !tc.DoorMayRefuse {
			letters++
		}
	}
	dls := e.DeadLetters(t, e.Consume(t, topics.DLQ, letters+1, 5*time.Second))
	if len(dls) != letters {
		t.Fatalf("%d dead letters, want %d", len(dls), letters)
	}
	for _, dl := range dls {
		if dl.Headers[ingest.HeaderDoor] != coap.Door {
			t.Errorf("dead letter door %q", dl.Headers[ingest.HeaderDoor])
		}
	}
}
