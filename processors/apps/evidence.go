package apps

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// EvidenceDelay is how long after an hour ends (wall clock) a share app
// writes that hour's evidence record: records shared later in the same
// event-time hour (late data) update the evidence, which is written again
// with the same event id and a higher version.
const EvidenceDelay = time.Minute

// evidenceKeep is how long an hour's evidence stays in the group table
// after it was written (later records of that hour then start a new
// count, written with the same event id).
const evidenceKeep = 48 * time.Hour

// Evidence is the payload of an EventEvidence record: what one app shared
// under one agreement in one event-time hour.
type Evidence struct {
	Agreement       string    `json:"agreement"`
	App             string    `json:"app"`
	SourceTenant    string    `json:"source_tenant"`
	ReceivingTenant string    `json:"receiving_tenant"`
	Hour            time.Time `json:"hour"`
	RecordsShared   int64     `json:"records_shared"`
	FirstEventTime  time.Time `json:"first_event_time"`
	LastEventTime   time.Time `json:"last_event_time"`
	// Version counts the writes of this hour's evidence (1, then one more
	// per re-write after late records).
	Version int64 `json:"version"`
}

// evidenceState is one hour's evidence in the group table, under the key
// evidenceKey(hour).
type evidenceState struct {
	Hour    int64 `json:"h"` // Unix ms of the hour's start
	Records int64 `json:"n"`
	First   int64 `json:"f"` // event time, Unix ms
	Last    int64 `json:"l"`
	Emitted bool  `json:"e,omitempty"`
	Version int64 `json:"v,omitempty"`
	// WrittenAt is the wall-clock time of the last write (Unix ms).
	WrittenAt int64 `json:"w,omitempty"`
	// Next is, per source partition ("topic/partition"), the offset after
	// the last record counted: a record goka redelivers (processed, not
	// committed, before a crash or a rebalance) loops back its mark again,
	// and so does a redelivered loop message; both are recognised by an
	// offset below Next and counted once. One partition's marks reach the
	// hour's key in offset order (one producer, one loop partition).
	Next map[string]int64 `json:"o,omitempty"`
	// IDs are the counted records of a join share (the first 8 bytes of
	// their event ids, sorted): a join writes a record when the other
	// side's time has passed, not in source offset order, so its marks
	// are recognised by id. 8 bytes per record shared in the hour.
	IDs []uint64 `json:"ids,omitempty"`
}

// shareMark is the loop message of one shared record: its event time and
// where it was read (Src "topic/partition", Offset).
type shareMark struct {
	TS     int64  `json:"ts"`
	Src    string `json:"s,omitempty"`
	Offset int64  `json:"o,omitempty"`
	// ID is set instead of Src for a join share's record (idKey of its
	// event id).
	ID uint64 `json:"id,omitempty"`
	// Link, set instead of the rest, carries a record of a linked join to
	// the state of its link key (the loop topic serves both).
	Link *linkMsg `json:"j,omitempty"`
}

// linkMsg is one record of a linked join on its way to its link key.
type linkMsg struct {
	Topic string  `json:"t"`
	Rec   joinRec `json:"r"`
}

// idKey is the evidence's 8-byte form of an event id (hex).
func idKey(eventID string) uint64 {
	b, err := hex.DecodeString(eventID)
	if err != nil || len(b) < 8 {
		h := sha256.Sum256([]byte(eventID))
		b = h[:]
	}
	return binary.BigEndian.Uint64(b)
}

// markOf is the mark of a record shared at event time ts (Unix ms), read
// from ctx's topic, partition and offset.
func markOf(ctx goka.Context, ts int64) *shareMark {
	return &shareMark{TS: ts, Src: string(ctx.Topic()) + "/" + strconv.Itoa(int(ctx.Partition())), Offset: ctx.Offset()}
}

// evidenceKey is the group-table key of an hour's evidence. It cannot be a
// record key (those are TENANT/DEVICE).
func evidenceKey(hour int64) string { return "evidence@" + strconv.FormatInt(hour, 10) }

