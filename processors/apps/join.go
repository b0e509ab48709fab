package apps

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/schemas"
)

// joinRec is one buffered record of a join: its event id, event time and
// ingestion time (Unix ms), its fields as JSON (encoded once, when the
// record arrives: re-encoding maps on every state write was most of the
// join's CPU time) and the numeric fields to interpolate.
type joinRec struct {
	ID string             `json:"id"`
	K  string             `json:"k,omitempty"` // the record's key (TENANT/DEVICE), in a linked join's state
	TS int64              `json:"ts"`
	I  int64              `json:"i"`
	F  json.RawMessage    `json:"f"`
	N  map[string]float64 `json:"n,omitempty"`
}

// joinState is one key's join state in the app's group table: the right
// records of the recent past (sorted by time, at most Join.Buffer), the
// left records waiting for the right side to catch up, both sides'
// watermarks (newest event time seen) and the wall-clock time of the last
// record.
type joinState struct {
	Right   []joinRec `json:"r,omitempty"`
	Left    []joinRec `json:"l,omitempty"`
	RightWM int64     `json:"rw"`
	LeftWM  int64     `json:"lw"`
	Wall    int64     `json:"w"`
}

// JoinPayload is the payload of a join's record.
type JoinPayload struct {
	Left  json.RawMessage `json:"left"`
	Right json.RawMessage `json:"right"` // the nearest right record; null when none was within the tolerance
	// DeltaMS is the right record's event time minus the left's.
	DeltaMS *int64 `json:"delta_ms"`
	// Interpolated holds the Interpolate fields at the left record's
	// time, linear between the two right records bracketing it.
	Interpolated map[string]float64 `json:"interpolated,omitempty"`
}

func joinStateOf(ctx goka.Context) *joinState {
	if st, ok := ctx.Value().(*joinState); ok && st != nil {
		return st
	}
	return &joinState{}
}

// plain turns a decoded record into JSON-safe values.
func plain(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.UTC().Format(time.RFC3339Nano)
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = plain(x)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = plain(x)
		}
		return out
	}
	return v
}

// insert puts r into recs in time order (after equal times); a record
// with an id already there is a redelivery: false.
func insert(recs []joinRec, r joinRec) ([]joinRec, bool) {
	if slices.ContainsFunc(recs, func(x joinRec) bool { return x.ID == r.ID }) {
		return recs, false
	}
	i, _ := slices.BinarySearchFunc(recs, r.TS+1, func(x joinRec, ts int64) int { return int(min(max(x.TS-ts, -1), 1)) })
	return slices.Insert(recs, i, r), true
}

// joined handles one admitted record of either side.
func (p *Processor) joined(ctx goka.Context, src Source) {
	j := p.app.Join
	_, _, out, err := p.app.admit(src)
	if err != nil {
		p.m.errors.Inc()
	}
	switch out {
	case filtered:
		p.m.filtered.Inc()
		return
	case skipped:
		p.m.skipped.Inc()
		return
	}
	ts, ok := src.Value["ts"].(time.Time)
	if !ok {
		p.m.filtered.Inc()
		return
	}
	id, _ := src.Value["event_id"].(string)
	if id == "" {
		id = src.Topic + "/" + strings.TrimSpace(ctx.Key()) + "/" + ts.String()
	}
	fields, err := json.Marshal(plain(src.Value))
	if err != nil {
		p.m.errors.Inc()
		p.warn("record fields do not encode as JSON; it counts as filtered", ctx, err)
		p.m.filtered.Inc()
		return
	}
	rec := joinRec{ID: id, TS: ts.UnixMilli(), I: ts.UnixMilli(), F: fields}
	if t, ok := src.Value["ingested_at"].(time.Time); ok {
		rec.I = t.UnixMilli()
	}
	if src.Topic == j.Right && len(j.Interpolate) > 0 {
		rec.N = make(map[string]float64, len(j.Interpolate))
		for _, f := range j.Interpolate {
			if v, ok := toFloat(src.Value[f]); ok {
				rec.N[f] = v
			}
		}
	}
	if j.Link != "" {
		// To the state of the link key, through the loop topic (so the
		// two sides meet on one partition whatever their keys).
		tenant, device := identity(src)
		key, ok := p.linkKey(tenant, device)
		if !ok {
			p.m.unlinked.Inc()
			return
		}
		rec.K = ctx.Key()
		ctx.Loopback(key, &shareMark{Link: &linkMsg{Topic: src.Topic, Rec: rec}})
		return
	}
	p.joinAdd(ctx, src.Topic, rec)
}

