package httpapi

import (
	"context"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/lorawan"
)

// LoRaWANDoor is the ingest.Message.Door of network-server webhooks.
const LoRaWANDoor = "lorawan"

// LoRaWAN configures the network-server webhooks.
type LoRaWAN struct {
	// Tokens maps a network (lorawan.ChirpStack, lorawan.TTS) to the bearer
	// token its webhook sends (Authorization: Bearer <token>, set as a
	// custom header in the network server's integration). A network
	// without a token is not served.
	Tokens map[lorawan.Network]string
	// Dedup drops copies of an uplink already acknowledged; nil = none.
	Dedup *lorawan.Dedup
}

type loraHandler struct{ cfg LoRaWAN }

// WithLoRaWAN serves POST /v1/lorawan/{chirpstack|tts}.
func WithLoRaWAN(cfg LoRaWAN) Option {
	return func(s *Server) { s.lora = &loraHandler{cfg: cfg} }
}

// Channel returns the ingest.Message.Channel of a webhook call: the
// routes table's lorawan decoders are keyed by it.
func Channel(n lorawan.Network, event string) string {
	if n == lorawan.ChirpStack {
		return "lorawan/chirpstack/" + event
	}
	return "lorawan/" + string(n)
}

// lorawan serves a network server's webhook. The device's identity is in
// the body (its DevEUI): the core parses it again and resolves it through
// the registry, and writes the dead letter of a body it refuses. A refused
// body is answered 200 with its outcome, not 4xx: the network server cannot
// correct it, and some network servers disable a webhook that keeps
// failing. Only authentication (401) and overload (503) are errors here.
func (s *Server) lorawan(w http.ResponseWriter, r *http.Request) {
	n := lorawan.Network(r.PathValue("network"))
	tok, ok := s.lora.cfg.Tokens[n]
	if !ok {
		http.NotFound(w, r)
		return
	}
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
		s.write(w, Answer{Status: http.StatusUnauthorized, Outcome: ingest.Outcome{Kind: ingest.Unauthenticated, Reason: "unauthenticated",
			Message: "send the webhook token of " + string(n) + " as Authorization: Bearer <token>"}})
		return
	}
	if !s.acquire(w) {
		return
	}
	defer s.release()
	body, ok := s.read(w, r, s.cfg.MaxBody)
	if !ok {
		return
	}
	event := r.URL.Query().Get("event")
	var ev *lorawan.Event
	var perr error
	if n == lorawan.ChirpStack {
		ev, perr = lorawan.ParseChirpStack(event, body)
	} else {
		ev, perr = lorawan.ParseTTS(body)
	}
	key := ""
	if perr == nil {
		if ev.Kind == lorawan.KindIgnored {
			s.m.ignored.Inc()
			s.write(w, Answer{Status: http.StatusOK, Outcome: ingest.Outcome{Reason: "ignored", Message: "this event carries no record"}})
			return
		}
		if key = lorawan.Key(ev); s.lora.cfg.Dedup != nil && s.lora.cfg.Dedup.Seen(key, s.cfg.Now()) {
			s.m.dups.Inc()
			s.write(w, Answer{Status: http.StatusOK, Outcome: ingest.Outcome{Reason: "duplicate", Message: "this frame was already acknowledged"}})
			return
		}
	}
	msg := ingest.Message{Door: LoRaWANDoor, Channel: Channel(n, event), Payload: body, ReceivedAt: s.cfg.Now(), Authenticated: true}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	a := s.outcome(s.core.Ingest(ctx, msg))
	switch a.Status {
	case http.StatusAccepted:
		if s.lora.cfg.Dedup != nil {
			s.lora.cfg.Dedup.Mark(key, s.cfg.Now())
		}
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
	default:
		a.Status = http.StatusOK // refused, dead letter written: see above
	}
	s.write(w, a)
}
