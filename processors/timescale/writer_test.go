package timescale

import (
	"context"
	"testing"
	"time"

	"github.com/drover-iot/drover/schemas"
)

// sampleBatch has one row or more for every table.
func sampleBatch() *Batch {
	return &Batch{
		Readings: []schemas.SensorReading{
			{EventID: "r1", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 1), Metric: "temperature", Value: 38.5, Unit: ptr("Cel"), Source: "mqtt", Attrs: map[string]string{"fw": "1.2"}},
			{EventID: "r2", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 10), IngestedAt: at(1, 11), Metric: "temperature", Value: 38.7, Unit: ptr("Cel"), Source: "mqtt"},
			// Same natural key as r1, replayed by backfill: writes nothing.
			{EventID: "r1", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(5, 0), Metric: "temperature", Value: 38.5, Unit: ptr("Cel"), Source: "backfill", Replayed: true},
			// A day long gone: its partition is created on demand.
			{EventID: "r3", Tenant: "farm", DeviceID: "cow-2", TS: time.Date(2001, 5, 5, 12, 0, 0, 0, time.UTC), IngestedAt: at(1, 0), Metric: "battery", Value: 3.9, Source: "mqtt"},
		},
		Fixes: []schemas.GPSFix{
			{EventID: "g1", Tenant: "farm", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 0), Lat: 47.0, Lon: 8.0, Alt: ptr(500.0), HDOP: ptr(0.9), Satellites: ptr(int32(9)), Source: "mqtt"},
			{EventID: "g2", Tenant: "farm", DeviceID: "cow-1", TS: at(2, 0), IngestedAt: at(2, 0), Lat: 47.001, Lon: 8.0, Source: "mqtt"},
		},
		Media: []schemas.MediaObject{
			{EventID: "m1", Tenant: "farm", DeviceID: "cam-1", TS: at(3, 0), IngestedAt: at(3, 0), Kind: "image2d", Bucket: "media", Key: "farm/cam-1/1.jpg", Size: 1234, ContentType: "image/jpeg", SHA256: ptr("abc")},
		},
		Features: []schemas.Feature{
			{FeatureID: "f1", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", WindowStart: at(1, 0), WindowEnd: at(2, 0), WindowSizeMS: 3600000, Count: 2, Mean: ptr(38.6), TS: at(2, 0), IngestedAt: at(2, 0)},
		},
		Alerts: []schemas.Alert{
			{AlertID: "a1", Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-1", State: "firing", Severity: "warning", Value: ptr(40.1), Threshold: ptr(39.5), Message: "fever", FiredAt: at(4, 0), TS: at(4, 0), IngestedAt: at(4, 0)},
		},
		States: []schemas.DeviceState{
			{Tenant: "farm", DeviceID: "cow-1", TS: at(4, 0), IngestedAt: at(4, 0), Online: true, LastSeen: at(4, 0), Lat: ptr(47.001), Lon: ptr(8.0), Battery: ptr(3.8), Metrics: map[string]float64{"temperature": 38.7}, ActiveAlerts: 1, UpdatedAt: at(4, 0)},
			// Older state of the same device in the same batch: loses.
			{Tenant: "farm", DeviceID: "cow-1", TS: at(3, 0), IngestedAt: at(3, 0), Online: false, LastSeen: at(3, 0), UpdatedAt: at(3, 0)},
		},
		DeadLetters: []DeadLetter{
			{DeadLetter: schemas.DeadLetter{ID: "dl1", Stage: "validate", Reason: "schema_mismatch", Message: "bad", Source: "devices/farm/cow-1/sensor", Payload: []byte(`{"x":1}`), PayloadSize: 7, ReceivedAt: at(5, 0), TS: at(5, 0), IngestedAt: at(5, 0)}},
		},
		Devices: []Device{
			{Tenant: "farm", DeviceID: "cow-1", Status: "active", Type: "collar", Labels: map[string]string{"herd": "north"}, OfflineTimeout: 2 * time.Hour,
				HasSecret: true, CreatedAt: at(0, 0), UpdatedAt: at(0, 0), IngestedAt: at(0, 0)},
			// A later change of the same device in the same batch: wins.
			{Tenant: "farm", DeviceID: "cow-1", Status: "active", Type: "collar", Labels: map[string]string{"herd": "south"}, OfflineTimeout: 2 * time.Hour,
				HasSecret: true, CreatedAt: at(0, 0), UpdatedAt: at(0, 30), IngestedAt: at(0, 30)},
		},
	}
}

