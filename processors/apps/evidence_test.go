package apps

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

const shareApps = `
apps:
  - name: vet
    source: {topics: [raw.sensor], tenant: demo}
    query: SELECT value FROM raw.sensor
    target: apps.vet
    share: {tenant: vet, agreement: AGR-7}
`

func (g *testGroup) tick(t *testing.T, now time.Time) {
	t.Helper()
	if _, err := g.p.TickAll(context.Background(), now); err != nil {
		t.Fatalf("tick: %v", err)
	}
	g.tt.Catchup()
}

func evidences(t *testing.T, g *testGroup) []Evidence {
	t.Helper()
	q := g.ev
	var out []Evidence
	for {
		k, v, ok := q.Next()
		if !ok {
			return out
		}
		env, ok := v.(*schemas.Envelope)
		if !ok || env.EventType != EventEvidence || k != "AGR-7" || *env.Subject != "AGR-7" || *env.Tenant != "demo" {
			t.Fatalf("evidence record %s %+v", k, v)
		}
		var ev Evidence
		if err := json.Unmarshal([]byte(env.Payload), &ev); err != nil {
			t.Fatal(err)
		}
		if env.EventID != EvidenceID("vet", "AGR-7", ev.Hour) || !env.TS.Equal(ev.Hour.Add(time.Hour)) {
			t.Fatalf("evidence id %s, ts %s for hour %s", env.EventID, env.TS, ev.Hour)
		}
		out = append(out, ev)
	}
}

// TestShareEvidenceAndRevoke: per agreement and hour one evidence record
// once the hour is over, written again (same id, next version) after a
// late record; after a revocation nothing more is shared.
func TestShareEvidenceAndRevoke(t *testing.T) {
	rv := NewRevocations(nil, nil, nil)
	g := startGroup(t, shareApps, Config{Revocations: rv})
	hour := t0 // 10:00
	for i, at := range []time.Duration{5 * time.Minute, 20 * time.Minute, 59 * time.Minute} {
		r := reading("demo", "cow-1", "temperature", 38, 0)
		r.EventID, r.TS = "e"+string(rune('a'+i)), hour.Add(at)
		g.tt.Consume(topics.RawSensor, "demo/cow-1", r)
	}
	next := reading("demo", "cow-2", "temperature", 38, 0)
	next.EventID, next.TS = "next-hour", hour.Add(70*time.Minute)
	g.tt.Consume(topics.RawSensor, "demo/cow-2", next)

	g.tick(t, hour.Add(time.Hour+30*time.Second)) // the hour is over, but not EvidenceDelay ago
	if ev := evidences(t, g); len(ev) != 0 {
		t.Fatalf("evidence before the delay: %+v", ev)
	}
	g.tick(t, hour.Add(time.Hour+EvidenceDelay))
	ev := evidences(t, g)
	if len(ev) != 1 {
		t.Fatalf("%d evidence records, want 1: %+v", len(ev), ev)
	}
	want := Evidence{Agreement: "AGR-7", App: "vet", SourceTenant: "demo", ReceivingTenant: "vet", Hour: hour, RecordsShared: 3,
		FirstEventTime: hour.Add(5 * time.Minute), LastEventTime: hour.Add(59 * time.Minute), Version: 1}
	if ev[0] != want {
		t.Fatalf("evidence %+v, want %+v", ev[0], want)
	}
	g.tick(t, hour.Add(time.Hour+2*EvidenceDelay))
	if ev := evidences(t, g); len(ev) != 0 {
		t.Fatalf("evidence written twice: %+v", ev)
	}
	// A late record of the hour: the evidence is written again.
	late := reading("demo", "cow-3", "temperature", 38, 0)
	late.EventID, late.TS = "late", hour.Add(time.Minute)
	g.tt.Consume(topics.RawSensor, "demo/cow-3", late)
	g.tick(t, hour.Add(time.Hour+3*EvidenceDelay))
	ev = evidences(t, g)
	want.RecordsShared, want.FirstEventTime, want.Version = 4, hour.Add(time.Minute), 2
	if len(ev) != 1 || ev[0] != want {
		t.Fatalf("late evidence %+v, want %+v", ev, want)
	}
	// The next hour's evidence, when it is over.
	g.tick(t, hour.Add(2*time.Hour+EvidenceDelay))
	if ev := evidences(t, g); len(ev) != 1 || ev[0].RecordsShared != 1 || !ev[0].Hour.Equal(hour.Add(time.Hour)) {
		t.Fatalf("next hour's evidence %+v", ev)
	}

	_, out := drain(t, g.out)
	if len(out) != 5 {
		t.Fatalf("%d shared records before the revocation, want 5", len(out))
	}
	rv.add(Revocation{Agreement: "AGR-7", RevokedAt: hour.Add(3 * time.Hour)})
	after := reading("demo", "cow-1", "temperature", 38, 0)
	after.EventID, after.TS = "after", hour.Add(3*time.Hour+time.Minute)
	g.tt.Consume(topics.RawSensor, "demo/cow-1", after)
	if _, out := drain(t, g.out); len(out) != 0 {
		t.Fatalf("shared after the revocation: %+v", out)
	}
	if got := counter(t, g.reg, "vet", "revoked"); got != 1 {
		t.Fatalf("revoked = %v, want 1", got)
	}
	if got := counter(t, g.reg, "vet", "evidence"); got != 3 {
		t.Fatalf("evidence = %v, want 3", got)
	}
}

