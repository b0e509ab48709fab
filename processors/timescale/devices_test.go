package timescale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/topics"
)

// registryStore runs a registry view and store on env's Kafka (the
// devices.registry topic is one of the sink's): the real writer of the
// registry's records.
func registryStore(t *testing.T, env *kafkaEnv) *registry.Store {
	t.Helper()
	kopts := []kgo.Opt{kgo.SeedBrokers(env.brokers...)}
	view, err := registry.NewView(kopts, env.serde)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- view.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := view.WaitReady(wctx); err != nil {
		t.Fatalf("registry view: %v", err)
	}
	return registry.NewStore(view, env.producer, env.serde, registry.WithActor("test"))
}

// TestIntegrationSinkDevices: the sink keeps devices in step with the
// registry written by registry.Store — the same device id in two tenants
// is two rows, status changes and label changes land, a deleted device's
// row goes, tenant entries are no rows, the credential's hash is nowhere,
// a registry record that does not decode is a dead letter without its
// bytes — and a role granted one tenant reads only that tenant's devices,
// checked with psql.
func TestIntegrationSinkDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	env := newKafkaEnv(t, 2)
	dbURL, layout := migratedDB(t)
	store := registryStore(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tenant := range []string{"farm", "farm2"} {
		if _, err := store.AddTenant(ctx, tenant, ""); err != nil {
			t.Fatal(err)
		}
	}
	added, err := store.AddDevices(ctx, []registry.NewDevice{
		{Tenant: "farm", ID: "cow-1", Type: "collar", Labels: map[string]string{"herd": "north", "paddock": "p7"}, OfflineTimeout: 2 * time.Hour},
		{Tenant: "farm2", ID: "cow-1", Type: "collar", Labels: map[string]string{"herd": "east"}},
		{Tenant: "farm", ID: "cow-2", Type: "collar"},
		{Tenant: "farm", ID: "lora-1", Type: "lorawan", AltIDs: map[string]string{"deveui": "70-B3-D5-7E-D0-00-12-34"}, NoSecret: true,
			CertFingerprints: []string{strings.Repeat("ab", 32)}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetStatus(ctx, "farm2", "cow-1", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetStatus(ctx, "farm", "cow-2", registry.StatusRevoked); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, "farm", "cow-2"); err != nil {
		t.Fatal(err)
	}
	// A record that does not decode, with a device's key.
	env.produce(t, &kgo.Record{Topic: topics.DevicesRegistry, Key: []byte("farm/cow-9"), Value: []byte("not avro, maybe a secret")})

	startSink(t, env, dbURL, nil)
	c := connect(t, dbURL)
	type row struct{ key, status, labels, timeout, alt string }
	want := []row{
		{"farm/cow-1", "active", `{"herd": "north", "paddock": "p7"}`, "02:00:00", "{}"},
		{"farm/lora-1", "active", "{}", "", `{"deveui": "70b3d57ed0001234"}`},
		{"farm2/cow-1", "suspended", `{"herd": "east"}`, "", "{}"},
	}
	var got []row
	waitFor(t, time.Minute, "devices in step with the registry", func() (bool, string) {
		got = nil
		rows, err := c.Query(ctx, `SELECT tenant || '/' || device_id, status, labels::text, coalesce(offline_timeout::text, ''), alt_ids::text
			FROM devices ORDER BY 1`)
		if err != nil {
			return false, err.Error()
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.key, &r.status, &r.labels, &r.timeout, &r.alt); err != nil {
				return false, err.Error()
			}
			got = append(got, r)
		}
		return slices.Equal(got, want), ""
	})
	if n := count(t, c, "SELECT count(*) FROM devices WHERE tenant = 'farm' AND device_id = 'cow-1' AND has_secret AND certificates = 0 AND device_type = 'collar'"); n != 1 {
		t.Errorf("farm/cow-1: want a secret, no certificate, type collar")
	}
	if n := count(t, c, "SELECT count(*) FROM devices WHERE device_id = 'lora-1' AND NOT has_secret AND certificates = 1 AND device_type = 'lorawan'"); n != 1 {
		t.Errorf("farm/lora-1: want no secret and one certificate")
	}
	// The credential is nowhere in the table: no column for it, and no
	// row holds the hash's bytes in any form.
	var cols []string
	if err := c.QueryRow(ctx, "SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'devices'").Scan(&cols); err != nil {
		t.Fatal(err)
	}
	for _, col := range cols {
		if strings.Contains(col, "hash") || strings.Contains(col, "salt") || strings.Contains(col, "fingerprint") || col == "secret" {
			t.Errorf("devices has column %s", col)
		}
	}
	d, ok := store.View().Device("farm", "cow-1")
	if !ok || d.Secret == nil {
		t.Fatal("farm/cow-1 has no secret in the view")
	}
	if n := count(t, c, "SELECT count(*) FROM devices d WHERE position($1 in d::text) > 0 OR position($2 in d::text) > 0",
		hex.EncodeToString(d.Secret.Hash), added[0].Secret); n != 0 {
		t.Errorf("a devices row holds the secret or its hash")
	}
	// The undecodable record: a dead letter naming it, without its bytes.
	waitFor(t, 30*time.Second, "the registry record's dead letter", func() (bool, string) {
		return count(t, c, "SELECT count(*) FROM dead_letters WHERE kafka_topic = 'devices.registry' AND reason = 'not_wire_format' AND tenant = 'farm' AND device_id = 'cow-9' AND payload_size = 24 AND length(payload_excerpt) = 0") == 1, ""
	})

	// A change after the first load: relabel, suspend, re-activate.
	if _, err := store.SetStatus(ctx, "farm", "cow-1", registry.StatusSuspended); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "farm/cow-1 suspended", func() (bool, string) {
		return count(t, c, "SELECT count(*) FROM devices WHERE tenant = 'farm' AND device_id = 'cow-1' AND status = 'suspended' AND labels->>'herd' = 'north'") == 1, ""
	})

	// Tenant isolation, checked with psql as a role granted farm.
	var b [8]byte
	_, _ = rand.Read(b[:])
	role, password := "t_devices_"+hex.EncodeToString(b[:3]), hex.EncodeToString(b[:])
	if _, err := c.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("creating a login (the test login needs CREATEROLE): %v", err)
	}
	t.Cleanup(func() {
		a := connect(t, dbURL)
		_, _ = a.Exec(context.Background(), `DROP SCHEMA IF EXISTS "tenant_farm" CASCADE`)
		_, _ = a.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	g, err := GrantTenant(ctx, c, layout.Schema, "farm", role)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(g.Relations, TableDevices) {
		t.Fatalf("grant-tenant views %v lack devices", g.Relations)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	out, err := psql(t, u.String(), "SELECT tenant || '/' || device_id || ' ' || status FROM devices ORDER BY 1")
	if err != nil {
		t.Fatalf("psql as %s: %v: %s", role, err, out)
	}
	if want := "farm/cow-1 suspended\nfarm/lora-1 active"; out != want {
		t.Errorf("psql as %s read devices:\n%s\nwant:\n%s", role, out, want)
	}
	for _, q := range []string{
		"SELECT count(*) FROM " + layout.Schema + ".devices",
		"UPDATE devices SET status = 'active'",
		"DELETE FROM devices",
	} {
		if out, err := psql(t, u.String(), q); err == nil || !strings.Contains(out, "permission denied") {
			t.Errorf("psql as %s: %s: err %v, output %q; want permission denied", role, q, err, out)
		}
	}
}

// psql runs one statement with psql (a client independent of pgx) and
// returns its unaligned output, trimmed.
func psql(t *testing.T, dbURL, q string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("psql")
	if err != nil {
		m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
		if len(m) == 0 {
			t.Fatal("psql not found: apt-get install -y postgresql-client (scripts/deps installs postgresql)")
		}
		bin = m[len(m)-1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbURL, "-c", q)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestIntegrationWriterRoleDeletes: a login holding only the writer role
// applies the tombstones of state.latest and devices.registry (0004 gave
// the writer no DELETE; 0009 does, on those two tables only).
func TestIntegrationWriterRoleDeletes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, layout := migratedDB(t)
	ctx := context.Background()
	if _, err := testWriter(t, dbURL, layout).Write(ctx, sampleBatch()); err != nil {
		t.Fatal(err)
	}
	wc := loginAs(t, dbURL, WriterRole)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(wc.Config().User, wc.Config().Password)
	w := testWriter(t, u.String(), layout)
	b := &Batch{}
	b.deleteState("farm/cow-1")
	b.deleteDevice("farm/cow-1")
	b.deleteDevice("farm") // a tenant's tombstone: nothing
	if len(b.DeviceDeletes) != 1 {
		t.Fatalf("device deletes %v, want farm/cow-1 only", b.DeviceDeletes)
	}
	res, err := w.Write(ctx, b)
	if err != nil {
		t.Fatalf("tombstones as the writer role: %v", err)
	}
	if res.Written[TableDevices] != 1 {
		t.Errorf("written %v, want devices 1", res.Written)
	}
	c := connect(t, dbURL)
	if n := count(t, c, "SELECT count(*) FROM device_state") + count(t, c, "SELECT count(*) FROM devices"); n != 0 {
		t.Errorf("%d device_state and devices rows left, want none", n)
	}
	if _, err := wc.Exec(ctx, "DELETE FROM sensor_readings"); !permissionDenied(err) {
		t.Errorf("writer deleting readings: err %v, want permission denied", err)
	}
}