func TestIntegrationWriterAllTables(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(cfg, layout)
	defer w.Close(context.Background())
	ctx := context.Background()
	got, err := w.Write(ctx, sampleBatch())
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	want := Counts{TableSensorReadings: 3, TableGPSFixes: 2, TableMediaObjects: 1, TableFeatures: 1, TableAlerts: 1, TableDeviceState: 1, TableDevices: 1, TableDeadLetters: 1}
	for table, n := range want {
		if got.Written[table] != n {
			t.Errorf("written[%s] = %d, want %d", table, got.Written[table], n)
		}
	}
	c := connect(t, url)
	checks := []struct {
		name string
		q    string
		want int64
	}{
		{"readings", "SELECT count(*) FROM sensor_readings", 3},
		{"reading kept first copy", "SELECT count(*) FROM sensor_readings WHERE event_id = 'r1' AND NOT replayed AND source = 'mqtt' AND unit = 'Cel' AND attrs->>'fw' = '1.2'", 1},
		{"old day", "SELECT count(*) FROM sensor_readings WHERE ts = '2001-05-05 12:00:00+00'", 1},
		{"fixes", "SELECT count(*) FROM gps_fixes WHERE satellites = 9 OR satellites IS NULL", 2},
		{"media", "SELECT count(*) FROM media_objects WHERE key = 'farm/cam-1/1.jpg' AND size = 1234 AND kind = 'image2d' AND sha256 = 'abc'", 1},
		{"features", "SELECT count(*) FROM features WHERE feature_id = 'f1' AND mean = 38.6 AND min IS NULL", 1},
		{"alerts", "SELECT count(*) FROM alerts WHERE alert_id = 'a1' AND state = 'firing' AND resolved_at IS NULL", 1},
		{"state newest", "SELECT count(*) FROM device_state WHERE device_id = 'cow-1' AND online AND active_alerts = 1 AND (metrics->>'temperature')::float8 = 38.7", 1},
		{"dead letters", "SELECT count(*) FROM dead_letters WHERE id = 'dl1' AND payload_excerpt = '{\"x\":1}'::bytea AND kafka_topic IS NULL", 1},
		{"device newest", "SELECT count(*) FROM devices WHERE device_id = 'cow-1' AND labels->>'herd' = 'south' AND offline_timeout = '2 hours' AND has_secret", 1},
	}
	for _, ch := range checks {
		if n := count(t, c, ch.q); n != ch.want {
			t.Errorf("%s: %s = %d, want %d", ch.name, ch.q, n, ch.want)
		}
	}

	// Idempotence: the same batch again writes nothing.
	again, err := w.Write(ctx, sampleBatch())
	if err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	if again.Written.Total() != 0 {
		t.Errorf("rewriting the same batch wrote %v, want nothing", again.Written)
	}
	for _, table := range Tables {
		before := map[string]int64{TableSensorReadings: 3, TableGPSFixes: 2, TableMediaObjects: 1, TableFeatures: 1, TableAlerts: 1, TableDeviceState: 1, TableDevices: 1, TableDeadLetters: 1}[table]
		if n := count(t, c, "SELECT count(*) FROM "+table); n != before {
			t.Errorf("after replay %s has %d rows, want %d", table, n, before)
		}
	}
}