// linkKey is the state key of a linked join for a record of tenant's
// device: its label's value (with the tenant outside a share, so two
// tenants meet only under an agreement); false without the label.
func (p *Processor) linkKey(tenant, device string) (string, bool) {
	if p.cfg.Labels == nil {
		return "", false
	}
	d, ok := p.cfg.Labels.Device(tenant, device)
	if !ok {
		return "", false
	}
	v := d.Labels[p.app.Join.Link]
	if v == "" {
		return "", false
	}
	if p.app.Share != nil {
		return "link@" + p.app.Join.Link + "=" + v, true
	}
	return "link@" + tenant + "@" + p.app.Join.Link + "=" + v, true
}

// onLoop handles the loop topic: a linked join's record, or a share's mark.
func (p *Processor) onLoop(ctx goka.Context, msg interface{}) {
	m, ok := msg.(*shareMark)
	if !ok {
		return
	}
	if m.Link != nil {
		p.joinAdd(ctx, m.Link.Topic, m.Link.Rec)
		return
	}
	p.onShared(ctx, m)
}

// joinAdd adds one record of side topic to the state under ctx's key and
// writes the left records whose match is final.
func (p *Processor) joinAdd(ctx goka.Context, topic string, rec joinRec) {
	j := p.app.Join
	st := joinStateOf(ctx)
	st.Wall = p.clock().UnixMilli()
	late := j.Lateness.Milliseconds()
	if topic == j.Right {
		if st.RightWM > 0 && rec.TS < st.RightWM-late {
			p.m.tooLate.Inc()
			return
		}
		var added bool
		if st.Right, added = insert(st.Right, rec); added {
			st.RightWM = max(st.RightWM, rec.TS)
			if len(st.Right) > j.Buffer {
				st.Right = slices.Delete(st.Right, 0, len(st.Right)-j.Buffer)
				p.m.evicted.Inc()
			}
		}
	} else {
		if st.LeftWM > 0 && rec.TS < st.LeftWM-late {
			p.m.tooLate.Inc()
			return
		}
		var added bool
		if st.Left, added = insert(st.Left, rec); added {
			st.LeftWM = max(st.LeftWM, rec.TS)
			for len(st.Left) > j.Buffer { // the oldest waits no longer
				p.emitJoin(ctx, st, st.Left[0])
				st.Left = st.Left[1:]
			}
		}
	}
	p.flushJoin(ctx, st, false)
	ctx.SetValue(st)
}

// flushJoin writes every waiting left record whose match is final: the
// right side's event time has passed its time plus the tolerance and the
// lateness (all = every waiting one, on an idle key). Then it forgets the
// right records no waiting or future left record can meet.
func (p *Processor) flushJoin(ctx goka.Context, st *joinState, all bool) {
	j := p.app.Join
	tol, late := j.Tolerance.Milliseconds(), j.Lateness.Milliseconds()
	n := 0
	for _, l := range st.Left {
		if !all && l.TS+tol+late > st.RightWM {
			break
		}
		p.emitJoin(ctx, st, l)
		n++
	}
	st.Left = st.Left[n:]
	keepFrom := st.LeftWM - late
	if len(st.Left) > 0 {
		keepFrom = min(keepFrom, st.Left[0].TS)
	}
	keepFrom -= tol
	drop := 0
	for drop < len(st.Right) && st.Right[drop].TS < keepFrom {
		drop++
	}
	st.Right = st.Right[drop:]
}