// TestShareEvidenceRedelivered: after a crash or a rebalance goka
// redelivers records processed but not committed, and with them their
// marks on the loop topic (or the loop message itself): the evidence counts
// each shared record once, by its source partition and offset.
func TestShareEvidenceRedelivered(t *testing.T) {
	g := startGroup(t, shareApps, Config{})
	hour := t0
	for i := range 3 {
		r := reading("demo", "cow-1", "temperature", 38, 0)
		r.EventID, r.TS = "e"+string(rune('a'+i)), hour.Add(time.Duration(i+1)*time.Minute)
		g.tt.Consume(topics.RawSensor, "demo/cow-1", r)
	}
	key := evidenceKey(hour.UnixMilli())
	table := string(goka.GroupTable(goka.Group(g.p.app.Group())))
	st, ok := g.tt.TableValue(goka.Table(table), key).(*evidenceState)
	if !ok || st.Records != 3 || len(st.Next) != 1 {
		t.Fatalf("evidence state %+v", st)
	}
	var src string
	var next int64
	for src, next = range st.Next {
	}
	loop := g.p.Graph().LoopStream().Topic()
	// The first and the last mark again, as a redelivery sends them.
	g.tt.Consume(loop, key, &shareMark{TS: hour.Add(time.Minute).UnixMilli(), Src: src, Offset: next - 3})
	g.tt.Consume(loop, key, &shareMark{TS: hour.Add(3 * time.Minute).UnixMilli(), Src: src, Offset: next - 1})
	// A new record of the hour counts.
	r := reading("demo", "cow-1", "temperature", 38, 0)
	r.EventID, r.TS = "ed", hour.Add(4*time.Minute)
	g.tt.Consume(topics.RawSensor, "demo/cow-1", r)
	g.tick(t, hour.Add(time.Hour+EvidenceDelay))
	ev := evidences(t, g)
	if len(ev) != 1 || ev[0].RecordsShared != 4 {
		t.Fatalf("evidence %+v, want 4 records shared (2 redelivered marks counted once)", ev)
	}
	if n := counter(t, g.reg, "vet", "duplicates"); n != 2 {
		t.Fatalf("duplicates = %v, want 2", n)
	}
	// The rows: each shared record's event id is the same on every
	// delivery, so app_records (keyed by it) holds 4.
	_, out := drain(t, g.out)
	ids := map[string]bool{}
	for _, o := range out {
		ids[o.EventID] = true
	}
	if len(ids) != 4 {
		t.Fatalf("%d distinct event ids in %d records, want 4", len(ids), len(out))
	}
}
