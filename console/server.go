package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Server is the console. Build it with New, serve Handler (or call Run).
// Its methods are safe for concurrent use.
type Server struct {
	cfg  Config
	kc   *kgo.Client // the console's own client: cfg.Kafka's options plus the request counter
	adm  *kadm.Client
	http *http.Client
	hub  *hub
	// devreg is the device registry's view, run while pages read it.
	devreg *devreg
	mux    *http.ServeMux

	metrics *metrics

	counts    *memo[[]TableStat]
	catalogue *memo[[]CatalogueTopic]
	topicInfo *memo[TopicDetail]
	letters   *memo[LetterList]
	devices   *memo[[]Device]
	device    *memo[DeviceDetail]
	alerts    *memo[[]AlertRow]
}

// New builds a console over cfg's clients.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	kc, err := kgo.NewClient(append(cfg.Kafka.Opts(), kgo.WithHooks(m))...)
	if err != nil {
		return nil, fmt.Errorf("console: kafka: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		kc:      kc,
		adm:     kadm.NewClient(kc),
		http:    &http.Client{Timeout: probeTimeout},
		mux:     http.NewServeMux(),
		metrics: m,
	}
	now := cfg.Now
	s.counts = newMemo[[]TableStat](15*time.Second, now)
	s.catalogue = newMemo[[]CatalogueTopic](30*time.Second, now)
	s.topicInfo = newMemo[TopicDetail](15*time.Second, now)
	s.letters = newMemo[LetterList](cfg.Refresh, now)
	s.devices = newMemo[[]Device](cfg.Refresh, now)
	s.device = newMemo[DeviceDetail](cfg.Refresh, now)
	s.alerts = newMemo[[]AlertRow](cfg.Refresh, now)
	s.hub = newHub(s)
	s.devreg = &devreg{s: s}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /api/info", s.serveInfo)
	m.HandleFunc("GET /api/pipeline", s.servePipeline)
	m.HandleFunc("GET /api/events", s.hub.serveEvents)
	m.HandleFunc("GET /api/catalogue", s.serveCatalogue)
	m.HandleFunc("GET /api/catalogue/{topic}", s.serveTopic)
	m.HandleFunc("GET /api/deadletters", s.serveLetters)
	m.HandleFunc("GET /api/deadletters/{partition}/{offset}", s.serveLetter)
	m.HandleFunc("POST /api/deadletters/redrive", s.serveRedrive)
	m.HandleFunc("GET /api/devices", s.serveDevices)
	m.HandleFunc("GET /api/devices/{tenant}/{device}", s.serveDevice)
	m.HandleFunc("GET /api/paddocks", s.servePaddocks)
	m.HandleFunc("GET /api/alerts", s.serveAlerts)
	m.HandleFunc("GET /api/registry", s.serveRegistry)
	m.HandleFunc("POST /api/session", s.serveSession)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no API %s %s", r.Method, r.URL.Path))
	})
	m.Handle("/", assetHandler())
}

// Ready reports whether the console can read Kafka (its readiness check).
func (s *Server) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.kc.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// Handler is the console's HTTP handler: the page, its assets and /api/.
func (s *Server) Handler() http.Handler { return securityHeaders(s.mux) }

// Close stops the background reads (the SSE hub's poller) and closes the
// console's own Kafka client.
func (s *Server) Close() {
	s.hub.stop()
	s.devreg.close()
	s.kc.Close()
}

// Run serves on ln (TLS when certFile and keyFile are set) until ctx is
// done, then shuts down.
func (s *Server) Run(ctx context.Context, ln net.Listener, certFile, keyFile string) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("console: %w", err)
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// securityHeaders forbids framing and any script or style not served by
// the console itself.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// Info is what the page needs to know about this console.
type Info struct {
	Version string `json:"version"`
	// Actions says whether an operator token is configured (actions
	// possible with it); without one the console is read-only.
	Actions bool     `json:"actions"`
	DB      bool     `json:"db"`
	Refresh int64    `json:"refresh_ms"`
	Stages  []string `json:"stages"`
	// Pages lists the pages this console serves, in menu order; pages of
	// later issues (registry, commands, stream apps) are added here.
	Pages []string `json:"pages"`
}

func (s *Server) serveInfo(w http.ResponseWriter, _ *http.Request) {
	in := Info{Version: s.cfg.Version, Actions: s.cfg.TokenFile != "", DB: s.cfg.DB != nil, Refresh: s.cfg.Refresh.Milliseconds(),
		Pages: []string{"pipeline", "catalogue", "deadletters", "devices", "registry", "alerts"}}
	for _, t := range s.cfg.Stages {
		in.Stages = append(in.Stages, t.Name)
	}
	writeJSON(w, in)
}

func (s *Server) servePipeline(w http.ResponseWriter, r *http.Request) {
	snap, err := s.hub.latest(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, snap)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
