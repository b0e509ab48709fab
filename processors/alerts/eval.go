package alerts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
)

// Alert lifecycle states (the state field of schemas.Alert).
const (
	StateFiring   = "firing"
	StateResolved = "resolved"
)

// deviceState is the group table value of one device: what the rules need
// to remember between records. It is Avro in the table (see tableCodec).
type deviceState struct {
	Tenant   string `json:"tenant" avro:"tenant"`
	DeviceID string `json:"device_id" avro:"device_id"`
	// LastHeard is when the device last spoke: the ingested_at of its
	// newest live (not replayed) record, capped at the wall clock. Offline
	// rules count from here.
	LastHeard time.Time `json:"last_heard,omitzero" avro:"last_heard"`
	// LastTS is the newest event time seen (live or not).
	LastTS time.Time `json:"last_ts,omitzero" avro:"last_ts"`
	// Samples holds the latest reading of each metric a rate rule reads.
	Samples map[string]sample `json:"samples,omitempty" avro:"samples"`
	// Pos is the latest GPS fix.
	Pos *position `json:"pos,omitempty" avro:"pos"`
	// Rules holds per-rule state by rule name.
	Rules map[string]*ruleState `json:"rules,omitempty" avro:"rules"`
	// Offsets holds the offset of the newest record applied, by
	// "topic/partition": a record at or below it was applied before (goka
	// redelivers after a crash) and is not applied twice.
	Offsets map[string]int64 `json:"offsets,omitempty" avro:"offsets"`
	// Outbox holds the events emitted for the newest applied record, so a
	// redelivery of that record emits them again (the table write may have
	// landed while the alert did not).
	Outbox *outbox `json:"outbox,omitempty" avro:"-"`
	// OutboxJSON is Outbox as stored in the table (JSON; empty when nil).
	OutboxJSON []byte `json:"-" avro:"outbox"`

	// dirty is set when a record changed what the table must remember;
	// a record that leaves it unset (e.g. another metric of the same
	// message) is not written back. Not stored.
	dirty bool
}

type outbox struct {
	Source string          `json:"source" avro:"source"`
	Offset int64           `json:"offset" avro:"offset"`
	Events []schemas.Alert `json:"events" avro:"events"`
}

type sample struct {
	V  float64   `json:"v" avro:"v"`
	TS time.Time `json:"ts" avro:"ts"`
}

type position struct {
	Lat float64   `json:"lat" avro:"lat"`
	Lon float64   `json:"lon" avro:"lon"`
	TS  time.Time `json:"ts" avro:"ts"`
}

// ruleState is one rule's state for one device.
type ruleState struct {
	// PendingSince is the event time since which the condition has held
	// (zero when it does not hold or the alert is active).
	PendingSince time.Time `json:"pending_since,omitzero" avro:"pending_since"`
	// Active is the firing alert, nil when none.
	Active *activeAlert `json:"active,omitempty" avro:"active"`
}

type activeAlert struct {
	ID        string    `json:"id" avro:"id"`
	Kind      Kind      `json:"kind,omitempty" avro:"kind"`
	Severity  string    `json:"severity,omitempty" avro:"severity"`
	FiredAt   time.Time `json:"fired_at" avro:"fired_at"`
	Value     *float64  `json:"value,omitempty" avro:"value"`
	Threshold *float64  `json:"threshold,omitempty" avro:"threshold"`
}

// activeCount returns the number of firing alerts of the device.
func (st *deviceState) activeCount() int {
	n := 0
	for _, rs := range st.Rules {
		if rs.Active != nil {
			n++
		}
	}
	return n
}

// pending tracks the condition of rule r, not active, at event time ts:
// false forgets the rule's state; true starts (or keeps) it pending. It
// reports whether the condition has now held for r.For, so the caller
// fires.
func (st *deviceState) pending(r *Rule, cond bool, ts time.Time) (*ruleState, bool) {
	if !cond {
		if _, ok := st.Rules[r.Name]; ok {
			delete(st.Rules, r.Name)
			st.dirty = true
		}
		return nil, false
	}
	rs := st.rule(r.Name)
	if rs.PendingSince.IsZero() || ts.Before(rs.PendingSince) {
		rs.PendingSince = ts
		st.dirty = true
	}
	return rs, ts.Sub(rs.PendingSince) >= r.For
}

func (st *deviceState) rule(name string) *ruleState {
	if st.Rules == nil {
		st.Rules = map[string]*ruleState{}
	}
	rs := st.Rules[name]
	if rs == nil {
		rs = &ruleState{}
		st.Rules[name] = rs
	}
	return rs
}

