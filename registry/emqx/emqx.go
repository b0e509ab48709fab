// Package emqx serves EMQX 5's HTTP authentication and HTTP authorization
// from the device registry, and disconnects revoked devices through EMQX's
// REST API.
//
// EMQX calls [Handler] with a request body it builds from a template of
// placeholders (see registry/README.md for the exact configuration):
//
//	authentication: {"clientid": "${clientid}", "username": "${username}", "password": "${password}",
//	                 "peerhost": "${peerhost}", "cert_common_name": "${cert_common_name}", "cert_subject": "${cert_subject}"}
//	authorization:  {"clientid": "${clientid}", "username": "${username}", "topic": "${topic}",
//	                 "action": "${action}", "qos": "${qos}", "retain": "${retain}"}
//
// and expects HTTP 200 with {"result": "allow" | "deny" | "ignore"} (plus
// "is_superuser" and "client_attrs" for authentication); any 4xx/5xx makes
// EMQX treat the answer as "ignore" and go on along its chain. Both a JSON
// body (POST) and a query string (GET) are accepted.
package emqx

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
)

// Paths the handler serves.
const (
	AuthnPath = "/emqx/authn"
	AuthzPath = "/emqx/authz"
)

// Results EMQX understands.
const (
	Allow  = "allow"
	Deny   = "deny"
	Ignore = "ignore"
)

// Handler answers EMQX's authentication and authorization requests.
type Handler struct {
	auth  *registry.Auth
	view  *registry.View
	token []byte
	log   *slog.Logger
	m     *prometheus.CounterVec
}

// NewHandler returns a handler deciding with auth over view. When token is
// not empty, every request must carry "Authorization: Bearer <token>"
// (configure it in EMQX's headers); others get 401, which EMQX treats as
// ignore. The decisions are counted in drover_registry_emqx_decisions_total
// on reg when not nil.
func NewHandler(auth *registry.Auth, view *registry.View, token string, reg prometheus.Registerer, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{auth: auth, view: view, token: []byte(token), log: log,
		m: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drover_registry_emqx_decisions_total",
			Help: "Answers to EMQX's HTTP authentication (authn) and authorization (authz) requests, by result and reason.",
		}, []string{"kind", "result", "reason"})}
	if reg != nil {
		if err := reg.Register(h.m); err != nil {
			return nil, fmt.Errorf("emqx handler metrics: %w", err)
		}
	}
	return h, nil
}

// Register adds the handler's endpoints to mux (an admin server's Handle).
func (h *Handler) Register(handle func(pattern string, handler http.Handler)) {
	handle(AuthnPath, http.HandlerFunc(h.serveAuthn))
	handle(AuthzPath, http.HandlerFunc(h.serveAuthz))
}

