package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
)

// Shadow reads and writes devices' shadows for the API (the service wires
// it to Kafka: state.latest and commands.devices).
type Shadow interface {
	// SetDesired writes a desired-state update (key → value, "" removes
	// the key) and returns its id.
	SetDesired(ctx context.Context, tenant, device string, desired map[string]string) (string, error)
	// State returns the device's shadow as JSON (desired, version,
	// reported metrics, the pending delta); found is false when the
	// device has no state yet.
	State(ctx context.Context, tenant, device string) (view json.RawMessage, found bool, err error)
}

// registered checks the ids and that the device is registered.
func (a *API) registered(w http.ResponseWriter, r *http.Request) (string, string, bool) {
	tenant, id := r.PathValue("tenant"), r.PathValue("device")
	if err := identity.Validate(tenant, id); err != nil {
		a.fail(w, r, err)
		return "", "", false
	}
	if _, ok := a.view.Device(tenant, id); !ok {
		a.fail(w, r, registry.Errorf(registry.ErrNotFound, "device %s is not registered", identity.Key(tenant, id)))
		return "", "", false
	}
	if a.opts.Shadow == nil {
		writeError(w, http.StatusNotImplemented, "not_served", "this registry service does not serve device shadows")
		return "", "", false
	}
	return tenant, id, true
}

// putDesired handles PUT .../desired: a JSON object of key → value (a
// string, or any JSON value, kept as its JSON text; null or "" removes the
// key). It answers 202 with the update's id: the state processor applies
// it, the bridge sends the device the delta.
func (a *API) putDesired(w http.ResponseWriter, r *http.Request) {
	tenant, id, ok := a.registered(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "body: "+err.Error())
		return
	}
	d, err := control.ParseDesired(string(body))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", "body: desired state: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	upd, err := a.opts.Shadow.SetDesired(ctx, tenant, id, d)
	if err != nil {
		a.opts.Log.Warn("registry API: desired state not written", "device", identity.Key(tenant, id), "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "desired state not written: "+err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": upd, "tenant": tenant, "device_id": id, "desired": d})
}

// getState handles GET .../state: the device's shadow.
func (a *API) getState(w http.ResponseWriter, r *http.Request) {
	tenant, id, ok := a.registered(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	v, found, err := a.opts.Shadow.State(ctx, tenant, id)
	switch {
	case err != nil:
		a.opts.Log.Warn("registry API: reading the device state failed", "device", identity.Key(tenant, id), "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "device state not readable: "+err.Error())
	case !found:
		writeError(w, http.StatusNotFound, "not_found", "device "+identity.Key(tenant, id)+" has no state yet (no reading and no desired state processed)")
	default:
		writeJSON(w, http.StatusOK, v)
	}
}