// evaluator applies a rule set to device states. It has no I/O and no
// clock of its own: callers pass the wall-clock time, so it is
// deterministic and safe for concurrent use.
type evaluator struct {
	rules           *RuleSet
	horizon         time.Duration // 0 = no horizon
	alertOnReplayed bool
	offlineTimeout  func(tenant, device string) time.Duration // nil = the rules'
}

// after is how long the device may stay silent under offline rule r: its
// own timeout (from the registry) when it has one, else the rule's.
func (e *evaluator) after(st *deviceState, r *Rule) time.Duration {
	if e.offlineTimeout != nil {
		if d := e.offlineTimeout(st.Tenant, st.DeviceID); d > 0 {
			return d
		}
	}
	return r.After
}

// AlertID returns the deterministic alert id of a firing: the first 128 bits
// of SHA-256 over rule, device and fired_at (Unix milliseconds), in hex.
// device is the tenant-qualified TENANT/DEVICE (identity.Key), so one
// device id in two tenants fires two alerts with two ids.
func AlertID(rule, device string, firedAt time.Time) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(device))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(firedAt.UnixMilli(), 10)))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// live reports whether a record may fire or resolve alerts: not replayed
// and not older than the horizon, unless alertOnReplayed is set.
func (e *evaluator) live(ts time.Time, replayed bool, now time.Time) bool {
	if e.alertOnReplayed {
		return true
	}
	if replayed {
		return false
	}
	return e.horizon <= 0 || now.Sub(ts) <= e.horizon
}

// identify sets tenant and device of a fresh state.
func (st *deviceState) identify(tenant, device string) {
	if tenant != "" && tenant != st.Tenant {
		st.Tenant = tenant
		st.dirty = true
	}
	if device != "" && device != st.DeviceID {
		st.DeviceID = device
		st.dirty = true
	}
}

// heard records that the device spoke (a live record ingested at
// ingestedAt) and resolves its active offline alerts.
func (e *evaluator) heard(st *deviceState, ingestedAt, now time.Time, out []schemas.Alert) []schemas.Alert {
	at := ingestedAt
	if at.IsZero() || at.After(now) {
		at = now
	}
	if at.After(st.LastHeard) {
		st.LastHeard = at
		st.dirty = true
	}
	for _, r := range e.rules.rules {
		if r.Kind != KindOffline {
			continue
		}
		rs := st.Rules[r.Name]
		if rs == nil || rs.Active == nil {
			continue
		}
		resolvedAt := at
		if resolvedAt.Before(rs.Active.FiredAt) {
			resolvedAt = rs.Active.FiredAt
		}
		msg := fmt.Sprintf("resolved: %s spoke again at %s", st.DeviceID, at.UTC().Format(time.RFC3339))
		out = append(out, e.resolve(st, r, rs, nil, resolvedAt, now, msg))
	}
	return out
}

// sensor applies a raw.sensor reading and returns the lifecycle events.
func (e *evaluator) sensor(st *deviceState, rec *schemas.SensorReading, now time.Time) []schemas.Alert {
	st.identify(rec.Tenant, rec.DeviceID)
	var out []schemas.Alert
	if !rec.Replayed {
		out = e.heard(st, rec.IngestedAt, now, out)
	}
	if rec.TS.After(st.LastTS) {
		st.LastTS = rec.TS
		st.dirty = true
	}
	live := e.live(rec.TS, rec.Replayed, now)
	prev, hasPrev := st.Samples[rec.Metric]
	if live && !math.IsNaN(rec.Value) && !math.IsInf(rec.Value, 0) { // NaN/Inf: counted by the caller, not evaluated
		for _, r := range e.rules.rules {
			if r.Metric != rec.Metric || !r.applies(st.Tenant, st.DeviceID) {
				continue
			}
			switch r.Kind {
			case KindThreshold, KindBattery:
				out = e.level(st, r, rec.Value, rec.TS, now, out)
			case KindRate:
				if !hasPrev || !rec.TS.After(prev.TS) {
					continue // first reading, duplicate or out of order: no rate
				}
				rate := (rec.Value - prev.V) / rec.TS.Sub(prev.TS).Minutes()
				if r.Abs {
					rate = math.Abs(rate)
				}
				out = e.level(st, r, rate, rec.TS, now, out)
			}
		}
	}
	finite := !math.IsNaN(rec.Value) && !math.IsInf(rec.Value, 0)
	if finite && (!hasPrev || !rec.TS.Before(prev.TS)) && e.rateMetric(rec.Metric) {
		if st.Samples == nil {
			st.Samples = map[string]sample{}
		}
		if prev != (sample{V: rec.Value, TS: rec.TS}) {
			st.Samples[rec.Metric] = sample{V: rec.Value, TS: rec.TS}
			st.dirty = true
		}
	}
	return out
}

