package coap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
)

// PathPrefix is the first path segment of an ingest request.
const PathPrefix = "devices"

// Core is the part of the ingest core the door calls: Ingest returns once
// Kafka acknowledged the message's records or its dead letter (nil), or
// with an error that ingest.Classify maps to the answer.
type Core interface {
	Ingest(ctx context.Context, m ingest.Message) error
}

// Door is the ingest.Message.Door of CoAP requests.
const Door = "coap"

// KeyStore returns the DTLS pre-shared key of the device whose key
// ("tenant/device") is identity, or an error when there is none.
type KeyStore interface {
	PSK(identity string) ([]byte, error)
}

// Config configures a Server.
type Config struct {
	// UDPAddr is the plain CoAP listen address; "" = none. Plain UDP carries
	// no identity and needs Insecure.
	UDPAddr string
	// DTLSAddr is the CoAP-over-DTLS listen address; "" = none.
	DTLSAddr string
	// Keys answers DTLS PSK lookups; required with DTLSAddr.
	Keys KeyStore
	// Insecure allows plain UDP (drover dev).
	Insecure bool
	// MaxPayload is the largest request body, bytes (default decode.DefaultMaxPayload).
	MaxPayload int
	// RetryAfter is the Max-Age of a 5.03 answer (default 5s).
	RetryAfter time.Duration
	// Timeout bounds one Ingest call (default 30s); a request still
	// pending then is answered 5.03.
	Timeout time.Duration
	Log     *slog.Logger
}

func (c *Config) validate() error {
	if c.UDPAddr == "" && c.DTLSAddr == "" {
		return errors.New("coap: neither a UDP nor a DTLS address")
	}
	if c.UDPAddr != "" && !c.Insecure {
		return errors.New("coap: plain UDP carries no device identity; use DTLS or allow it with insecure")
	}
	if c.DTLSAddr != "" && c.Keys == nil {
		return errors.New("coap: DTLS needs a key store")
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = decode.DefaultMaxPayload
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// Server serves the CoAP door.
type Server struct {
	cfg  Config
	core Core

	mu        sync.Mutex
	udpAddr   net.Addr
	dtlsAddr  net.Addr
	listening chan struct{}
}

// New returns a Server that hands requests to core.
func New(cfg Config, core Core) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, core: core, listening: make(chan struct{})}, nil
}

// Addrs returns the bound UDP and DTLS addresses (nil when not served),
// once Run listens.
func (s *Server) Addrs(ctx context.Context) (udpAddr, dtlsAddr net.Addr, err error) {
	select {
	case <-s.listening:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpAddr, s.dtlsAddr, nil
}

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	router := mux.NewRouter()
	router.DefaultHandleFunc(s.handle)
	var stops []func()
	errc := make(chan error, 2)
	if s.cfg.UDPAddr != "" {
		l, err := coapnet.NewListenUDP("udp", s.cfg.UDPAddr)
		if err != nil {
			return fmt.Errorf("coap: listening on %s: %w", s.cfg.UDPAddr, err)
		}
		defer l.Close()
		srv := udp.NewServer(options.WithMux(router), options.WithMaxMessageSize(uint32(s.cfg.MaxPayload+1024)))
		stops = append(stops, srv.Stop)
		s.mu.Lock()
		s.udpAddr = l.LocalAddr()
		s.mu.Unlock()
		go func() { errc <- srv.Serve(l) }()
	}
	if s.cfg.DTLSAddr != "" {
		l, err := coapnet.NewDTLSListener("udp", s.cfg.DTLSAddr, coapnet.NewDTLSServerOptions(
			piondtls.WithPSK(func(id []byte) ([]byte, error) { return s.cfg.Keys.PSK(string(id)) }),
			piondtls.WithPSKIdentityHint([]byte("drover")),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		))
		if err != nil {
			return fmt.Errorf("coap: listening on %s (DTLS): %w", s.cfg.DTLSAddr, err)
		}
		defer l.Close()
		srv := dtls.NewServer(options.WithMux(router), options.WithMaxMessageSize(uint32(s.cfg.MaxPayload+1024)))
		stops = append(stops, srv.Stop)
		s.mu.Lock()
		s.dtlsAddr = l.Addr()
		s.mu.Unlock()
		go func() { errc <- srv.Serve(l) }()
	}
	close(s.listening)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, stop := range stops {
		stop()
	}
	return err
}

// Response is the JSON body of a refusal.
type Response = ingest.Outcome