// request is the union of the fields EMQX's templates fill in.
type request struct {
	ClientID       string `json:"clientid"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	PeerHost       string `json:"peerhost"`
	CertCommonName string `json:"cert_common_name"`
	CertSubject    string `json:"cert_subject"`
	Topic          string `json:"topic"`
	Action         string `json:"action"`
	QoS            any    `json:"qos"`
	Retain         any    `json:"retain"`
}

// authnResponse is EMQX 5's authentication answer.
type authnResponse struct {
	Result      string            `json:"result"`
	IsSuperuser bool              `json:"is_superuser"`
	ClientAttrs map[string]string `json:"client_attrs,omitempty"`
}

func (h *Handler) parse(w http.ResponseWriter, r *http.Request) (request, bool) {
	var req request
	if len(h.token) > 0 {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), h.token) != 1 {
			http.Error(w, `{"error":"missing or wrong bearer token"}`, http.StatusUnauthorized)
			return req, false
		}
	}
	if !h.view.IsReady() {
		http.Error(w, `{"error":"registry view not ready"}`, http.StatusServiceUnavailable)
		return req, false
	}
	switch r.Method {
	case http.MethodPost:
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			if err := r.ParseForm(); err != nil {
				http.Error(w, `{"error":"bad form"}`, http.StatusBadRequest)
				return req, false
			}
			return fromValues(r.PostForm.Get), true
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		if err := dec.Decode(&req); err != nil {
			http.Error(w, `{"error":"body is not the JSON EMQX sends"}`, http.StatusBadRequest)
			return req, false
		}
		return req, true
	case http.MethodGet:
		return fromValues(r.URL.Query().Get), true
	}
	w.Header().Set("Allow", "GET, POST")
	http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
	return req, false
}

func fromValues(get func(string) string) request {
	return request{
		ClientID: get("clientid"), Username: get("username"), Password: get("password"), PeerHost: get("peerhost"),
		CertCommonName: get("cert_common_name"), CertSubject: get("cert_subject"),
		Topic: get("topic"), Action: get("action"), QoS: get("qos"), Retain: get("retain"),
	}
}

func (h *Handler) serveAuthn(w http.ResponseWriter, r *http.Request) {
	req, ok := h.parse(w, r)
	if !ok {
		return
	}
	if req.CertCommonName == "undefined" { // a placeholder without a value (no TLS)
		req.CertCommonName = ""
	}
	if !h.concerned(req.Username) && req.CertCommonName == "" {
		h.answer(w, "authn", authnResponse{Result: Ignore}, "not_a_device")
		return
	}
	p, err := h.auth.Connect(registry.Credentials{
		ClientID: req.ClientID, Username: req.Username, Password: []byte(req.Password), CertCommonName: req.CertCommonName,
	})
	if err != nil {
		h.deny(w, "authn", req, err, authnResponse{Result: Deny})
		return
	}
	resp := authnResponse{Result: Allow}
	if p.IsDevice() {
		resp.ClientAttrs = map[string]string{"tenant": p.Tenant, "device": p.Device}
	}
	h.answer(w, "authn", resp, "")
}

func (h *Handler) serveAuthz(w http.ResponseWriter, r *http.Request) {
	req, ok := h.parse(w, r)
	if !ok {
		return
	}
	if !h.concerned(req.Username) {
		h.answer(w, "authz", authnResponse{Result: Ignore}, "not_a_device")
		return
	}
	p := registry.Principal{Service: req.Username}
	if t, d, err := identity.ParseKey(req.Username); err == nil {
		p = registry.Principal{Tenant: t, Device: d}
		if req.ClientID != req.Username {
			h.deny(w, "authz", req, &registry.DenyError{Reason: registry.ReasonClientID, Detail: "client id " + req.ClientID + " is not " + req.Username}, authnResponse{Result: Deny})
			return
		}
	}
	var err error
	switch req.Action {
	case "publish":
		err = h.auth.Publish(p, req.Topic)
	case "subscribe":
		err = h.auth.Subscribe(p, req.Topic)
	default:
		err = &registry.DenyError{Reason: "unknown_action", Detail: fmt.Sprintf("action %q (want publish or subscribe)", req.Action)}
	}
	if err != nil {
		h.deny(w, "authz", req, err, authnResponse{Result: Deny})
		return
	}
	h.answer(w, "authz", authnResponse{Result: Allow}, "")
}

// concerned reports whether the registry decides for username: a device
// key, or one of the configured services. Anyone else is "ignore": another
// authenticator in EMQX's chain (e.g. its built-in database for operators)
// may know them, and at the end of the chain EMQX refuses.
func (h *Handler) concerned(username string) bool {
	if _, _, err := identity.ParseKey(username); err == nil {
		return true
	}
	return h.auth.HasService(username)
}

func (h *Handler) deny(w http.ResponseWriter, kind string, req request, err error, resp authnResponse) {
	reason := "error"
	var de *registry.DenyError
	if errors.As(err, &de) {
		reason = de.Reason
	}
	h.log.Info("emqx: denied", "kind", kind, "username", req.Username, "clientid", req.ClientID, "topic", req.Topic, "reason", reason, "detail", err)
	h.answer(w, kind, resp, reason)
}

func (h *Handler) answer(w http.ResponseWriter, kind string, resp authnResponse, reason string) {
	h.m.WithLabelValues(kind, resp.Result, reason).Inc()
	w.Header().Set("Content-Type", "application/json")
	if kind == "authz" {
		_ = json.NewEncoder(w).Encode(map[string]string{"result": resp.Result})
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}
