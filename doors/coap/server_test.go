package coap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/registry"
)

// ingestFunc adapts a function to Core (the core's side of the door).
type ingestFunc func(context.Context, ingest.Message) error

func (f ingestFunc) Ingest(ctx context.Context, r ingest.Message) error { return f(ctx, r) }

type keys map[string][]byte

func (k keys) PSK(id string) ([]byte, error) {
	if b, ok := k[id]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("no key for %q", id)
}

func start(t *testing.T, cfg Config, core Core) (udpAddr, dtlsAddr string) {
	t.Helper()
	s, err := New(cfg, core)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	u, d, err := s.Addrs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u != nil {
		udpAddr = u.String()
	}
	if d != nil {
		dtlsAddr = d.String()
	}
	return udpAddr, dtlsAddr
}

func post(t *testing.T, c *udpClient.Conn, path string, body []byte) (*pool.Message, Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Post(ctx, path, message.AppJSON, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	var r Response
	if b, _ := resp.ReadBody(); len(b) > 0 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
	}
	return resp, r
}

func dialDTLS(t *testing.T, addr, id string, key []byte) (*udpClient.Conn, error) {
	t.Helper()
	c, err := dtls.Dial(addr, dtls.NewDTLSClientOptions(
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint([]byte(id)),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
	))
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestDTLSPSK(t *testing.T) {
	var mu sync.Mutex
	var got []ingest.Message
	core := ingestFunc(func(_ context.Context, r ingest.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
		if bytes.Contains(r.Payload, []byte("NaN")) {
			return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonInvalidValue, Field: "value", Message: "value is NaN"}
		}
		return nil
	})
	_, addr := start(t, Config{DTLSAddr: "127.0.0.1:0", Keys: keys{"farm/collar-1": []byte("k1-secret-psk")}}, core)

	c, err := dialDTLS(t, addr, "farm/collar-1", []byte("k1-secret-psk"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := post(t, c, "/devices/farm/collar-1/sensor", []byte(`{"metric":"t","value":1}`))
	if resp.Code() != codes.Changed {
		t.Fatalf("code %v, want 2.04", resp.Code())
	}
	mu.Lock()
	if len(got) != 1 || got[0].Tenant != "farm" || got[0].Device != "collar-1" || got[0].Channel != "sensor" || got[0].Door != Door || !got[0].Authenticated ||
		string(got[0].Payload) != `{"metric":"t","value":1}` {
		t.Fatalf("ingested %+v", got)
	}
	mu.Unlock()

	resp, body := post(t, c, "/devices/farm/collar-1/sensor", []byte(`{"value":NaN}`))
	if resp.Code() != codes.BadRequest || body.Reason != "invalid_value" || body.Stage != "validate" || body.Field != "value" {
		t.Fatalf("refusal %v %+v", resp.Code(), body)
	}
	resp, body = post(t, c, "/devices/farm/collar-2/sensor", []byte(`{}`))
	if resp.Code() != codes.Forbidden || body.Reason != "identity_mismatch" {
		t.Fatalf("other device: %v %+v", resp.Code(), body)
	}

	// A wrong key, or an identity the key store does not know, fails the
	// DTLS handshake (pion's own client, bounded by a context: go-coap's
	// client can wait on a failed handshake past its request's context).
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, key string }{{"farm/collar-1", "wrong"}, {"farm/nobody", "k1-secret-psk"}} {
		conn, err := piondtls.DialWithOptions("udp", raddr,
			piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte(tc.key), nil }),
			piondtls.WithPSKIdentityHint([]byte(tc.id)),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8))
		if err != nil {
			continue // refused at once
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = conn.HandshakeContext(ctx)
		cancel()
		_ = conn.Close()
		if err == nil {
			t.Errorf("identity %s with key %q completed the handshake", tc.id, tc.key)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Errorf("the core saw %d requests, want 2 (none for another device, none unauthenticated)", len(got))
	}
}

func TestUDPAnswers(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	core := ingestFunc(func(ctx context.Context, r ingest.Message) error {
		calls.Add(1)
		switch r.Device {
		case "slow":
			<-release
			return nil
		case "unknown":
			return fmt.Errorf("checking: %w", registry.ErrUnknownDevice)
		case "revoked":
			return &registry.InactiveError{Key: "farm/revoked", Status: registry.StatusRevoked}
		case "stalled":
			return fmt.Errorf("kafka: %w", ingest.ErrUnavailable)
		}
		return errors.New("boom")
	})
	addr, _ := start(t, Config{UDPAddr: "127.0.0.1:0", Insecure: true, MaxPayload: 64, RetryAfter: 7 * time.Second}, core)
	c, err := udp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// 2.04 only after the core returned: nothing arrives while it waits,
	// though CoAP's retransmission timer (2-3s) runs out meanwhile, and the
	// retransmissions reach the core once.
	answered := make(chan codes.Code, 1)
	go func() {
		resp, _ := post(t, c, "/devices/farm/slow/sensor", []byte(`{}`))
		answered <- resp.Code()
	}()
	select {
	case code := <-answered:
		t.Fatalf("answered %v before the core returned", code)
	case <-time.After(4 * time.Second):
	}
	close(release)
	if code := <-answered; code != codes.Changed {
		t.Fatalf("code %v", code)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the core saw the request %d times; retransmissions must be deduplicated", n)
	}

	for _, tc := range []struct {
		path   string
		body   []byte
		code   codes.Code
		reason string
	}{
		{"/devices/farm/unknown/sensor", []byte("{}"), codes.Unauthorized, "unknown_device"},
		{"/devices/farm/revoked/sensor", []byte("{}"), codes.Forbidden, "device_revoked"},
		{"/devices/farm/stalled/sensor", []byte("{}"), codes.ServiceUnavailable, "unavailable"},
		{"/devices/farm/x/sensor", bytes.Repeat([]byte("a"), 65), codes.RequestEntityTooLarge, "payload_too_large"},
		{"/devices/farm/sensor", []byte("{}"), codes.NotFound, "unknown_topic"},
		{"/devices/fa rm/x/sensor", []byte("{}"), codes.BadRequest, "invalid_identity"},
		{"/devices/farm/boom/sensor", []byte("{}"), codes.InternalServerError, "internal_error"},
	} {
		resp, body := post(t, c, tc.path, tc.body)
		if resp.Code() != tc.code || body.Reason != tc.reason {
			t.Errorf("%s: %v %+v, want %v %s", tc.path, resp.Code(), body, tc.code, tc.reason)
		}
		if tc.code == codes.ServiceUnavailable {
			if age, err := resp.Options().GetUint32(message.MaxAge); err != nil || age != 7 {
				t.Errorf("Max-Age %d %v, want 7", age, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "/devices/farm/x/sensor")
	if err != nil || resp.Code() != codes.MethodNotAllowed {
		t.Fatalf("GET: %v %v", resp, err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "neither"},
		{Config{UDPAddr: ":5683"}, "insecure"},
		{Config{DTLSAddr: ":5684"}, "key store"},
	} {
		if _, err := New(tc.cfg, nil); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
