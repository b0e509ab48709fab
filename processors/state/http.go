package state

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DevicesPattern is the admin-server pattern Handler serves.
const DevicesPattern = "GET /devices/{key...}"

// Handler serves GET /devices/{tenant}/{device} (the key, identity.Key) with the device's state as JSON (View):
// from this instance's group table when it owns the device's partition,
// otherwise from state.latest (read with kopts; nil kopts answers 404 for
// devices owned by other instances). Unknown devices are 404 with a JSON
// error body.
func (p *Processor) Handler(kopts []kgo.Opt) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("key") // TENANT/DEVICE
		ds, err := p.Local(id)
		src := "table"
		if errors.Is(err, ErrNotLocal) && kopts != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			ds, err = Lookup(ctx, kopts, p.serde, id)
			src = "topic"
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case err == nil:
			p.m.lookups.WithLabelValues(src).Inc()
			_ = json.NewEncoder(w).Encode(ViewOf(ds))
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotLocal):
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "device_id": id})
		default:
			p.cfg.Log.Warn("device lookup failed", "device", id, "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error(), "device_id": id})
		}
	})
}
