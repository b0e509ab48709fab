package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// hub computes the pipeline snapshot once per refresh interval while any
// page listens (an SSE subscriber, or a /api/pipeline request within the
// last two intervals) and fans it out; when nobody listens it stops, so an
// unwatched console reads nothing.
type hub struct {
	s *Server

	mu       sync.Mutex
	subs     map[chan []byte]struct{}
	running  bool
	closed   bool      // after stop: never start again
	wanted   time.Time // last /api/pipeline request
	snap     *Snapshot
	snapJSON []byte
	quit     chan struct{}
	done     chan struct{}

	compute sync.Mutex // serialises pipeline use
	p       *pipeline
}

func newHub(s *Server) *hub {
	return &hub{s: s, subs: map[chan []byte]struct{}{}, p: newPipeline(s)}
}

// ensure starts the poller if it is not running. Called with h.mu held.
func (h *hub) ensure() {
	if h.running || h.closed {
		return
	}
	h.running = true
	h.quit, h.done = make(chan struct{}), make(chan struct{})
	go h.run(h.quit, h.done)
}

func (h *hub) run(quit, done chan struct{}) {
	defer close(done)
	every := h.s.cfg.Refresh
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		h.tick()
		select {
		case <-quit:
			h.stopped()
			return
		case <-t.C:
		}
		h.mu.Lock()
		idle := len(h.subs) == 0 && h.s.cfg.Now().Sub(h.wanted) > 2*every
		if idle {
			h.running = false
		}
		h.mu.Unlock()
		if idle {
			h.stopped()
			return
		}
	}
}

func (h *hub) stopped() {
	h.compute.Lock()
	h.p.dlq.close()
	h.compute.Unlock()
}

func (h *hub) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.Refresh+10*time.Second)
	defer cancel()
	h.compute.Lock()
	snap := h.p.snapshot(ctx)
	h.compute.Unlock()
	b, err := json.Marshal(snap)
	if err != nil {
		h.s.cfg.Log.Error("console: encoding the pipeline snapshot", "err", err)
		return
	}
	h.mu.Lock()
	h.snap, h.snapJSON = &snap, b
	for c := range h.subs {
		select {
		case c <- b:
		default: // a slow page skips a snapshot; the next one replaces it
		}
	}
	h.mu.Unlock()
}

// latest returns the newest snapshot, computing one if there is none
// younger than the refresh interval.
func (h *hub) latest(ctx context.Context) (*Snapshot, error) {
	h.mu.Lock()
	h.wanted = h.s.cfg.Now()
	h.ensure()
	if h.snap != nil && h.s.cfg.Now().Sub(h.snap.At) < h.s.cfg.Refresh {
		s := h.snap
		h.mu.Unlock()
		return s, nil
	}
	h.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		h.mu.Lock()
		s := h.snap
		h.mu.Unlock()
		if s != nil {
			return s, nil
		}
	}
}

func (h *hub) stop() {
	h.mu.Lock()
	quit, done, running := h.quit, h.done, h.running
	h.running, h.closed = false, true
	h.mu.Unlock()
	if running {
		close(quit)
		<-done
	}
}

// serveEvents streams "pipeline" events (the snapshot as JSON) until the
// page goes away.
func (h *hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("streaming unsupported"))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	c := make(chan []byte, 1)
	h.mu.Lock()
	h.subs[c] = struct{}{}
	h.s.metrics.sse.Inc()
	h.ensure()
	first := h.snapJSON
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.s.metrics.sse.Dec()
		h.mu.Unlock()
	}()
	fmt.Fprintf(w, "retry: %d\n\n", h.s.cfg.Refresh.Milliseconds())
	if first != nil {
		fmt.Fprintf(w, "event: pipeline\ndata: %s\n\n", first)
	}
	fl.Flush()
	keep := time.NewTicker(30 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-c:
			fmt.Fprintf(w, "event: pipeline\ndata: %s\n\n", b)
			fl.Flush()
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		}
	}
}