func TestIntegrationWriterLifecycles(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()
	firing := schemas.Alert{AlertID: "a1", Rule: "fever", Kind: "threshold", Tenant: "farm", DeviceID: "cow-1", State: "firing", Severity: "warning",
		Value: ptr(40.1), Message: "fever", FiredAt: at(4, 0), TS: at(4, 0), IngestedAt: at(4, 0)}
	resolved := firing
	resolved.State, resolved.ResolvedAt, resolved.TS, resolved.Value = "resolved", ptr(at(5, 0)), at(5, 0), ptr(38.9)
	newState := schemas.DeviceState{Tenant: "farm", DeviceID: "cow-1", TS: at(6, 0), IngestedAt: at(6, 0), Online: true, LastSeen: at(6, 0), UpdatedAt: at(6, 0)}
	oldState := newState
	oldState.TS, oldState.UpdatedAt, oldState.Online = at(2, 0), at(2, 0), false

	steps := []struct {
		name       string
		batch      Batch
		wantWrote  int64
		wantAlert  string
		wantOnline bool
	}{
		{"firing", Batch{Alerts: []schemas.Alert{firing}, States: []schemas.DeviceState{newState}}, 2, "firing", true},
		{"resolved updates the row", Batch{Alerts: []schemas.Alert{resolved}}, 1, "resolved", true},
		{"replayed firing is older", Batch{Alerts: []schemas.Alert{firing}}, 0, "resolved", true},
		{"older state loses", Batch{States: []schemas.DeviceState{oldState}}, 0, "resolved", true},
		{"both in one batch, out of order", Batch{Alerts: []schemas.Alert{resolved, firing}, States: []schemas.DeviceState{newState, oldState}}, 0, "resolved", true},
	}
	for _, s := range steps {
		wrote, err := w.Write(ctx, &s.batch)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if wrote.Written.Total() != s.wantWrote {
			t.Errorf("%s: wrote %v, want %d rows", s.name, wrote.Written, s.wantWrote)
		}
		var state string
		var resolvedAt *time.Time
		var firedAt time.Time
		if err := c.QueryRow(ctx, "SELECT state, resolved_at, fired_at FROM alerts WHERE alert_id = 'a1'").Scan(&state, &resolvedAt, &firedAt); err != nil {
			t.Fatal(err)
		}
		if state != s.wantAlert || !firedAt.Equal(at(4, 0)) || (state == "resolved") != (resolvedAt != nil) {
			t.Errorf("%s: alert = %s fired %s resolved %v", s.name, state, firedAt, resolvedAt)
		}
		var online bool
		if err := c.QueryRow(ctx, "SELECT online FROM device_state WHERE device_id = 'cow-1'").Scan(&online); err != nil {
			t.Fatal(err)
		}
		if online != s.wantOnline {
			t.Errorf("%s: online = %t, want %t", s.name, online, s.wantOnline)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM alerts"); n != 1 {
		t.Errorf("alerts has %d rows, want 1 per alert id", n)
	}
}

func TestIntegrationMaintainPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	c := connect(t, url)
	ctx := context.Background()
	layout.RetentionDays, layout.PartitionsAheadDays = 30, 3
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	res, err := Maintain(ctx, c, layout, now)
	if err != nil {
		t.Fatal(err)
	}
	if layout.Timescale {
		if len(res.Created)+len(res.Dropped) != 0 {
			t.Fatalf("timescale path: Maintain = %+v, want no partition work", res)
		}
		return
	}
	if len(res.Created) != len(timeTables)*4 {
		t.Fatalf("created %v, want today and 3 days ahead for %d tables", res.Created, len(timeTables))
	}
	// Running it again creates nothing.
	if res, err = Maintain(ctx, c, layout, now); err != nil || len(res.Created) != 0 {
		t.Fatalf("second Maintain = %+v, %v; want nothing created", res, err)
	}
	// 40 days later: the old ones are past retention and dropped; data in
	// the kept ones survives.
	w := testWriter(t, url, layout)
	if _, err := w.Write(ctx, &Batch{Readings: []schemas.SensorReading{
		{EventID: "x", Tenant: "t", DeviceID: "d", Metric: "m", TS: now, IngestedAt: now},
		{EventID: "y", Tenant: "t", DeviceID: "d", Metric: "m", TS: now.AddDate(0, 0, 35), IngestedAt: now},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(ctx, &Batch{DeadLetters: []DeadLetter{
		{DeadLetter: schemas.DeadLetter{ID: "old", Stage: "sink", Reason: "r", ReceivedAt: now, TS: now, IngestedAt: now}},
		{DeadLetter: schemas.DeadLetter{ID: "new", Stage: "sink", Reason: "r", ReceivedAt: now.AddDate(0, 0, 35), TS: now, IngestedAt: now}},
	}}); err != nil {
		t.Fatal(err)
	}
	app := func(id string, ts time.Time) AppRecord {
		return AppRecord{AppRecord: schemas.AppRecord{EventID: id, App: "a", Tenant: "t", SourceTenant: "t", DeviceID: "d", TS: ts, IngestedAt: ts,
			SourceTopic: "raw.sensor", SourceEventIDs: []string{id}, Payload: "{}"}, KafkaTopic: "apps.a"}
	}
	if _, err := w.Write(ctx, &Batch{Apps: []AppRecord{app("app-old", now), app("app-new", now.AddDate(0, 0, 35))}}); err != nil {
		t.Fatal(err)
	}
	later := now.AddDate(0, 0, 40)
	res, err = Maintain(ctx, c, layout, later)
	if err != nil {
		t.Fatal(err)
	}
	// app_records follow --retention-days unless they have their own.
	if res.AppRecordsDeleted != 1 || count(t, c, "SELECT count(*) FROM app_records WHERE event_id = 'app-new'") != 1 {
		t.Fatalf("app_records deleted: %d, want the 1 older than --retention-days", res.AppRecordsDeleted)
	}
	short := layout
	short.AppRecordsRetentionDays = 3
	if r, err := Maintain(ctx, c, short, later); err != nil || r.AppRecordsDeleted != 1 || count(t, c, "SELECT count(*) FROM app_records") != 0 {
		t.Fatalf("app_records with 3 days of retention: %+v, %v; want the 5-day-old row deleted", r, err)
	}
	if res.DeadLettersDeleted != 1 || count(t, c, "SELECT count(*) FROM dead_letters WHERE id = 'new'") != 1 {
		t.Fatalf("dead letters deleted: %d, want the 1 older than retention", res.DeadLettersDeleted)
	}
	if len(res.Dropped) != len(timeTables)*4 {
		t.Fatalf("dropped %v, want the 4 expired days of each table", res.Dropped)
	}
	if n := count(t, c, "SELECT count(*) FROM sensor_readings"); n != 1 {
		t.Fatalf("after retention sensor_readings has %d rows, want 1 (the recent one)", n)
	}
	// Old data arrives for a dropped day. The writer still believes the
	// partition exists (another sink's retention dropped it): the first
	// attempt fails as retryable and forgets its cache, the retry recreates it.
	old := &Batch{Readings: []schemas.SensorReading{{EventID: "z", Tenant: "t", DeviceID: "d", Metric: "m", TS: now, IngestedAt: now}}}
	_, err = w.Write(ctx, old)
	if err == nil || !isNoPartition(err) || IsDataError(err) {
		t.Fatalf("first write into a dropped day: err = %v, want a retryable missing-partition error", err)
	}
	if _, err := w.Write(ctx, old); err != nil {
		t.Fatalf("retried write into a dropped day: %v", err)
	}
}

// TestIntegrationWriterFeatureLateUpdates: the features group re-emits a
// window when a late record within the allowed lateness updates it (same
// feature_id and ts, late_updates one higher); the row must show the
// latest version, whatever order replays and batches bring them in.
func TestIntegrationWriterFeatureLateUpdates(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	c := connect(t, url)
	ctx := context.Background()
	first := schemas.Feature{FeatureID: "f1", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", WindowStart: at(1, 0), WindowEnd: at(1, 1),
		WindowSizeMS: 60000, Count: 1, Mean: ptr(38.5), TS: at(1, 1), IngestedAt: at(1, 2)}
	late := first
	late.Count, late.Mean, late.LateUpdates, late.IngestedAt = 2, ptr(38.75), 1, at(1, 3)
	later := late
	later.Count, later.Mean, later.LateUpdates, later.IngestedAt = 3, ptr(39.0), 2, at(1, 4)
	steps := []struct {
		name      string
		batch     []schemas.Feature
		wantCount int64
	}{
		{"first emission", []schemas.Feature{first}, 1},
		{"late update replaces it", []schemas.Feature{late}, 2},
		{"replay of the first emission changes nothing", []schemas.Feature{first}, 2},
		{"two versions in one batch, out of order", []schemas.Feature{later, first, late}, 3},
		{"replay of everything", []schemas.Feature{first, late, later}, 3},
	}
	for _, s := range steps {
		if _, err := w.Write(ctx, &Batch{Features: s.batch}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		var n, lateN int64
		var mean float64
		if err := c.QueryRow(ctx, "SELECT count, mean, late_updates FROM features WHERE feature_id = 'f1'").Scan(&n, &mean, &lateN); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n != s.wantCount || lateN != s.wantCount-1 {
			t.Errorf("%s: row has count %d (late_updates %d, mean %v), want count %d", s.name, n, lateN, mean, s.wantCount)
		}
	}
	if n := count(t, c, "SELECT count(*) FROM features"); n != 1 {
		t.Errorf("features has %d rows, want 1 per window", n)
	}
}

// TestIntegrationWriterStagedAfterConflict: a batch whose direct COPY meets
// a stored key is written staged (nothing twice, nothing lost), and so are
// the table's next stagedAfterConflict batches, counted in batches that
// have rows for it; then the direct COPY is tried again.
func TestIntegrationWriterStagedAfterConflict(t *testing.T) {
	url, layout := migratedDB(t)
	w := testWriter(t, url, layout)
	ctx := context.Background()
	rows := benchReadings(200)
	write := func(b *Batch) Result {
		t.Helper()
		res, err := w.Write(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	write(&Batch{Readings: rows[:100]})
	if d, s := w.Paths.Direct.Load(), w.Paths.Staged.Load(); d != 1 || s != 0 {
		t.Fatalf("first batch: %d direct, %d staged; want 1, 0", d, s)
	}
	// Half stored already: the direct COPY fails, the batch goes staged.
	res := write(&Batch{Readings: rows[50:150]})
	if res.Written[TableSensorReadings] != 50 || res.Skipped[TableSensorReadings] != 50 {
		t.Fatalf("overlapping batch: %+v", res)
	}
	if d, s := w.Paths.Direct.Load(), w.Paths.Staged.Load(); d != 1 || s != 1 {
		t.Fatalf("after the conflict: %d direct, %d staged; want 1, 1", d, s)
	}
	// Batches without readings do not count.
	for i := range 3 {
		write(&Batch{Fixes: []schemas.GPSFix{{EventID: fmtID("f", i), Tenant: "farm", DeviceID: "cow", TS: at(1, i), IngestedAt: at(1, i), Source: "gps"}}})
	}
	for i := range stagedAfterConflict {
		r := rows[150+i]
		write(&Batch{Readings: []schemas.SensorReading{r}})
	}
	if d, s := w.Paths.Direct.Load()-3, w.Paths.Staged.Load(); d != 1 || s != 1+stagedAfterConflict {
		t.Fatalf("readings batches after the conflict: %d direct, %d staged; want 1, %d", d, s, 1+stagedAfterConflict)
	}
	write(&Batch{Readings: rows[190:200]})
	if d := w.Paths.Direct.Load() - 3; d != 2 {
		t.Fatalf("after %d staged batches the direct COPY is not tried again (%d direct)", stagedAfterConflict, d)
	}
	if n := count(t, connect(t, url), "SELECT count(*) FROM sensor_readings"); n != 150+stagedAfterConflict+10 {
		t.Fatalf("%d readings stored, want %d", n, 150+stagedAfterConflict+10)
	}
}