// onJoinTick writes the waiting left records of a key idle for longer than
// the tolerance plus the lateness (wall clock): the right side may never
// catch up.
func (p *Processor) onJoinTick(ctx goka.Context, msg interface{}) {
	if _, ev := ctx.Value().(*evidenceState); ev {
		p.onTick(ctx, msg) // a join share's evidence
		return
	}
	st, ok := ctx.Value().(*joinState)
	if !ok || st == nil || len(st.Left) == 0 {
		return
	}
	j := p.app.Join
	if tickTime(msg, p.clock).UnixMilli()-st.Wall < (j.Tolerance + j.Lateness).Milliseconds() {
		return
	}
	p.flushJoin(ctx, st, true)
	ctx.SetValue(st)
}

// match finds the right record nearest to l within the tolerance (the
// earlier one on a tie) and, for interpolation, the two bracketing l.
func (p *Processor) match(st *joinState, l joinRec) (near *joinRec, interp map[string]float64) {
	j := p.app.Join
	tol := j.Tolerance.Milliseconds()
	var prev, next *joinRec
	for i := range st.Right {
		r := &st.Right[i]
		d := r.TS - l.TS
		if d < -tol || d > tol {
			continue
		}
		if near == nil || abs(d) < abs(near.TS-l.TS) {
			near = r
		}
		if d <= 0 {
			prev = r
		} else if next == nil {
			next = r
		}
	}
	if len(j.Interpolate) == 0 || near == nil {
		return near, nil
	}
	interp = map[string]float64{}
	for _, f := range j.Interpolate {
		switch {
		case prev != nil && prev.TS == l.TS, next == nil && prev != nil:
			if v, ok := prev.N[f]; ok {
				interp[f] = v
			}
		case prev == nil && next != nil:
			if v, ok := next.N[f]; ok {
				interp[f] = v
			}
		default:
			a, ok1 := prev.N[f]
			b, ok2 := next.N[f]
			if ok1 && ok2 {
				interp[f] = a + (b-a)*float64(l.TS-prev.TS)/float64(next.TS-prev.TS)
			}
		}
	}
	return near, interp
}

func abs(d int64) int64 { return int64(math.Abs(float64(d))) }

func (p *Processor) emitJoin(ctx goka.Context, st *joinState, l joinRec) {
	sh := p.app.Share
	if sh != nil && p.cfg.Revocations != nil {
		if _, revoked := p.cfg.Revocations.Revoked(sh.Agreement); revoked {
			p.m.revoked.Inc() // a join share under a revoked agreement writes nothing
			return
		}
	}
	near, interp := p.match(st, l)
	ids := []string{l.ID}
	pl := JoinPayload{Left: l.F, Interpolated: interp}
	if near != nil {
		ids = append(ids, near.ID)
		d := near.TS - l.TS
		pl.Right, pl.DeltaMS = near.F, &d
		p.m.matched.Inc()
	} else {
		p.m.unmatched.Inc()
	}
	payload, _ := json.Marshal(pl)
	key := ctx.Key()
	if l.K != "" {
		key = l.K // a linked join: the state key is the link
	}
	tenant, device := identity(Source{Key: key})
	ingested := time.UnixMilli(l.I).UTC()
	rec := &schemas.AppRecord{
		EventID: EventID(p.app.Name, p.app.Join.Left, strings.Join(ids, "|")), App: p.app.Name, Tenant: tenant, SourceTenant: tenant,
		DeviceID: device, TS: time.UnixMilli(l.TS).UTC(), IngestedAt: ingested, SourceTopic: p.app.Join.Left, SourceEventIDs: ids,
		Payload: string(payload),
	}
	if sh != nil {
		// A join share: the left record is the receiving tenant's, the
		// right one the source tenant's, shared under the agreement.
		rec.Tenant, rec.SourceTenant, rec.Agreement = sh.Tenant, p.app.Tenant, &sh.Agreement
		if near != nil {
			ctx.Loopback(evidenceKey(hourOf(l.TS)), &shareMark{TS: l.TS, ID: idKey(rec.EventID)})
		}
	}
	ctx.Emit(goka.Stream(p.app.Target), key, rec)
	p.m.out.Inc()
}
