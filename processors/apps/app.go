package apps

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// outcome is what an app did with one source record.
type outcome int

const (
	emitted  outcome = iota
	filtered         // WHERE was false (or failed on the record's values)
	skipped          // another tenant or a device outside the pattern
)

// Source is one source record as an app sees it.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string         // TENANT/DEVICE
	Value     map[string]any // the decoded record
}

// Apply runs the app on one source record: nil with filtered or skipped
// when it produces nothing. An evaluation error (arithmetic on a string,
// say) filters the record and is returned for the caller to count.
func (a *App) apply(src Source) (*schemas.AppRecord, outcome, error) {
	tenant, device, oc, err := a.admit(src)
	if oc != emitted {
		return nil, oc, err
	}
	out := make(map[string]any, len(a.Query.Items))
	for _, it := range a.Query.Items {
		if it.Star {
			for k, v := range src.Value {
				out[k] = v
			}
			continue
		}
		v, err := it.Expr.Eval(src.Value)
		if err != nil {
			return nil, filtered, err
		}
		out[it.Name] = v
	}
	payload, err := json.Marshal(out)
	if err != nil {
		return nil, filtered, fmt.Errorf("encoding the projection: %w", err)
	}
	srcID, _ := src.Value["event_id"].(string)
	if srcID == "" {
		srcID = fmt.Sprintf("%s/%d/%d", src.Topic, src.Partition, src.Offset)
	}
	ts, _ := src.Value["ts"].(time.Time)
	ingested, ok := src.Value["ingested_at"].(time.Time)
	if !ok {
		ingested = ts
	}
	rec := &schemas.AppRecord{
		EventID: EventID(a.Name, src.Topic, srcID), App: a.Name, Tenant: a.OwnerTenant(tenant), SourceTenant: tenant,
		DeviceID: device, TS: ts.UTC(), IngestedAt: ingested.UTC(), SourceTopic: src.Topic, SourceEventIDs: []string{srcID},
		Payload: string(payload),
	}
	if a.Share != nil {
		rec.Agreement = &a.Share.Agreement
	}
	return rec, emitted, nil
}

// admit applies the tenant, device and WHERE conditions: emitted when the
// record passes them.
func (a *App) admit(src Source) (tenant, device string, out outcome, err error) {
	tenant, device = identity(src)
	want, pattern := a.Tenant, a.Devices
	if a.Join != nil && a.Share != nil && src.Topic == a.Join.Left {
		// A join share's left side: the receiving tenant's own records.
		want, pattern = a.Share.Tenant, ""
	}
	if want != "" && tenant != want {
		return tenant, device, skipped, nil
	}
	if pattern != "" {
		if ok, _ := path.Match(pattern, device); !ok {
			return tenant, device, skipped, nil
		}
	}
	if w := a.Query.Where; w != nil {
		ok, err := w.Match(src.Value)
		if err != nil || !ok {
			return tenant, device, filtered, err
		}
	}
	return tenant, device, emitted, nil
}

// EventID is the deterministic id of an app's output for one source
// record: the same app, topic and source event id give the same id on
// every replay or rebalance.
func EventID(app, topic, sourceID string) string {
	h := sha256.Sum256([]byte(app + "\x00" + topic + "\x00" + sourceID))
	return hex.EncodeToString(h[:16])
}

// identity is the record's tenant and device id: the record's own fields,
// else the TENANT/DEVICE key.
func identity(src Source) (tenant, device string) {
	tenant, _ = src.Value["tenant"].(string)
	device, _ = src.Value["device_id"].(string)
	kt, kd, ok := strings.Cut(src.Key, "/")
	if tenant == "" && ok {
		tenant = kt
	}
	if device == "" {
		if ok {
			device = kd
		} else {
			device = src.Key
		}
	}
	return tenant, device
}