func (s *Server) handle(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.POST {
		s.reply(w, codes.MethodNotAllowed, Response{Reason: "method_not_allowed", Message: "only POST is accepted"})
		return
	}
	path, err := r.Options().Path()
	if err != nil {
		s.reply(w, codes.NotFound, Response{Reason: string(decode.ReasonUnknownTopic), Message: "no path"})
		return
	}
	req, resp, code := parsePath(path)
	if code != 0 {
		s.reply(w, code, resp)
		return
	}
	if id, ok := dtlsIdentity(w.Conn().NetConn()); ok {
		if id != identity.Key(req.Tenant, req.Device) {
			s.reply(w, codes.Forbidden, Response{Reason: string(ingest.ReasonIdentityMismatch), Message: fmt.Sprintf("the DTLS identity %q may not post for %s", id, identity.Key(req.Tenant, req.Device))})
			return
		}
		req.Authenticated = true
	}
	body := r.Body()
	if body != nil {
		req.Payload, err = io.ReadAll(io.LimitReader(body, int64(s.cfg.MaxPayload)+1))
		if err != nil {
			s.reply(w, codes.BadRequest, Response{Reason: string(decode.ReasonEmptyPayload), Message: err.Error()})
			return
		}
	}
	if len(req.Payload) > s.cfg.MaxPayload {
		s.reply(w, codes.RequestEntityTooLarge, Response{Reason: string(decode.ReasonPayloadTooLarge), Stage: string(decode.StageDecode),
			Message: fmt.Sprintf("payload is over the limit of %d bytes", s.cfg.MaxPayload)})
		return
	}
	req.ReceivedAt = time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	s.answer(w, s.core.Ingest(ctx, req))
}

// parsePath splits /devices/{tenant}/{device}/{channel...}.
func parsePath(path string) (ingest.Message, Response, codes.Code) {
	parts := strings.SplitN(strings.Trim(path, "/"), "/", 4)
	if len(parts) < 4 || parts[0] != PathPrefix || parts[3] == "" {
		return ingest.Message{}, Response{Reason: string(decode.ReasonUnknownTopic), Stage: string(decode.StageRoute),
			Message: fmt.Sprintf("path %q is not /%s/{tenant}/{device}/{channel}", path, PathPrefix)}, codes.NotFound
	}
	if err := identity.Validate(parts[1], parts[2]); err != nil {
		return ingest.Message{}, Response{Reason: string(decode.ReasonBadIdentity), Stage: string(decode.StageRoute), Message: err.Error()}, codes.BadRequest
	}
	return ingest.Message{Door: Door, Tenant: parts[1], Device: parts[2], Channel: parts[3]}, Response{}, 0
}

func dtlsIdentity(c net.Conn) (string, bool) {
	dc, ok := c.(*piondtls.Conn)
	if !ok {
		return "", false
	}
	st, ok := dc.ConnectionState()
	if !ok {
		return "", false
	}
	return string(st.IdentityHint), true
}

// answer maps the core's result to a CoAP response.
func (s *Server) answer(w mux.ResponseWriter, err error) {
	o := ingest.Classify(err)
	switch o.Kind {
	case ingest.Accepted:
		if e := w.SetResponse(codes.Changed, message.TextPlain, nil); e != nil {
			s.cfg.Log.Warn("coap: answering", "err", e)
		}
	case ingest.Unavailable:
		s.replyRetry(w, o)
	case ingest.Internal:
		s.cfg.Log.Error("coap: ingest failed", "err", err)
		s.reply(w, codes.InternalServerError, o)
	default:
		s.reply(w, codeOf[o.Kind], o)
	}
}

var codeOf = map[ingest.Kind]codes.Code{
	ingest.Refused:         codes.BadRequest,
	ingest.TooLarge:        codes.RequestEntityTooLarge,
	ingest.Unauthenticated: codes.Unauthorized,
	ingest.Forbidden:       codes.Forbidden,
}

func (s *Server) reply(w mux.ResponseWriter, code codes.Code, r Response) {
	b, _ := json.Marshal(r)
	if err := w.SetResponse(code, message.AppJSON, bytes.NewReader(b)); err != nil {
		s.cfg.Log.Warn("coap: answering", "err", err)
	}
}

func (s *Server) replyRetry(w mux.ResponseWriter, r Response) {
	b, _ := json.Marshal(r)
	secs := uint32(s.cfg.RetryAfter / time.Second)
	if err := w.SetResponse(codes.ServiceUnavailable, message.AppJSON, bytes.NewReader(b), message.Option{ID: message.MaxAge, Value: encodeUint(secs)}); err != nil {
		s.cfg.Log.Warn("coap: answering", "err", err)
	}
}

func encodeUint(v uint32) []byte {
	var b []byte
	for v > 0 {
		b = append([]byte{byte(v)}, b...)
		v >>= 8
	}
	return b
}