// EvidenceID is the deterministic event id of the evidence of app under
// agreement for the hour starting at hour.
func EvidenceID(app, agreement string, hour time.Time) string {
	h := sha256.Sum256([]byte(EventEvidence + "\x00" + app + "\x00" + agreement + "\x00" + strconv.FormatInt(hour.UnixMilli(), 10)))
	return hex.EncodeToString(h[:16])
}

// onShared counts one shared record in its hour (loop callback, on the
// partition of the hour's key).
func (p *Processor) onShared(ctx goka.Context, msg interface{}) {
	m, ok := msg.(*shareMark)
	if !ok {
		return
	}
	st, _ := ctx.Value().(*evidenceState)
	if st == nil {
		st = &evidenceState{Hour: hourOf(m.TS), First: m.TS, Last: m.TS}
	}
	if m.ID != 0 {
		i, found := slices.BinarySearch(st.IDs, m.ID)
		if found {
			p.m.duplicates.Inc()
			return
		}
		st.IDs = slices.Insert(st.IDs, i, m.ID)
	} else if m.Src != "" {
		if next, seen := st.Next[m.Src]; seen && m.Offset < next {
			p.m.duplicates.Inc()
			return
		}
		if st.Next == nil {
			st.Next = map[string]int64{}
		}
		st.Next[m.Src] = m.Offset + 1
	}
	st.Records++
	st.First, st.Last = min(st.First, m.TS), max(st.Last, m.TS)
	if st.Emitted {
		st.Emitted = false // late records: write the evidence again
	}
	ctx.SetValue(st)
}

// onTick writes the evidence of every hour that ended EvidenceDelay ago
// and forgets hours written evidenceKeep ago.
func (p *Processor) onTick(ctx goka.Context, msg interface{}) {
	st, ok := ctx.Value().(*evidenceState)
	if !ok || st == nil {
		return
	}
	now := tickTime(msg, p.clock)
	end := time.UnixMilli(st.Hour).Add(time.Hour)
	switch {
	case !st.Emitted && !now.Before(end.Add(EvidenceDelay)):
		st.Emitted, st.Version, st.WrittenAt = true, st.Version+1, now.UnixMilli()
		ctx.Emit(goka.Stream(topics.ThirdPartySharing), p.app.Share.Agreement, p.evidence(st, now))
		ctx.SetValue(st)
		p.m.evidence.Inc()
	case st.Emitted && now.Sub(time.UnixMilli(st.WrittenAt)) > evidenceKeep:
		ctx.Delete()
	}
}

func (p *Processor) evidence(st *evidenceState, now time.Time) *schemas.Envelope {
	a := p.app
	hour := time.UnixMilli(st.Hour).UTC()
	ev := Evidence{Agreement: a.Share.Agreement, App: a.Name, SourceTenant: a.Tenant, ReceivingTenant: a.Share.Tenant, Hour: hour,
		RecordsShared: st.Records, FirstEventTime: time.UnixMilli(st.First).UTC(), LastEventTime: time.UnixMilli(st.Last).UTC(), Version: st.Version}
	payload, _ := json.Marshal(ev) // plain struct: cannot fail
	tenant, actor := a.Tenant, "app:"+a.Name
	return &schemas.Envelope{EventID: EvidenceID(a.Name, a.Share.Agreement, hour), EventType: EventEvidence, TS: hour.Add(time.Hour),
		IngestedAt: now.UTC().Truncate(time.Millisecond), Tenant: &tenant, Subject: &a.Share.Agreement, Actor: &actor, Payload: string(payload),
		Attributes: map[string]string{"agreement": a.Share.Agreement, "app": a.Name, "receiving_tenant": a.Share.Tenant,
			"version": strconv.FormatInt(st.Version, 10)}}
}

func hourOf(ms int64) int64 { return ms - ((ms%3600000)+3600000)%3600000 }

func tickTime(msg interface{}, clock func() time.Time) time.Time {
	if t, ok := msg.(time.Time); ok && !t.IsZero() {
		return t
	}
	return clock()
}
