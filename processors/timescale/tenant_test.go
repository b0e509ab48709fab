package timescale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"slices"
	"testing"

	"github.com/drover-iot/drover/schemas"
)

// tenantCopy is b with every row moved to tenant (dead letters get new ids).
func tenantCopy(b *Batch, tenant string) *Batch {
	c := *b
	c.Readings = slices.Clone(b.Readings)
	for i := range c.Readings {
		c.Readings[i].Tenant = tenant
	}
	c.Fixes = slices.Clone(b.Fixes)
	for i := range c.Fixes {
		c.Fixes[i].Tenant = tenant
	}
	c.Media = slices.Clone(b.Media)
	for i := range c.Media {
		c.Media[i].Tenant = tenant
	}
	c.Features = slices.Clone(b.Features)
	for i := range c.Features {
		c.Features[i].Tenant, c.Features[i].FeatureID = tenant, tenant+"-"+c.Features[i].FeatureID
	}
	c.Alerts = slices.Clone(b.Alerts)
	for i := range c.Alerts {
		c.Alerts[i].Tenant, c.Alerts[i].AlertID = tenant, tenant+"-"+c.Alerts[i].AlertID
	}
	c.States = slices.Clone(b.States)
	for i := range c.States {
		c.States[i].Tenant = tenant
	}
	c.Devices = slices.Clone(b.Devices)
	for i := range c.Devices {
		c.Devices[i].Tenant = tenant
	}
	c.DeadLetters = slices.Clone(b.DeadLetters)
	for i := range c.DeadLetters {
		t := tenant
		c.DeadLetters[i].Tenant, c.DeadLetters[i].ID = &t, tenant+"-"+c.DeadLetters[i].ID
	}
	return &c
}

// TestIntegrationGrantTenant: a role granted tenant farm reads farm's rows
// of every table and rollup and none of farm2's (the same device ids), may
// not read the tables themselves, and cannot write.
func TestIntegrationGrantTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, layout := migratedDB(t)
	w := testWriter(t, dbURL, layout)
	ctx := context.Background()
	for _, tenant := range []string{"farm", "farm2"} {
		b := tenantCopy(sampleBatch(), tenant)
		b.Commands = []schemas.CommandStatus{{CommandID: "c1", Tenant: tenant, DeviceID: "cow-1", Name: "ping", Status: "queued",
			CreatedAt: at(1, 0), TS: at(1, 0), IngestedAt: at(1, 0)}}
		if _, err := w.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		// A stream app's record shared by tenant "source" with this tenant:
		// the receiving tenant owns the row.
		agreement := "AGR-" + tenant
		if _, err := w.Write(ctx, &Batch{Apps: []AppRecord{{AppRecord: schemas.AppRecord{EventID: "app-" + tenant, App: "share", Tenant: tenant,
			SourceTenant: "source", DeviceID: "cow-1", TS: at(1, 0), IngestedAt: at(1, 1), SourceTopic: "raw.sensor",
			SourceEventIDs: []string{"r1"}, Agreement: &agreement, Payload: `{"value": 38.5}`}, KafkaTopic: "apps.share"}}}); err != nil {
			t.Fatal(err)
		}
	}
	admin := connect(t, dbURL)
	if _, err := RefreshRollups(ctx, admin, layout); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	role, password := "t_farm_"+hex.EncodeToString(b[:3]), hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("creating a login (the test login needs CREATEROLE): %v", err)
	}
	t.Cleanup(func() {
		c := connect(t, dbURL)
		_, _ = c.Exec(context.Background(), `DROP SCHEMA IF EXISTS "tenant_farm" CASCADE`)
		_, _ = c.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	if _, err := GrantTenant(ctx, admin, layout.Schema, "farm", "drover_analyst"); err == nil {
		t.Fatal("granting a tenant to drover_analyst was accepted")
	}
	if _, err := GrantTenant(ctx, admin, layout.Schema, "farm", "nobody_here"); err == nil {
		t.Fatal("granting a tenant to a missing role was accepted")
	}
	g, err := GrantTenant(ctx, admin, layout.Schema, "farm", role)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alerts", "app_records", "commands", "dead_letters", "device_state", "devices", "features", "gps_distance_daily", "gps_fixes", "media_objects",
		"sensor_readings", "sensor_readings_daily", "sensor_readings_hourly"}
	if !slices.Equal(g.Relations, want) {
		t.Fatalf("tenant views %v, want %v", g.Relations, want)
	}
	// Again (idempotent).
	if _, err := GrantTenant(ctx, admin, layout.Schema, "farm", role); err != nil {
		t.Fatalf("second grant: %v", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	c := connect(t, u.String())
	for _, rel := range want {
		var mine, others int64
		if err := c.QueryRow(ctx, "SELECT count(*) FILTER (WHERE tenant = 'farm'), count(*) FILTER (WHERE tenant <> 'farm') FROM "+rel).Scan(&mine, &others); err != nil {
			t.Errorf("%s as %s: %v", rel, role, err)
			continue
		}
		if mine == 0 || others != 0 {
			t.Errorf("%s as %s: %d rows of farm, %d of other tenants; want some and none", rel, role, mine, others)
		}
		if _, err := c.Exec(ctx, "SELECT count(*) FROM "+layout.Schema+"."+rel); !permissionDenied(err) {
			t.Errorf("%s.%s as %s: err %v, want permission denied", layout.Schema, rel, role, err)
		}
	}
	for _, q := range []string{
		"DELETE FROM sensor_readings",
		"UPDATE device_state SET online = false",
		"UPDATE devices SET status = 'active'",
		"DELETE FROM devices",
		"INSERT INTO sensor_readings (ts, tenant, device_id, metric, value, ingested_at, event_id) VALUES (now(), 'farm', 'd', 'm', 1, now(), 'e')",
		"SELECT payload_excerpt FROM dead_letters",
	} {
		if _, err := c.Exec(ctx, q); err == nil {
			t.Errorf("%s as %s: allowed", q, role)
		}
	}
}
