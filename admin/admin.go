// Package admin serves the operational HTTP endpoints of a long-running
// drover stage: /metrics (Prometheus), /healthz (the process is alive) and
// /readyz (every registered readiness check passes). Stages add their own
// handlers (e.g. the state processor's /devices/{id}) with Handle.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
)

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Server is the admin HTTP server of one process. Its methods are safe for
// concurrent use.
type Server struct {
	// Registry holds the process's metrics. It starts with the Go runtime
	// and process collectors registered.
	Registry *prometheus.Registry

	addr string
	log  *slog.Logger
	mux  *http.ServeMux

	mu     sync.Mutex
	checks map[string]Check
	ln     net.Listener
}

// New returns a server that will listen on addr (e.g. ":9464"; empty
// disables listening but keeps the registry usable).
func New(addr string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{Registry: reg, addr: addr, log: log, mux: http.NewServeMux(), checks: map[string]Check{}}
	s.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("/readyz", s.serveReady)
	return s
}

// Port is the port of a listen address such as ":9410" (a stage's default
// admin address), or 0 when it has none.
func Port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// AddFlag registers --admin-addr on fs with the stage's default address.
func AddFlag(fs *pflag.FlagSet, p *string, def string) {
	fs.StringVar(p, "admin-addr", def, "listen address for /metrics, /healthz and /readyz (empty = off)")
}

// AddCheck registers a readiness check under name (replacing one of the same
// name).
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	s.checks[name] = c
	s.mu.Unlock()
}

// Checks returns the names of the registered readiness checks.
func (s *Server) Checks() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.checks))
	for k := range s.checks {
		out[k] = true
	}
	return out
}

// Handle adds an HTTP handler for pattern (net/http ServeMux syntax).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Ready runs every check and returns the failures by name.
func (s *Server) Ready(ctx context.Context) map[string]string {
	s.mu.Lock()
	checks := make(map[string]Check, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	failed := map[string]string{}
	for name, c := range checks {
		if err := c(ctx); err != nil {
			failed[name] = err.Error()
		}
	}
	return failed
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	failed := s.Ready(ctx)
	w.Header().Set("Content-Type", "application/json")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	names := make([]string, 0, len(failed))
	for n := range failed {
		names = append(names, n)
	}
	sort.Strings(names)
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": len(failed) == 0, "failed": failed})
}

// Listen binds the address now, so a taken port fails at start and Addr
// reports the real port (useful with ":0"). It does nothing when the server
// already has a listener (Listen or UseListener).
func (s *Server) Listen() error {
	if s.addr == "" || s.Addr() != "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("admin server: listen on %s: %w", s.addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	return nil
}

// UseListener makes the server serve on l (already bound by the caller,
// e.g. `drover dev`, which picks the address) instead of binding its own.
func (s *Server) UseListener(l net.Listener) {
	s.mu.Lock()
	s.ln = l
	s.addr = l.Addr().String()
	s.mu.Unlock()
}

// Listener returns the bound listener, or nil before Listen.
func (s *Server) Listener() net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln
}

// Addr returns the bound address, or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run serves until ctx is done, then shuts down gracefully. It calls Listen
// if the caller has not.
func (s *Server) Run(ctx context.Context) error {
	if s.addr == "" {
		<-ctx.Done()
		return nil
	}
	if s.Addr() == "" {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("admin server listening", "addr", s.Addr())
	select {
	case err := <-errc:
		return fmt.Errorf("admin server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server shutdown: %w", err)
	}
	return nil
}