// rateMetric reports whether a rate rule reads metric (only those need the
// previous sample kept).
func (e *evaluator) rateMetric(metric string) bool {
	for _, r := range e.rules.rules {
		if r.Kind == KindRate && r.Metric == metric {
			return true
		}
	}
	return false
}

// gps applies a raw.gps fix and returns the lifecycle events.
func (e *evaluator) gps(st *deviceState, fix *schemas.GPSFix, now time.Time) []schemas.Alert {
	st.identify(fix.Tenant, fix.DeviceID)
	var out []schemas.Alert
	if !fix.Replayed {
		out = e.heard(st, fix.IngestedAt, now, out)
	}
	if fix.TS.After(st.LastTS) {
		st.LastTS = fix.TS
		st.dirty = true
	}
	if st.Pos == nil || fix.TS.After(st.Pos.TS) {
		st.Pos = &position{Lat: fix.Lat, Lon: fix.Lon, TS: fix.TS}
		st.dirty = true
	}
	if !e.live(fix.TS, fix.Replayed, now) {
		return out
	}
	p := Point{Lat: fix.Lat, Lon: fix.Lon}
	for _, r := range e.rules.rules {
		if r.Kind != KindGeofence || !r.applies(st.Tenant, st.DeviceID) {
			continue
		}
		inside := inPolygon(p, r.Polygon)
		dist := edgeDistance(p, r.Polygon)
		hit := inside == (r.Trigger == TriggerEnter)
		if rs := st.Rules[r.Name]; rs != nil && rs.Active != nil {
			if !hit && dist >= r.Hysteresis {
				where := "inside"
				if r.Trigger == TriggerEnter {
					where = "outside"
				}
				msg := fmt.Sprintf("resolved: %s back %s geofence %s (%s m from the edge)", st.DeviceID, where, r.Name, num(dist))
				out = append(out, e.resolve(st, r, rs, ptr(dist), fix.TS, now, msg))
			}
			continue
		}
		rs, due := st.pending(r, hit, fix.TS)
		if !due {
			continue
		}
		verb := "left"
		if r.Trigger == TriggerEnter {
			verb = "entered"
		}
		msg := fmt.Sprintf("%s %s geofence %s (%s m from the edge)", st.DeviceID, verb, r.Name, num(dist))
		out = append(out, e.fire(st, r, rs, ptr(dist), nil, fix.TS, now, msg))
	}
	return out
}

// level runs the threshold lifecycle of r on an observed value at event
// time ts: pending while the condition holds for less than r.For, firing
// after, resolved once the value is beyond the hysteresis band.
func (e *evaluator) level(st *deviceState, r *Rule, v float64, ts, now time.Time, out []schemas.Alert) []schemas.Alert {
	if rs := st.Rules[r.Name]; rs != nil && rs.Active != nil {
		if r.clears(v) {
			msg := fmt.Sprintf("resolved: %s %s %s, beyond %s", r.Metric, e.what(r), num(v), num(r.resolveLevel()))
			out = append(out, e.resolve(st, r, rs, ptr(v), ts, now, msg))
		}
		return out
	}
	rs, due := st.pending(r, r.holds(v), ts)
	if !due {
		return out
	}
	msg := fmt.Sprintf("%s %s %s %s %s", r.Metric, e.what(r), num(v), r.Op, num(r.Threshold))
	if r.Kind == KindRate {
		msg += " per minute"
	}
	if r.For > 0 {
		msg += " for " + r.For.String()
	}
	return append(out, e.fire(st, r, rs, ptr(v), ptr(r.Threshold), ts, now, msg))
}

func (e *evaluator) what(r *Rule) string {
	if r.Kind == KindRate {
		return "rate"
	}
	return "at"
}

// offline checks the device's offline rules against the wall clock now.
func (e *evaluator) offline(st *deviceState, now time.Time) []schemas.Alert {
	var out []schemas.Alert
	if st.LastHeard.IsZero() {
		return nil
	}
	for _, r := range e.rules.rules {
		if r.Kind != KindOffline || !r.applies(st.Tenant, st.DeviceID) {
			continue
		}
		after := e.after(st, r)
		deadline := st.LastHeard.Add(after)
		if now.Before(deadline) {
			continue
		}
		rs := st.rule(r.Name)
		if rs.Active != nil {
			continue
		}
		msg := fmt.Sprintf("%s sent nothing for %s (last heard %s)", st.DeviceID, after, st.LastHeard.UTC().Format(time.RFC3339))
		out = append(out, e.fire(st, r, rs, nil, nil, deadline, now, msg))
	}
	return out
}

