package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/lorawan"
	"github.com/drover-iot/drover/registry"
)

// coreFunc adapts a function to Core (the ingest core's side of the door).
type coreFunc func(context.Context, ingest.Message) error

func (f coreFunc) Ingest(ctx context.Context, m ingest.Message) error { return f(ctx, m) }

// reg is a registry view over a fixed set of devices.
type reg struct {
	byKey, byCert, byAlt map[string]*registry.Device
}

func (r reg) DeviceByKey(k string) (*registry.Device, bool)   { d, ok := r.byKey[k]; return d, ok }
func (r reg) DeviceByCert(fp string) (*registry.Device, bool) { d, ok := r.byCert[fp]; return d, ok }
func (r reg) DeviceByAltID(kind, v string) (*registry.Device, bool) {
	d, ok := r.byAlt[kind+"="+v]
	return d, ok
}

var secretHash = func() *registry.SecretHash {
	h, err := registry.HashSecret("s3cret")
	if err != nil {
		panic(err)
	}
	return h
}()

func devices() reg {
	r := reg{byKey: map[string]*registry.Device{}, byCert: map[string]*registry.Device{}, byAlt: map[string]*registry.Device{}}
	for _, d := range []*registry.Device{
		{Tenant: "farm", ID: "collar-1", Status: registry.StatusActive, Secret: secretHash},
		{Tenant: "farm", ID: "collar-2", Status: registry.StatusActive, Secret: secretHash},
		{Tenant: "farm", ID: "old", Status: registry.StatusRevoked, Secret: secretHash},
	} {
		r.byKey[d.Key()] = d
	}
	return r
}

type door struct {
	url    string
	client *http.Client
	stop   func()
}

func serve(t *testing.T, cfg Config, devs Devices, core Core, opts ...Option) *door {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg, devs, core, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	d := &door{url: "http://" + addr.String(), client: &http.Client{Timeout: 30 * time.Second}}
	d.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(d.stop)
	return d
}

func (d *door) post(t *testing.T, path, auth, ctype, body string) (*http.Response, Answer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var a Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("POST %s: %d, body: %v", path, resp.StatusCode, err)
	}
	if a.Status != resp.StatusCode {
		t.Errorf("body status %d, HTTP status %d", a.Status, resp.StatusCode)
	}
	return resp, a
}

// refuse refuses payloads with "NaN" as the core would (invalid_value) and
// accepts the rest.
func refuse(_ context.Context, m ingest.Message) error {
	if bytes.Contains(m.Payload, []byte("NaN")) {
		return &decode.Error{Stage: decode.StageValidate, Reason: decode.ReasonInvalidValue, Field: "value", Message: "value is NaN"}
	}
	return nil
}

