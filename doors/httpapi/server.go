package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
)

// Door is the ingest.Message.Door of device requests.
const Door = "http"

// Core is the part of the ingest core the door calls: Ingest returns once
// Kafka acknowledged the message's records or its dead letter (nil), or
// with an error that ingest.Classify maps to the answer.
type Core interface {
	Ingest(ctx context.Context, m ingest.Message) error
}

// BatchCore is a Core that takes a batch at once: it produces every item's
// records in order and waits for all the acknowledgements together, instead
// of one round trip per item. errs[i] is item i's result.
type BatchCore interface {
	IngestBatch(ctx context.Context, ms []ingest.Message) (errs []error)
}

// Config configures a Server. The zero value of a field is its default.
type Config struct {
	// Addr is the listen address (default 127.0.0.1:9484).
	Addr string
	// TLS, when set, serves HTTPS (and h2 over ALPN); set ClientAuth to
	// tls.RequestClientCert or tls.VerifyClientCertIfGiven to accept
	// device certificates (they are checked against the registry's
	// fingerprints, not a CA).
	TLS *tls.Config
	// MaxBody is the largest request body, bytes (default
	// decode.DefaultMaxPayload for one payload; batches get MaxBatch).
	MaxBody int64
	// MaxBatch is the largest batch body, bytes (default 4 MiB), and
	// MaxItems the most items in one batch (default 1000).
	MaxBatch int64
	MaxItems int
	// MaxInFlight bounds the requests being ingested at once (default
	// 256); one more is answered 503 at once.
	MaxInFlight int
	// Timeout bounds the wait for Kafka's acknowledgement (default 30s);
	// a request still pending then is answered 503.
	Timeout time.Duration
	// RetryAfter is the Retry-After of a 503 (default 5s).
	RetryAfter time.Duration
	// Drain bounds the graceful shutdown (default 30s).
	Drain time.Duration
	// Registerer registers the door's metrics (drover_http_*); nil = none.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:9484"
	}
	if c.MaxBody == 0 {
		c.MaxBody = decode.DefaultMaxPayload
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 4 << 20
	}
	if c.MaxItems == 0 {
		c.MaxItems = 1000
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is the HTTP door.
type Server struct {
	cfg      Config
	core     Core
	auth     *authenticator
	lora     *loraHandler
	inflight chan struct{}
	m        *metrics
	mux      *http.ServeMux

	listening chan struct{}
	addr      net.Addr
}

// New returns a Server that checks credentials against devs and hands
// messages to core.
func New(cfg Config, devs Devices, core Core, opts ...Option) (*Server, error) {
	cfg.defaults()
	if cfg.MaxInFlight < 1 || cfg.MaxItems < 1 || cfg.MaxBody < 1 || cfg.MaxBatch < cfg.MaxBody {
		return nil, fmt.Errorf("httpapi: max-in-flight, max-items and max-body must be positive and max-batch at least max-body")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, core: core, auth: newAuthenticator(devs, 100_000), inflight: make(chan struct{}, cfg.MaxInFlight),
		m: m, mux: http.NewServeMux(), listening: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.mux.HandleFunc("POST /v1/devices/{tenant}/{device}/{channel...}", s.device)
	if s.lora != nil {
		s.mux.HandleFunc("POST /v1/lorawan/{network}", s.lorawan)
	}
	return s, nil
}

// Option configures a Server.
type Option func(*Server)

// Handler returns the door's HTTP handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s.mux }

// Addr returns the bound address once Run listens.
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.listening:
		return s.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Run serves until ctx is done, then stops accepting and waits (up to
// Config.Drain) for the requests in flight to get their answers.
func (s *Server) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("httpapi: listening on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve is Run on a listener of the caller's.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(s.cfg.Log.Handler(), slog.LevelWarn)}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	if s.cfg.TLS != nil {
		srv.TLSConfig = s.cfg.TLS.Clone()
		l = tls.NewListener(l, srv.TLSConfig)
		if !containsH2(srv.TLSConfig.NextProtos) {
			srv.TLSConfig.NextProtos = append([]string{"h2", "http/1.1"}, srv.TLSConfig.NextProtos...)
		}
	}
	s.addr = l.Addr()
	close(s.listening)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.Drain)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		return fmt.Errorf("httpapi: draining: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func containsH2(p []string) bool {
	for _, x := range p {
		if x == "h2" {
			return true
		}
	}
	return false
}

// Answer is the JSON body of every answer; a batch answers with one per
// item under "items".
type Answer struct {
	Status int `json:"status"`
	ingest.Outcome
	Items []Answer `json:"items,omitempty"`
}

var statusOf = map[ingest.Kind]int{
	ingest.Accepted:        http.StatusAccepted,
	ingest.Refused:         http.StatusBadRequest,
	ingest.TooLarge:        http.StatusRequestEntityTooLarge,
	ingest.Unauthenticated: http.StatusUnauthorized,
	ingest.Forbidden:       http.StatusForbidden,
	ingest.Unavailable:     http.StatusServiceUnavailable,
	ingest.Internal:        http.StatusInternalServerError,
}

func (s *Server) write(w http.ResponseWriter, a Answer) {
	switch a.Status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter/time.Second)))
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.Status)
	if b, ok := appendPlain(make([]byte, 0, 32+16*len(a.Items)), a); ok {
		_, _ = w.Write(b)
	} else {
		_ = json.NewEncoder(w).Encode(a)
	}
	s.m.request(a.Status)
}

