package timescale

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/schemas"
)

// loginAs creates a login (as the README tells a DBA to) in role, connects
// with it over the test database's URL, and drops it when the test ends.
// The test's own login needs CREATEROLE.
func loginAs(t testing.TB, dbURL, role string) *pgx.Conn {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	name, password := "t_"+strings.TrimPrefix(role, "drover_")+"_"+hex.EncodeToString(b[:4]), hex.EncodeToString(b[:])
	admin := connect(t, dbURL)
	ctx := context.Background()
	if _, err := admin.Exec(ctx, "CREATE ROLE "+name+" LOGIN PASSWORD '"+password+"' IN ROLE "+role); err != nil {
		t.Fatalf("creating a login in %s (the test login needs CREATEROLE): %v", role, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+name); err != nil {
			t.Errorf("dropping login %s: %v", name, err)
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(name, password)
	return connect(t, u.String()) // closed before the role is dropped (cleanups run last-in first-out)
}

func permissionDenied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42501"
}

// TestIntegrationRoleLogins logs in as an analyst and as an operator: the
// analyst reads every column of dead_letters but the raw bytes and the
// headers (which may carry device secrets), the operator reads those too;
// neither writes.
func TestIntegrationRoleLogins(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, layout := migratedDB(t)
	w := testWriter(t, dbURL, layout)
	ctx := context.Background()
	if _, err := w.Write(ctx, &Batch{
		Readings: []schemas.SensorReading{{EventID: "e", Tenant: "farm", DeviceID: "cow-1", Metric: "temperature", TS: at(1, 0), IngestedAt: at(1, 0), Value: 38}},
		DeadLetters: []DeadLetter{{DeadLetter: schemas.DeadLetter{ID: "d1", Stage: "validate", Reason: "schema_mismatch", Message: "bad",
			Source: "devices/farm/cow-1/sensor", Payload: []byte(`{"token":"s3cret"}`), PayloadSize: 18,
			Headers: map[string]string{"mqtt.user.auth": "s3cret"}, ReceivedAt: at(1, 0), TS: at(1, 0), IngestedAt: at(1, 0)}}},
	}); err != nil {
		t.Fatal(err)
	}
	analyst, operator := loginAs(t, dbURL, AnalystRole), loginAs(t, dbURL, OperatorRole)
	allowed := func(c *pgx.Conn, q string) {
		t.Helper()
		if _, err := c.Exec(ctx, q); err != nil {
			t.Errorf("%s as %s: %v", q, c.Config().User, err)
		}
	}
	denied := func(c *pgx.Conn, q string) {
		t.Helper()
		if _, err := c.Exec(ctx, q); !permissionDenied(err) {
			t.Errorf("%s as %s: err = %v, want permission denied", q, c.Config().User, err)
		}
	}
	const everyOtherColumn = `SELECT id, stage, reason, message, source, tenant, device_id, payload_size, truncated, content_type,
		received_at, ts, ingested_at, kafka_topic, kafka_partition, kafka_offset, written_at FROM dead_letters`
	allowed(analyst, everyOtherColumn)
	allowed(analyst, "SELECT reason, count(*) FROM dead_letters GROUP BY reason")
	allowed(analyst, "SELECT value FROM sensor_readings")
	denied(analyst, "SELECT payload_excerpt FROM dead_letters")
	denied(analyst, "SELECT headers FROM dead_letters")
	denied(analyst, "SELECT * FROM dead_letters")
	denied(analyst, "UPDATE dead_letters SET reason = 'x'")

	var payload []byte
	var secret string
	if err := operator.QueryRow(ctx, "SELECT payload_excerpt, headers->>'mqtt.user.auth' FROM dead_letters WHERE id = 'd1'").Scan(&payload, &secret); err != nil {
		t.Fatalf("operator reading the raw bytes: %v", err)
	}
	if string(payload) != `{"token":"s3cret"}` || secret != "s3cret" {
		t.Errorf("operator read %q and %q", payload, secret)
	}
	allowed(operator, "SELECT * FROM dead_letters")
	allowed(operator, "SELECT value FROM sensor_readings")
	denied(operator, "DELETE FROM dead_letters")
	denied(operator, "INSERT INTO sensor_readings (ts, tenant, device_id, metric, value, ingested_at, event_id) VALUES (now(), 't', 'd', 'm', 1, now(), 'e')")
}