// overdue reports whether an offline rule of the device is due to fire at
// now (the sweep's cheap check before it sends a tick).
func (e *evaluator) overdue(st *deviceState, now time.Time) bool {
	if st.LastHeard.IsZero() {
		return false
	}
	for _, r := range e.rules.rules {
		if r.Kind != KindOffline || !r.applies(st.Tenant, st.DeviceID) {
			continue
		}
		if rs := st.Rules[r.Name]; rs != nil && rs.Active != nil {
			continue
		}
		if !now.Before(st.LastHeard.Add(e.after(st, r))) {
			return true
		}
	}
	return false
}

func (e *evaluator) fire(st *deviceState, r *Rule, rs *ruleState, value, threshold *float64, at, now time.Time, msg string) schemas.Alert {
	at = at.UTC().Truncate(time.Millisecond)
	st.dirty = true
	rs.PendingSince = time.Time{}
	rs.Active = &activeAlert{ID: AlertID(r.Name, identity.Key(st.Tenant, st.DeviceID), at), Kind: r.Kind, Severity: r.Severity, FiredAt: at, Value: value, Threshold: threshold}
	if r.Message != "" {
		msg = r.render(st, StateFiring, value, threshold)
	}
	return schemas.Alert{
		AlertID:    rs.Active.ID,
		Rule:       r.Name,
		Kind:       string(r.Kind),
		Tenant:     st.Tenant,
		DeviceID:   st.DeviceID,
		State:      StateFiring,
		Severity:   r.Severity,
		Value:      value,
		Threshold:  threshold,
		Message:    msg,
		FiredAt:    at,
		TS:         at,
		IngestedAt: now.UTC().Truncate(time.Millisecond),
	}
}

func (e *evaluator) resolve(st *deviceState, r *Rule, rs *ruleState, value *float64, at, now time.Time, msg string) schemas.Alert {
	a := rs.Active
	at = at.UTC().Truncate(time.Millisecond)
	if at.Before(a.FiredAt) {
		at = a.FiredAt
	}
	rs.Active = nil
	rs.PendingSince = time.Time{}
	st.dirty = true
	return schemas.Alert{
		AlertID:    a.ID,
		Rule:       r.Name,
		Kind:       string(r.Kind),
		Tenant:     st.Tenant,
		DeviceID:   st.DeviceID,
		State:      StateResolved,
		Severity:   r.Severity,
		Value:      value,
		Threshold:  a.Threshold,
		Message:    msg,
		FiredAt:    a.FiredAt,
		ResolvedAt: &at,
		TS:         at,
		IngestedAt: now.UTC().Truncate(time.Millisecond),
	}
}

// retire resolves the device's active alerts whose rule is gone from the
// rule set or no longer covers the device (rules changed between runs),
// and forgets the state of rules that are gone. Resolved at the wall clock.
func (e *evaluator) retire(st *deviceState, now time.Time) []schemas.Alert {
	var out []schemas.Alert
	for name, rs := range st.Rules {
		r, ok := e.rules.Rule(name)
		if ok && r.applies(st.Tenant, st.DeviceID) {
			continue
		}
		if a := rs.Active; a != nil {
			why := "no longer covers " + st.DeviceID
			if !ok {
				why = "was removed"
			}
			at := now.UTC().Truncate(time.Millisecond)
			if at.Before(a.FiredAt) {
				at = a.FiredAt
			}
			out = append(out, schemas.Alert{
				AlertID: a.ID, Rule: name, Kind: string(a.Kind), Tenant: st.Tenant, DeviceID: st.DeviceID,
				State: StateResolved, Severity: a.Severity, Threshold: a.Threshold,
				Message: fmt.Sprintf("resolved: rule %s %s", name, why),
				FiredAt: a.FiredAt, ResolvedAt: &at, TS: at, IngestedAt: at,
			})
		}
		delete(st.Rules, name)
		st.dirty = true
	}
	return out
}

// render fills the rule's message template.
func (r *Rule) render(st *deviceState, state string, value, threshold *float64) string {
	opt := func(p *float64) string {
		if p == nil {
			return ""
		}
		return num(*p)
	}
	return strings.NewReplacer(
		"{rule}", r.Name,
		"{device}", st.DeviceID,
		"{tenant}", st.Tenant,
		"{value}", opt(value),
		"{threshold}", opt(threshold),
		"{state}", state,
	).Replace(r.Message)
}

// num formats v with at most 4 decimals.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*1e4)/1e4, 'f', -1, 64)
}

func ptr[T any](v T) *T { return &v }
