// Package api is the registry's HTTP provisioning API: the operations of
// `drover devices` and `drover tenants` as JSON for other systems, served
// by `drover registry` on its admin listener.
//
// Every request carries "Authorization: Bearer <token>". A write token may
// do everything, a read token only GET; the tokens come from files and are
// compared in constant time. Errors are JSON, {"error": "...", "code":
// "..."} (plus "problems" for an import), with 400 (bad input), 401 (no or
// unknown token), 403 (a read token writing), 404 (no such device or
// tenant), 409 (exists, or not allowed in its state) and 503 (the registry
// view is not ready, or Kafka did not take a desired-state update).
//
//	GET    /v1/tenants                                  list tenants
//	POST   /v1/tenants                                  {"tenant", "ca_cert_pem"?, "create_ca"?}
//	GET    /v1/tenants/{tenant}                         one tenant
//	GET    /v1/tenants/{tenant}/devices[?status=]       list a tenant's devices
//	POST   /v1/tenants/{tenant}/devices[?dry_run=true]  add one device, or import many (JSON array or text/csv)
//	GET    /v1/tenants/{tenant}/devices/{device}        one device
//	POST   /v1/tenants/{tenant}/devices/{device}/{suspend|activate|revoke|rotate}
//	DELETE /v1/tenants/{tenant}/devices/{device}        forget a revoked device
//	GET    /v1/tenants/{tenant}/devices/{device}/state  the device shadow: desired, version, metrics, pending delta
//	PUT    /v1/tenants/{tenant}/devices/{device}/desired  {"key": "value", ...}: set desired state (202, the update's id)
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
)

// Scope is what a token may do.
type Scope int

// The scopes: Read may GET; Write may do everything.
const (
	Read Scope = iota + 1
	Write
)

// Options configure the API.
type Options struct {
	// Tokens are the accepted bearer tokens and their scopes.
	Tokens map[string]Scope
	// CAKeys returns the CA key (PEM) of a tenant, to sign certificates
	// (nil: the API signs none).
	CAKeys func(tenant string) ([]byte, error)
	// PushSecret hands a device's new secret to the brokers that need the
	// plaintext (Mosquitto's dynsec) right after add or rotate; nil = none.
	PushSecret func(ctx context.Context, key, secret string) error
	// Shadow serves devices' state and desired state (nil: those routes
	// answer 501).
	Shadow Shadow
	Log    *slog.Logger
}

// API is the provisioning API handler.
type API struct {
	store  *registry.Store
	view   *registry.View
	opts   Options
	tokens []tokenHash
	mux    *http.ServeMux
}

type tokenHash struct {
	sum   [32]byte
	scope Scope
}

// New returns the API over store. It refuses an empty token set: an API
// without a token is not served.
func New(store *registry.Store, opts Options) (*API, error) {
	if len(opts.Tokens) == 0 {
		return nil, errors.New("registry API: no operator token")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	a := &API{store: store, view: store.View(), opts: opts, mux: http.NewServeMux()}
	for tok, sc := range opts.Tokens {
		if len(tok) < 16 {
			return nil, errors.New("registry API: a token shorter than 16 characters")
		}
		a.tokens = append(a.tokens, tokenHash{sum: sha256.Sum256([]byte(tok)), scope: sc})
	}
	a.routes()
	return a, nil
}

// Register adds the API's routes (under /v1/) to an admin server.
func (a *API) Register(handle func(pattern string, handler http.Handler)) {
	handle("/v1/", a)
}

func (a *API) routes() {
	a.mux.HandleFunc("GET /v1/tenants", a.listTenants)
	a.mux.HandleFunc("POST /v1/tenants", a.addTenant)
	a.mux.HandleFunc("GET /v1/tenants/{tenant}", a.getTenant)
	a.mux.HandleFunc("GET /v1/tenants/{tenant}/devices", a.listDevices)
	a.mux.HandleFunc("POST /v1/tenants/{tenant}/devices", a.addDevices)
	a.mux.HandleFunc("GET /v1/tenants/{tenant}/devices/{device}", a.getDevice)
	a.mux.HandleFunc("POST /v1/tenants/{tenant}/devices/{device}/{action}", a.deviceAction)
	a.mux.HandleFunc("DELETE /v1/tenants/{tenant}/devices/{device}", a.deleteDevice)
	a.mux.HandleFunc("GET /v1/tenants/{tenant}/devices/{device}/state", a.getState)
	a.mux.HandleFunc("PUT /v1/tenants/{tenant}/devices/{device}/desired", a.putDesired)
}

// ServeHTTP checks the token and the view, then routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	scope := a.scope(r)
	switch {
	case scope == 0:
		w.Header().Set("WWW-Authenticate", `Bearer realm="drover registry"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "missing or unknown bearer token")
		return
	case scope < Write && r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeError(w, http.StatusForbidden, "forbidden", "this token may only read")
		return
	case !a.view.IsReady():
		writeError(w, http.StatusServiceUnavailable, "not_ready", "the registry view is not ready yet")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<20)
	a.mux.ServeHTTP(w, r)
}

// scope returns the scope of the request's token, 0 when it has none. Every
// known token is compared (in constant time) whatever the first matches.
func (a *API) scope(r *http.Request) Scope {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return 0
	}
	sum := sha256.Sum256([]byte(h[len(prefix):]))
	var got Scope
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
			got = t.scope
		}
	}
	return got
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type errorBody struct {
	Error    string    `json:"error"`
	Code     string    `json:"code"`
	Problems []problem `json:"problems,omitempty"`
}

type problem struct {
	Line  int    `json:"line,omitempty"`
	Entry int    `json:"entry,omitempty"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Code: code})
}

// fail maps a registry error to its status and a JSON body.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, registry.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, registry.ErrExists):
		status, code = http.StatusConflict, "exists"
	case errors.Is(err, registry.ErrConflict):
		status, code = http.StatusConflict, "conflict"
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, identity.ErrInvalid):
		status, code = http.StatusBadRequest, "invalid"
	case errors.Is(err, registry.ErrNotReady):
		status, code = http.StatusServiceUnavailable, "not_ready"
	}
	body := errorBody{Error: err.Error(), Code: code}
	var ce registry.CSVErrors
	var be *registry.BatchError
	switch {
	case errors.As(err, &ce):
		for _, e := range ce {
			body.Problems = append(body.Problems, problem{Line: e.Line, Field: e.Field, Error: e.Err.Error()})
		}
	case errors.As(err, &be):
		for _, p := range be.Problems {
			pr := problem{Entry: p.Index + 1, Error: p.Err.Error()}
			var fe *registry.FieldError
			if errors.As(p.Err, &fe) {
				pr.Field = fe.Field
			}
			body.Problems = append(body.Problems, pr)
		}
	}
	if status == http.StatusInternalServerError {
		a.opts.Log.Error("registry API: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}

// badRequest is a 400 for a body that is not what the endpoint takes.
func badRequest(w http.ResponseWriter, format string, args ...any) {
	writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...))
}

// timeout bounds one write: it waits for Kafka and for the view.
const timeout = 30 * time.Second