// appendPlain appends a's JSON, as json.Encoder writes it, when a and its
// items carry a status alone (an accepted batch), the common answer, without
// reflection; ok is false for any other answer.
func appendPlain(b []byte, a Answer) (_ []byte, ok bool) {
	if a.Outcome != (ingest.Outcome{Kind: a.Kind}) {
		return b, false
	}
	for _, it := range a.Items {
		if it.Outcome != (ingest.Outcome{Kind: it.Kind}) || it.Items != nil {
			return b, false
		}
	}
	b = append(b, `{"status":`...)
	b = strconv.AppendInt(b, int64(a.Status), 10)
	if len(a.Items) > 0 {
		b = append(b, `,"items":[`...)
		for i, it := range a.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"status":`...)
			b = strconv.AppendInt(b, int64(it.Status), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "}\n"...), true
}

func (s *Server) outcome(err error) Answer {
	a := s.answer(err)
	s.m.item(a.Kind)
	return a
}

// answer is outcome without counting the item (a batch counts its items
// by kind once they are all answered).
func (s *Server) answer(err error) Answer {
	o := ingest.Classify(err)
	if o.Kind == ingest.Internal {
		s.cfg.Log.Error("httpapi: ingest failed", "err", err)
	}
	return Answer{Status: statusOf[o.Kind], Outcome: o}
}

var kindName = map[ingest.Kind]string{
	ingest.Accepted: "accepted", ingest.Refused: "refused", ingest.TooLarge: "too_large",
	ingest.Unauthenticated: "unauthenticated", ingest.Forbidden: "forbidden",
	ingest.Unavailable: "unavailable", ingest.Internal: "internal",
}

// acquire takes an in-flight slot, or answers 503 and returns false.
func (s *Server) acquire(w http.ResponseWriter) bool {
	select {
	case s.inflight <- struct{}{}:
		s.m.inflight.Inc()
		return true
	default:
		s.m.shed.Inc()
		s.write(w, Answer{Status: http.StatusServiceUnavailable, Outcome: ingest.Outcome{Kind: ingest.Unavailable,
			Reason: string(ingest.ReasonUnavailable), Message: fmt.Sprintf("%d requests in flight; retry later", s.cfg.MaxInFlight)}})
		return false
	}
}

func (s *Server) release() {
	<-s.inflight
	s.m.inflight.Dec()
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	tenant, device, channel := r.PathValue("tenant"), r.PathValue("device"), r.PathValue("channel")
	if err := identity.Validate(tenant, device); err != nil {
		s.write(w, Answer{Status: http.StatusBadRequest, Outcome: ingest.Outcome{Kind: ingest.Refused,
			Reason: string(decode.ReasonBadIdentity), Stage: string(decode.StageRoute), Message: err.Error()}})
		return
	}
	if ae := s.auth.check(r, tenant, device); ae != nil {
		s.write(w, Answer{Status: statusOf[ae.kind], Outcome: ingest.Outcome{Kind: ae.kind, Reason: ae.reason, Message: ae.message}})
		return
	}
	if !s.acquire(w) {
		return
	}
	defer s.release()
	msg := ingest.Message{Door: Door, Tenant: tenant, Device: device, Channel: channel, Authenticated: true}
	if isBatch(r) {
		s.batch(w, r, msg)
		return
	}
	body, ok := s.read(w, r, s.cfg.MaxBody)
	if !ok {
		return
	}
	msg.Payload, msg.ReceivedAt = body, s.cfg.Now()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	s.write(w, s.outcome(s.core.Ingest(ctx, msg)))
}
