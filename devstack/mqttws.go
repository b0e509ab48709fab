package devstack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// MQTTWebSocketPath is the HTTP path of MQTT over WebSockets, as Mosquitto
// and EMQX serve it ("ws://host:port/mqtt").
const MQTTWebSocketPath = "/mqtt"

// WithWebSocket makes the broker also speak MQTT over WebSockets (binary
// frames, subprotocol "mqtt", on any path; browsers and some gateways use
// it) on l. The same hooks apply: reserved client ids, flow control.
func WithWebSocket(l net.Listener) MQTTOption {
	return func(o *mqttOptions) { o.ws = l }
}

// wsListener is a mochi listener for MQTT over WebSockets on a listener of
// the caller's (mochi's own websocket listener binds an address itself, so
// a test could not ask for a free port).
type wsListener struct {
	l        net.Listener
	upgrader websocket.Upgrader
	once     sync.Once

	mu        sync.Mutex
	srv       *http.Server // made by Init, before Serve and Close run
	log       *slog.Logger
	establish listeners.EstablishFn
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(l net.Listener) *wsListener {
	return &wsListener{l: l, upgrader: websocket.Upgrader{
		Subprotocols: []string{"mqtt", "mqttv3.1"},
		// Browsers send an Origin; the embedded broker takes devices from
		// any page, as Mosquitto's websockets listener does.
		CheckOrigin: func(*http.Request) bool { return true },
	}}
}

func (w *wsListener) ID() string       { return "ws" }
func (w *wsListener) Address() string  { return w.l.Addr().String() }
func (w *wsListener) Protocol() string { return "ws" }

func (w *wsListener) Init(log *slog.Logger) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = log
	w.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(w.handle)}
	return nil
}

func (w *wsListener) handle(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	establish, log := w.establish, w.log
	w.mu.Unlock()
	if establish == nil {
		http.Error(rw, "not serving yet", http.StatusServiceUnavailable)
		return
	}
	c, err := w.upgrader.Upgrade(rw, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	defer c.Close()
	if err := establish(w.ID(), &wsConn{Conn: c.UnderlyingConn(), c: c}); err != nil && !errors.Is(err, io.EOF) {
		log.Debug("mqtt over websocket", "remote", r.RemoteAddr, "err", err)
	}
}

func (w *wsListener) Serve(establish listeners.EstablishFn) {
	w.mu.Lock()
	w.establish = establish
	srv, log := w.srv, w.log
	w.mu.Unlock()
	if err := srv.Serve(w.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("mqtt over websocket: serving", "err", err)
	}
}

func (w *wsListener) Close(closeClients listeners.CloseFn) {
	w.once.Do(func() {
		w.mu.Lock()
		srv := w.srv
		w.mu.Unlock()
		if srv == nil {
			_ = w.l.Close()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = w.l.Close() // when Serve never ran, Shutdown has no listener to close
	})
	closeClients(w.ID())
}

// wsConn is a net.Conn over a websocket connection's binary messages: an
// MQTT packet may span messages and a message may hold several packets
// (MQTT over WebSockets, MQTT 5.0 §6).
type wsConn struct {
	net.Conn
	c  *websocket.Conn
	r  io.Reader
	wm sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			mt, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, errors.New("mqtt over websocket: a text frame (MQTT needs binary frames)")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.wm.Lock()
	defer ws.wm.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }
