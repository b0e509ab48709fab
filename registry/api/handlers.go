package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
)

// deviceRequest is one device to add.
type deviceRequest struct {
	DeviceID         string            `json:"device_id"`
	Type             string            `json:"type"`
	Labels           map[string]string `json:"labels"`
	AltIDs           map[string]string `json:"alt_ids"`
	OfflineTimeout   string            `json:"offline_timeout"`
	Secret           string            `json:"secret"`
	NoSecret         bool              `json:"no_secret"`
	CertFingerprints []string          `json:"cert_fingerprints"`
	CSRPEM           string            `json:"csr_pem"`
	IssueCert        bool              `json:"issue_cert"`
}

// added is the answer for one added device; the secret and a generated key
// are shown here once.
type added struct {
	Device        *registry.Device `json:"device"`
	Secret        string           `json:"secret,omitempty"`
	CertPEM       string           `json:"certificate_pem,omitempty"`
	PrivateKeyPEM string           `json:"private_key_pem,omitempty"`
	Broker        string           `json:"broker,omitempty"`
}

func (req deviceRequest) newDevice(tenant string) (registry.NewDevice, error) {
	nd := registry.NewDevice{
		Tenant: tenant, ID: req.DeviceID, Type: req.Type, Labels: req.Labels, AltIDs: req.AltIDs,
		Secret: req.Secret, NoSecret: req.NoSecret, CertFingerprints: req.CertFingerprints,
	}
	if req.OfflineTimeout != "" {
		d, err := time.ParseDuration(req.OfflineTimeout)
		if err != nil {
			return nd, &registry.FieldError{Field: "offline_timeout", Err: fmt.Errorf("%q is not a duration (e.g. 30m)", req.OfflineTimeout)}
		}
		nd.OfflineTimeout = d
	}
	return nd, nil
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if dec.More() {
		return errors.New("body: more than one JSON value")
	}
	return nil
}

func (a *API) listTenants(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"tenants": a.view.Tenants()})
}

func (a *API) getTenant(w http.ResponseWriter, r *http.Request) {
	t, ok := a.view.Tenant(r.PathValue("tenant"))
	if !ok {
		a.fail(w, r, registry.Errorf(registry.ErrNotFound, "tenant %s is not registered", r.PathValue("tenant")))
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (a *API) addTenant(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Tenant    string `json:"tenant"`
		CACertPEM string `json:"ca_cert_pem"`
		CreateCA  bool   `json:"create_ca"`
	}
	if err := decode(r, &req); err != nil {
		badRequest(w, "%v", err)
		return
	}
	if req.CreateCA && req.CACertPEM != "" {
		badRequest(w, "give ca_cert_pem or create_ca, not both")
		return
	}
	var keyPEM []byte
	if req.CreateCA {
		cert, key, err := registry.NewCA(req.Tenant, time.Now())
		if err != nil {
			a.fail(w, r, &registry.FieldError{Field: "tenant", Err: err})
			return
		}
		req.CACertPEM, keyPEM = string(cert), key
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	t, err := a.store.AddTenant(ctx, req.Tenant, req.CACertPEM)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tenant": t, "ca_key_pem": string(keyPEM)})
}

func (a *API) listDevices(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	var status registry.Status
	if s := r.URL.Query().Get("status"); s != "" {
		st, err := registry.ParseStatus(s)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		status = st
	}
	if _, ok := a.view.Tenant(tenant); !ok {
		a.fail(w, r, registry.Errorf(registry.ErrNotFound, "tenant %s is not registered", tenant))
		return
	}
	devs := []*registry.Device{}
	for _, d := range a.view.Devices() {
		if d.Tenant == tenant && (status == "" || d.Status == status) {
			devs = append(devs, d)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": devs})
}

func (a *API) getDevice(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("device")
	if err := identity.Validate(tenant, id); err != nil {
		a.fail(w, r, err)
		return
	}
	d, ok := a.view.Device(tenant, id)
	if !ok {
		a.fail(w, r, registry.Errorf(registry.ErrNotFound, "device %s is not registered", identity.Key(tenant, id)))
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// addDevices adds one device (a JSON object), or imports many (a JSON array,
// or text/csv with the import columns), all or nothing.
func (a *API) addDevices(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	dryRun, _ := strconv.ParseBool(r.URL.Query().Get("dry_run"))
	body, err := io.ReadAll(r.Body)
	if err != nil {
		badRequest(w, "body: %v", err)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case ct == "text/csv":
		a.importCSV(w, r, tenant, body, dryRun)
	case len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '[':
		var reqs []deviceRequest
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decode(r, &reqs); err != nil {
			badRequest(w, "%v", err)
			return
		}
		a.importJSON(w, r, tenant, reqs, dryRun)
	default:
		var req deviceRequest
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := decode(r, &req); err != nil {
			badRequest(w, "%v", err)
			return
		}
		a.addOne(w, r, tenant, req)
	}
}

func (a *API) addOne(w http.ResponseWriter, r *http.Request, tenant string, req deviceRequest) {
	nd, err := req.newDevice(tenant)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	var out added
	if req.CSRPEM != "" || req.IssueCert {
		if a.opts.CAKeys == nil {
			a.fail(w, r, registry.Errorf(registry.ErrConflict, "this registry service holds no CA keys (start it with --ca-key-dir)"))
			return
		}
		key, err := a.opts.CAKeys(tenant)
		if err != nil {
			a.fail(w, r, registry.Errorf(registry.ErrConflict, "CA key of tenant %s: %v", tenant, err))
			return
		}
		var csr []byte
		if req.CSRPEM != "" {
			csr = []byte(req.CSRPEM)
		}
		e, err := a.store.Enrol(ctx, nd, key, registry.CertRequest{CSR: csr, NewKey: req.IssueCert})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = added{Device: e.Device, Secret: e.Secret, CertPEM: string(e.CertPEM), PrivateKeyPEM: string(e.KeyPEM)}
	} else {
		ad, err := a.store.Add(ctx, nd)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out = added{Device: ad.Device, Secret: ad.Secret}
	}
	out.Broker = a.push(ctx, out.Device, out.Secret)
	writeJSON(w, http.StatusCreated, out)
}

func (a *API) importJSON(w http.ResponseWriter, r *http.Request, tenant string, reqs []deviceRequest, dryRun bool) {
	nds := make([]registry.NewDevice, len(reqs))
	var be registry.BatchError
	for i, req := range reqs {
		if req.CSRPEM != "" || req.IssueCert {
			be.Problems = append(be.Problems, registry.Problem{Index: i, Err: &registry.FieldError{Field: "csr_pem", Err: errors.New("certificates are signed one device at a time")}})
			continue
		}
		nd, err := req.newDevice(tenant)
		if err != nil {
			be.Problems = append(be.Problems, registry.Problem{Index: i, Err: err})
		}
		nds[i] = nd
	}
	if len(be.Problems) > 0 {
		a.fail(w, r, &be)
		return
	}
	a.addMany(w, r, nds, dryRun, func(err error) error { return err })
}

func (a *API) importCSV(w http.ResponseWriter, r *http.Request, tenant string, body []byte, dryRun bool) {
	rows, err := registry.ParseCSV(bytes.NewReader(body))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	nds := make([]registry.NewDevice, len(rows))
	var ce registry.CSVErrors
	for i, row := range rows {
		if row.Device.Tenant != tenant {
			ce = append(ce, &registry.CSVError{Line: row.Line, Field: "tenant", Err: fmt.Errorf("%q is not the tenant of the URL, %s", row.Device.Tenant, tenant)})
		}
		nds[i] = row.Device
	}
	if len(ce) > 0 {
		a.fail(w, r, ce)
		return
	}
	a.addMany(w, r, nds, dryRun, func(err error) error { return registry.Explain(rows, err) })
}

func (a *API) addMany(w http.ResponseWriter, r *http.Request, nds []registry.NewDevice, dryRun bool, explain func(error) error) {
	if len(nds) == 0 {
		badRequest(w, "no devices")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := a.store.AddDevices(ctx, nds, dryRun)
	if err != nil {
		a.fail(w, r, explain(err))
		return
	}
	out := make([]added, len(res))
	for i, ad := range res {
		out[i] = added{Device: ad.Device, Secret: ad.Secret}
		if !dryRun {
			out[i].Broker = a.push(ctx, ad.Device, ad.Secret)
		}
	}
	status := http.StatusCreated
	if dryRun {
		status = http.StatusOK
	}
	writeJSON(w, status, map[string]any{"devices": out, "dry_run": dryRun})
}

func (a *API) deviceAction(w http.ResponseWriter, r *http.Request) {
	tenant, id := r.PathValue("tenant"), r.PathValue("device")
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	to := map[string]registry.Status{"suspend": registry.StatusSuspended, "activate": registry.StatusActive, "revoke": registry.StatusRevoked}
	action := r.PathValue("action")
	if st, ok := to[action]; ok {
		d, err := a.store.SetStatus(ctx, tenant, id, st)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"device": d})
		return
	}
	if action != "rotate" {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no action %q (want suspend, activate, revoke or rotate)", action))
		return
	}
	ad, err := a.store.Rotate(ctx, tenant, id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, added{Device: ad.Device, Secret: ad.Secret, Broker: a.push(ctx, ad.Device, ad.Secret)})
}

func (a *API) deleteDevice(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := a.store.Delete(ctx, r.PathValue("tenant"), r.PathValue("device")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// push hands a new secret to the brokers that need it and says how that
// went ("" when there is no such broker or no secret).
func (a *API) push(ctx context.Context, d *registry.Device, secret string) string {
	if a.opts.PushSecret == nil || secret == "" {
		return ""
	}
	if err := a.opts.PushSecret(ctx, d.Key(), secret); err != nil {
		a.opts.Log.Warn("registry API: pushing a secret to the broker failed", "device", d.Key(), "err", err)
		return "pending: " + err.Error() + " (the broker refuses the device until its secret arrives: rotate it again)"
	}
	return "pushed"
}
