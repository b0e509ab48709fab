package dlq

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func setup(t *testing.T) (*kgo.Client, *schemas.Serde) {
	t.Helper()
	c := devtest.Kafka(t, kfake.SeedTopics(2, topics.DLQ, topics.RawSensor, topics.RawGPS))
	_, url := devtest.Registry(t)
	serde, _ := devtest.Schemas(t, url)
	kc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc, serde
}

func putLetter(t *testing.T, kc *kgo.Client, serde *schemas.Serde, id, stage, reason, source, payload string, recv time.Time) {
	t.Helper()
	dl := schemas.DeadLetter{ID: id, Stage: stage, Reason: reason, Message: "failed: " + reason, Source: source,
		Payload: []byte(payload), PayloadSize: int64(len(payload)), Headers: map[string]string{}, ReceivedAt: recv, TS: recv, IngestedAt: recv}
	v, err := serde.Encode(context.Background(), topics.DLQ, &dl)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.ProduceSync(context.Background(), &kgo.Record{Topic: topics.DLQ, Key: []byte(source), Value: v, Timestamp: recv}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func endSum(t *testing.T, kc *kgo.Client, ts ...string) int64 {
	t.Helper()
	ends, err := kadm.NewClient(kc).ListEndOffsets(context.Background(), ts...)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func TestIntegrationRedriveAfterFix(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	kc, serde := setup(t)
	recv := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	ts := recv.Add(-time.Minute).Format(time.RFC3339)
	// A payload an older decoder rejected but the current one accepts.
	putLetter(t, kc, serde, "a", "decode", "senml_unknown_unit", "devices/farm/cow-1/sensor",
		`{"ts":"`+ts+`","metric":"temperature","value":38.6,"unit":"Cel"}`, recv)
	// Rejected by an older schema (schema_invalid); the current one takes it.
	putLetter(t, kc, serde, "e", "validate", "schema_invalid", "devices/farm/cow-2/gps",
		`{"ts":"`+ts+`","lat":47.37,"lon":8.54}`, recv)
	// Still bad.
	putLetter(t, kc, serde, "b", "decode", "not_json", "devices/farm/cow-1/sensor", `not json`, recv)
	// A valid payload on a topic whose device id carries a bidi override:
	// the current bridge refuses the identity, so it stays a dead letter.
	putLetter(t, kc, serde, "f", "decode", "not_json", "devices/farm/cow\u202e1/sensor",
		`{"ts":"`+ts+`","metric":"temperature","value":38.6}`, recv)
	// Not the bridge's: a backfill dead letter.
	putLetter(t, kc, serde, "c", "backfill", "no_device", "s3://media/x.jpg", `{}`, recv)
	// Sparkplug B: its birth certificate is in the bridge's session only.
	putLetter(t, kc, serde, "g", "decode", "sparkplug_no_birth", "spBv1.0/farm/NDATA/edge-1", "\x08\x01", recv)
	// Too old for the window.
	putLetter(t, kc, serde, "d", "decode", "not_json", "devices/farm/cow-1/sensor", `{}`, recv.Add(-48*time.Hour))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	state := filepath.Join(t.TempDir(), "redriven.txt")
	o := RedriveOptions{Since: recv.Add(-time.Hour), StateFile: state, DryRun: true}
	res, err := Redrive(ctx, kc, serde, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scanned != 6 || res.Redriven != 2 || res.StillFailing != 2 || res.Reasons["invalid_identity"] != 1 || res.NotRedrivable != 2 || endSum(t, kc, topics.RawSensor, topics.RawGPS) != 0 {
		t.Fatalf("dry run %+v", res)
	}
	o.DryRun = false
	if res, err = Redrive(ctx, kc, serde, o); err != nil || res.Redriven != 2 || res.Records != 2 {
		t.Fatalf("redrive %+v %v", res, err)
	}
	if n := endSum(t, kc, topics.RawSensor); n != 1 {
		t.Fatalf("raw.sensor holds %d records, want 1", n)
	}
	if n := endSum(t, kc, topics.RawGPS); n != 1 {
		t.Fatalf("raw.gps holds %d records, want 1", n)
	}
	if n := endSum(t, kc, topics.DLQ); n != 7 {
		t.Fatalf("redrive wrote to the DLQ: %d records", n)
	}
	// Second re-drive: nothing new.
	if res, err = Redrive(ctx, kc, serde, o); err != nil || res.Redriven != 0 || res.AlreadyDone != 2 {
		t.Fatalf("second redrive %+v %v", res, err)
	}
	if n := endSum(t, kc, topics.RawSensor, topics.RawGPS); n != 2 {
		t.Fatalf("second redrive wrote: raw topics hold %d", n)
	}
	// The re-driven record carries the bridge's id and the header.
	cl, _ := kgo.NewClient(append(kc.Opts(), kgo.ConsumeTopics(topics.RawSensor), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	defer cl.Close()
	var r *kgo.Record
	for r == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no record")
		}
		fs.EachRecord(func(x *kgo.Record) { r = x })
	}
	var sr schemas.SensorReading
	if _, err := serde.Decode(ctx, r.Value, &sr); err != nil {
		t.Fatal(err)
	}
	if string(r.Key) != "farm/cow-1" || sr.Tenant != "farm" || sr.Metric != "temperature" || sr.EventID == "" {
		t.Fatalf("record %+v key %s", sr, r.Key)
	}
	found := false
	for _, h := range r.Headers {
		found = found || (h.Key == HeaderRedriven && string(h.Value) == "a")
	}
	if !found {
		t.Fatalf("headers %v", r.Headers)
	}

	s, err := Stats(ctx, kc, serde, topics.DLQ, recv.Add(-72*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total != 7 || s.ByStage[0].Key != "decode" || s.ByStage[0].Count != 5 || len(s.ByReason) != 5 {
		t.Fatalf("stats %+v", s)
	}
	// Sources group by the routes table's families.
	if !slices.ContainsFunc(s.BySource, func(c Count) bool { return c.Key == "spBv1.0/+/NDATA/+" && c.Count == 1 }) ||
		!slices.ContainsFunc(s.BySource, func(c Count) bool { return c.Key == "devices/+/+/sensor" && c.Count == 4 }) {
		t.Fatalf("stats by source %+v", s.BySource)
	}
	if s, err := Stats(ctx, kc, serde, topics.DLQ, time.Now().Add(time.Hour), 2); err != nil || s.Total != 0 {
		t.Fatalf("stats after every record: %+v %v", s, err)
	}
	// Times before the epoch cover everything: -1 ms is Kafka's "latest"
	// and other negative timestamps are refused, if passed on.
	for _, since := range []time.Time{time.UnixMilli(-1).UTC(), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(0)} {
		if s, err := Stats(ctx, kc, serde, topics.DLQ, since, 2); err != nil || s.Total != 7 {
			t.Errorf("stats since %s: total %d, err %v; want all 7", since, s.Total, err)
		}
	}
	o.Since = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	if res, err := Redrive(ctx, kc, serde, o); err != nil || res.Scanned != 7 {
		t.Errorf("redrive since year 1: %+v %v; want all 7 scanned", res, err)
	}
	src := map[string]int{}
	for _, c := range s.BySource {
		src[c.Key] = c.Count
	}
	if src["devices/+/+/sensor"] != 4 || src["s3://media"] != 1 {
		t.Fatalf("by source %v", src)
	}
}

func TestRedriveOptions(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		name, since, until, reason, wantErr string
	}{
		{name: "ok duration", since: "24h"},
		{name: "ok times", since: "2026-11-22", until: "2026-11-23T00:00:00Z"},
		{name: "missing", since: "", wantErr: "--since: required"},
		{name: "garbage", since: "yesterday", wantErr: "--since"},
		{name: "reversed", since: "2026-11-23", until: "2026-11-22", wantErr: "must be before"},
		{name: "year 1 to 9999", since: "0001-01-01", until: "9999-12-31"},
		{name: "known reason", since: "1h", reason: "senml_unknown_unit"},
		{name: "unknown reason", since: "1h", reason: "senml_unkown_unit", wantErr: `--reason: unknown reason "senml_unkown_unit" (re-drivable reasons: coordinates_out_of_range, device_mismatch, `},
		{name: "reason of another stage", since: "1h", reason: "no_device", wantErr: `--reason: unknown reason "no_device"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := redriveOptions(c.since, c.until, c.reason, "", "", false, time.Hour, time.Minute, now)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
		})
	}
}

// TestIntegrationReadEndsAtATransactionMarker: a dead-letter partition
// whose last offset is a commit marker is read to its end, not waited on
// for ever.
func TestIntegrationReadEndsAtATransactionMarker(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	kc, serde := setup(t)
	tx, err := kgo.NewClient(append(kc.Opts(), kgo.TransactionalID("dlq-test"), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	dl := schemas.DeadLetter{ID: "t", Stage: "decode", Reason: "not_json", Message: "x", Source: "devices/f/d/sensor", Payload: []byte("x"),
		PayloadSize: 1, Headers: map[string]string{}, ReceivedAt: now, TS: now, IngestedAt: now}
	v, err := serde.Encode(ctx, topics.DLQ, &dl)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Topic: topics.DLQ, Partition: 0, Value: v, Timestamp: now}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var s Summary
	go func() {
		var err error
		s, err = Stats(ctx, kc, serde, topics.DLQ, now.Add(-time.Hour), 1)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || s.Total != 1 {
			t.Fatalf("stats %+v, err %v; want the one dead letter", s, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Read waited for ever on a partition ending in a transaction marker")
	}
}

// TestIntegrationRedriveSelectOutcomes: Select narrows a re-drive to the
// chosen letters and OnLetter reports, per letter, where its records go or
// why it still fails (what the console's dry run shows).
func TestIntegrationRedriveSelectOutcomes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	kc, serde := setup(t)
	recv := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	ts := recv.Add(-time.Minute).Format(time.RFC3339)
	putLetter(t, kc, serde, "ok", "decode", "senml_unknown_unit", "devices/farm/cow-1/sensor",
		`{"ts":"`+ts+`","metric":"temperature","value":38.6,"unit":"Cel"}`, recv)
	putLetter(t, kc, serde, "bad", "decode", "not_json", "devices/farm/cow-1/sensor", `not json`, recv)
	putLetter(t, kc, serde, "other", "decode", "senml_unknown_unit", "devices/farm/cow-2/sensor",
		`{"ts":"`+ts+`","metric":"temperature","value":38.7,"unit":"Cel"}`, recv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]Outcome{}
	o := RedriveOptions{Since: recv.Add(-time.Hour), DryRun: true,
		Select:   func(l Letter) bool { return l.ID != "other" },
		OnLetter: func(l Letter, oc Outcome) { got[l.ID] = oc }}
	res, err := Redrive(ctx, kc, serde, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scanned != 3 || res.Selected != 2 || len(got) != 2 {
		t.Fatalf("result %+v outcomes %+v", res, got)
	}
	if oc := got["ok"]; oc.Status != "redriven" || oc.Topic != topics.RawSensor || oc.Key != "farm/cow-1" || oc.Records != 1 {
		t.Fatalf("ok: %+v", oc)
	}
	if oc := got["bad"]; oc.Status != "still_failing" || oc.Reason != "not_json" || oc.Message == "" {
		t.Fatalf("bad: %+v", oc)
	}
	if n := endSum(t, kc, topics.RawSensor); n != 0 {
		t.Fatalf("dry run produced %d records", n)
	}
	o.DryRun = false
	if res, err = Redrive(ctx, kc, serde, o); err != nil || res.Redriven != 1 {
		t.Fatalf("redrive %+v %v", res, err)
	}
	if n := endSum(t, kc, topics.RawSensor); n != 1 {
		t.Fatalf("raw.sensor holds %d records, want only the selected one", n)
	}
}

// TestIntegrationRedriveChecksRegistry: a re-drive runs the bridge's
// registry check. A dead letter unknown_device is re-driven once its
// device is registered; one of a revoked device, or of a device still
// unknown, still fails with the bridge's reason.
func TestIntegrationRedriveChecksRegistry(t *testing.T) {
	re := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	if _, err := kadm.NewClient(re.Producer).CreateTopics(ctx, 2, 1, nil, topics.DLQ, topics.RawSensor); err != nil {
		t.Fatal(err)
	}
	if _, err := schemas.Register(ctx, re.SR, nil); err != nil {
		t.Fatal(err)
	}
	kc, serde := re.Producer, re.Serde
	re.AddDevice(t, registry.NewDevice{Tenant: "farm", ID: "cow-1"})
	re.AddDevice(t, registry.NewDevice{Tenant: "farm", ID: "cow-3"})
	if _, err := re.Store.SetStatus(ctx, "farm", "cow-3", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	recv := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	body := `{"ts":"` + recv.Add(-time.Minute).Format(time.RFC3339) + `","metric":"temperature","value":38.6}`
	putLetter(t, kc, serde, "a", "route", "unknown_device", "devices/farm/cow-1/sensor", body, recv) // registered since
	putLetter(t, kc, serde, "b", "route", "unknown_device", "devices/farm/cow-2/sensor", body, recv) // still unknown
	putLetter(t, kc, serde, "c", "decode", "not_json", "devices/farm/cow-3/sensor", body, recv)      // revoked since

	a, err := ingest.StartAdmission(ctx, []kgo.Opt{kgo.SeedBrokers(re.Brokers...)}, serde, ingest.RegistryAuto, "", devtest.Logger())
	if err != nil || a.Mode() != ingest.RegistryEnforce {
		t.Fatalf("admission: %v (mode %s)", err, a.Mode())
	}
	res, err := Redrive(ctx, kc, serde, RedriveOptions{Since: recv.Add(-time.Hour), Admission: a})
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 1 || res.StillFailing != 2 || res.Reasons["unknown_device"] != 1 || res.Reasons["device_revoked"] != 1 {
		t.Fatalf("redrive with the registry: %+v", res)
	}
	if n := endSum(t, kc, topics.RawSensor); n != 1 {
		t.Fatalf("raw.sensor holds %d records, want 1 (cow-1)", n)
	}
}