func TestAuthAndAnswers(t *testing.T) {
	var mu sync.Mutex
	var got []ingest.Message
	d := serve(t, Config{MaxBody: 64}, devices(), coreFunc(func(ctx context.Context, m ingest.Message) error {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		return refuse(ctx, m)
	}))
	for _, tc := range []struct {
		name, path, auth, body string
		status                 int
		reason                 string
	}{
		{"accepted", "/v1/devices/farm/collar-1/sensor", "s3cret", `{"metric":"t","value":1}`, 202, ""},
		{"media channel", "/v1/devices/farm/collar-1/media/image2d", "s3cret", `{}`, 202, ""},
		{"refused", "/v1/devices/farm/collar-1/sensor", "s3cret", `{"value":NaN}`, 400, "invalid_value"},
		{"no credentials", "/v1/devices/farm/collar-1/sensor", "", `{}`, 401, "unauthenticated"},
		{"wrong secret", "/v1/devices/farm/collar-1/sensor", "nope", `{}`, 401, "unauthenticated"},
		{"unknown device", "/v1/devices/farm/ghost/sensor", "s3cret", `{}`, 401, "unknown_device"},
		{"revoked", "/v1/devices/farm/old/sensor", "s3cret", `{}`, 403, "device_revoked"},
		{"too large", "/v1/devices/farm/collar-1/sensor", "s3cret", strings.Repeat("x", 65), 413, "payload_too_large"},
		{"bad identity", "/v1/devices/farm/-x/sensor", "s3cret", `{}`, 400, "invalid_identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, a := d.post(t, tc.path, tc.auth, "application/json", tc.body)
			if resp.StatusCode != tc.status || a.Reason != tc.reason {
				t.Fatalf("%d %+v, want %d %q", resp.StatusCode, a, tc.status, tc.reason)
			}
			if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.reason == "invalid_value" && (a.Stage != "validate" || a.Field != "value") {
				t.Errorf("refusal %+v", a)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0].Tenant != "farm" || got[0].Device != "collar-1" || got[0].Channel != "sensor" ||
		got[1].Channel != "media/image2d" || got[0].Door != Door || !got[0].Authenticated || got[0].ReceivedAt.IsZero() {
		t.Fatalf("core saw %+v", got)
	}
}

// 202 only once the core returned; a full in-flight bound and a core that
// does not answer in time are 503 with Retry-After; a shutdown waits for
// the request in flight.
func TestAckBoundAndDrain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	d := serve(t, Config{MaxInFlight: 1, RetryAfter: 9 * time.Second, Timeout: 20 * time.Second}, devices(),
		coreFunc(func(ctx context.Context, m ingest.Message) error {
			if m.Device == "collar-2" {
				<-ctx.Done()
				return ctx.Err()
			}
			entered <- struct{}{}
			<-release
			return nil
		}))
	first := make(chan int, 1)
	go func() {
		resp, _ := d.post(t, "/v1/devices/farm/collar-1/sensor", "s3cret", "", `{}`)
		first <- resp.StatusCode
	}()
	<-entered
	resp, a := d.post(t, "/v1/devices/farm/collar-1/sensor", "s3cret", "", `{}`)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "9" || a.Reason != "unavailable" {
		t.Fatalf("over the bound: %d %q %+v", resp.StatusCode, resp.Header.Get("Retry-After"), a)
	}
	select {
	case code := <-first:
		t.Fatalf("answered %d before the core returned", code)
	case <-time.After(300 * time.Millisecond):
	}
	stopped := make(chan struct{})
	go func() { d.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("shutdown did not wait for the request in flight")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if code := <-first; code != 202 {
		t.Fatalf("drained request: %d", code)
	}
	<-stopped

	d = serve(t, Config{Timeout: 200 * time.Millisecond}, devices(), coreFunc(func(ctx context.Context, m ingest.Message) error {
		<-ctx.Done()
		return fmt.Errorf("waiting for kafka: %w", ctx.Err())
	}))
	if resp, a := d.post(t, "/v1/devices/farm/collar-2/sensor", "s3cret", "", `{}`); resp.StatusCode != 503 || a.Reason != "unavailable" {
		t.Fatalf("timeout: %d %+v", resp.StatusCode, a)
	}
}

func TestBatch(t *testing.T) {
	var calls atomic.Int32
	mreg := prometheus.NewRegistry()
	d := serve(t, Config{MaxBody: 32, MaxItems: 3, Registerer: mreg}, devices(), coreFunc(func(ctx context.Context, m ingest.Message) error {
		calls.Add(1)
		return refuse(ctx, m)
	}))
	resp, a := d.post(t, "/v1/devices/farm/collar-1/sensor?batch=true", "s3cret", "application/json", `[{"v":1},{"v":NaN}]`)
	if resp.StatusCode != 400 || a.Reason != "not_json" {
		t.Fatalf("NaN is not JSON: the array cannot be split: %d %+v", resp.StatusCode, a)
	}
	resp, a = d.post(t, "/v1/devices/farm/collar-1/sensor?batch=true", "s3cret", "application/json", `[{"v":1},{"v":2}]`)
	if resp.StatusCode != 202 || len(a.Items) != 2 || a.Items[0].Status != 202 || a.Items[1].Status != 202 {
		t.Fatalf("array: %d %+v", resp.StatusCode, a)
	}
	body := "{\"v\":1}\n\n{\"v\":NaN}\n" + `{"v":"` + strings.Repeat("x", 40) + `"}` + "\n"
	resp, a = d.post(t, "/v1/devices/farm/collar-1/sensor", "s3cret", NDJSON, body)
	if resp.StatusCode != 207 || len(a.Items) != 3 || a.Items[0].Status != 202 || a.Items[1].Reason != "invalid_value" || a.Items[2].Status != 413 {
		t.Fatalf("ndjson: %d %+v", resp.StatusCode, a)
	}
	if resp, a = d.post(t, "/v1/devices/farm/collar-1/sensor", "s3cret", NDJSON, "{}\n{}\n{}\n{}\n"); resp.StatusCode != 413 {
		t.Fatalf("4 items over 3: %d %+v", resp.StatusCode, a)
	}
	if resp, a = d.post(t, "/v1/devices/farm/collar-1/sensor?batch=true", "s3cret", "", `[]`); resp.StatusCode != 400 || a.Reason != "no_records" {
		t.Fatalf("empty: %d %+v", resp.StatusCode, a)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("core calls %d, want 4", n)
	}
	// Items counted by outcome (a batch counts them per kind at its end):
	// the array's two and the NDJSON's first accepted, its NaN refused.
	items := map[string]float64{}
	mfs, err := mreg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "drover_http_items_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					items[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if items["accepted"] != 3 || items["refused"] != 1 || len(items) != 2 {
		t.Errorf("drover_http_items_total = %v, want accepted 3, refused 1", items)
	}
}

// HTTP/2 in the clear (h2c) and over TLS, with a client certificate the
// registry lists for the device.
func TestHTTP2AndClientCert(t *testing.T) {
	d := serve(t, Config{}, devices(), coreFunc(refuse))
	h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	d.client = h2c
	resp, _ := d.post(t, "/v1/devices/farm/collar-1/sensor", "s3cret", "", `{}`)
	if resp.StatusCode != 202 || resp.ProtoMajor != 2 {
		t.Fatalf("h2c: %d %s", resp.StatusCode, resp.Proto)
	}

	serverCert, _ := selfSigned(t, "localhost")
	clientCert, fp := selfSigned(t, "collar-1")
	devs := devices()
	devs.byCert[fp] = devs.byKey["farm/collar-1"]
	d = serve(t, Config{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert}}, devs, coreFunc(refuse))
	pool := x509.NewCertPool()
	pool.AddCert(serverCert.Leaf)
	d.url = strings.Replace(d.url, "http://", "https://", 1)
	d.client = &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}}}}
	resp, a := d.post(t, "/v1/devices/farm/collar-1/sensor", "", "", `{}`)
	if resp.StatusCode != 202 || resp.ProtoMajor != 2 {
		t.Fatalf("client certificate over h2: %d %s %+v", resp.StatusCode, resp.Proto, a)
	}
	if resp, a = d.post(t, "/v1/devices/farm/collar-2/sensor", "", "", `{}`); resp.StatusCode != 403 || a.Reason != "identity_mismatch" {
		t.Fatalf("another device's certificate: %d %+v", resp.StatusCode, a)
	}
}

func selfSigned(t *testing.T, cn string) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, registry.Fingerprint(der)
}

func TestLoRaWAN(t *testing.T) {
	var mu sync.Mutex
	var got []ingest.Message
	accept := true
	d := serve(t, Config{}, devices(), coreFunc(func(ctx context.Context, m ingest.Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if !accept {
			return &decode.Error{Stage: decode.StageRoute, Reason: ingest.ReasonUnknownDevice, Message: "DevEUI 0101010101010101 is not registered"}
		}
		return nil
	}), WithLoRaWAN(LoRaWAN{Tokens: map[lorawan.Network]string{lorawan.ChirpStack: "cs-token", lorawan.TTS: "tts-token"},
		Dedup: lorawan.NewDedup(time.Minute, 1000)}))
	up, err := os.ReadFile("../../ingest/lorawan/testdata/chirpstack-up.json")
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := d.post(t, "/v1/lorawan/chirpstack?event=up", "tts-token", "", string(up)); resp.StatusCode != 401 {
		t.Fatalf("another network's token: %d", resp.StatusCode)
	}
	if resp, a := d.post(t, "/v1/lorawan/chirpstack?event=up", "cs-token", "", string(up)); resp.StatusCode != 202 {
		t.Fatalf("up: %d %+v", resp.StatusCode, a)
	}
	if resp, a := d.post(t, "/v1/lorawan/chirpstack?event=up", "cs-token", "", string(up)); resp.StatusCode != 200 || a.Reason != "duplicate" {
		t.Fatalf("the same frame again: %d %+v", resp.StatusCode, a)
	}
	if resp, a := d.post(t, "/v1/lorawan/chirpstack?event=txack", "cs-token", "", `{}`); resp.StatusCode != 200 || a.Reason != "ignored" {
		t.Fatalf("txack: %d %+v", resp.StatusCode, a)
	}
	mu.Lock()
	accept = false
	mu.Unlock()
	join, _ := os.ReadFile("../../ingest/lorawan/testdata/tts-join.json")
	if resp, a := d.post(t, "/v1/lorawan/tts", "tts-token", "", string(join)); resp.StatusCode != 200 || a.Reason != "unknown_device" {
		t.Fatalf("refused join: %d %+v", resp.StatusCode, a)
	}
	if resp, a := d.post(t, "/v1/lorawan/tts", "tts-token", "", `{not json`); resp.StatusCode != 200 || a.Reason != "unknown_device" {
		t.Fatalf("a body the door cannot parse still goes to the core for its dead letter: %d %+v", resp.StatusCode, a)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0].Channel != "lorawan/chirpstack/up" || got[0].Door != LoRaWANDoor || got[0].Tenant != "" || got[1].Channel != "lorawan/tts" {
		t.Fatalf("core saw %+v", got)
	}
}
