package timescale

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/drover-iot/drover/cli"
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

// TestIntegrationLoginCommand: `drover sink login` makes a login whose own
// limits hold (a group role's settings would not reach it): statements and
// idle transactions are cut at their timeouts, and sessions beyond the
// connection limit are refused, so no analyst can take the connections or
// the locks the sink needs for long.
func TestIntegrationLoginCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	dbURL, _ := migratedDB(t)
	ctx := context.Background()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "t_login_" + hex.EncodeToString(b[:])
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("it's s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := connect(t, dbURL)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+name) })
	run := func(args ...string) (string, error) {
		cmd := Command(&cli.Conn{Log: testLog()})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"login"}, append(args, "--database-url", dbURL)...))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	for _, bad := range []struct{ args []string }{
		{[]string{name, "--role", "writer"}},
		{[]string{"Bad-Name"}},
		{[]string{"drover_writer"}},
		{[]string{name, "--connection-limit", "-3"}},
		{[]string{name, "--password-file", "/nonexistent"}},
	} {
		var ue *cli.UsageError
		if _, err := run(bad.args...); !errors.As(err, &ue) {
			t.Errorf("login %v: err = %v, want a usage error", bad.args, err)
		}
	}
	out, err := run(name, "--password-file", pwFile, "--connection-limit", "2", "--statement-timeout", "1s", "--idle-in-transaction-timeout", "1s")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "at most 2 connections") {
		t.Errorf("login printed %q", out)
	}
	u, _ := url.Parse(dbURL)
	u.User = url.UserPassword(name, "it's s3cret")
	login := func() (*pgx.Conn, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return pgx.Connect(cctx, u.String())
	}
	c1, err := login()
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	defer c1.Close(ctx)
	var analyst bool
	if err := c1.QueryRow(ctx, "SELECT pg_has_role(current_user, 'drover_analyst', 'MEMBER')").Scan(&analyst); err != nil || !analyst {
		t.Errorf("login in drover_analyst: %v, %v", analyst, err)
	}
	if _, err := c1.Exec(ctx, "SELECT pg_sleep(3)"); !isCode(err, "57014") {
		t.Errorf("a 3 s statement: err = %v, want it cancelled by statement_timeout", err)
	}
	c2, err := login()
	if err != nil {
		t.Fatalf("second session: %v", err)
	}
	defer c2.Close(ctx)
	if c3, err := login(); err == nil || !strings.Contains(err.Error(), "too many connections") {
		if c3 != nil {
			c3.Close(ctx)
		}
		t.Errorf("third session: err = %v, want the connection limit to refuse it", err)
	}
	tx, err := c2.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM sensor_readings"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if _, err := tx.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a transaction idle for 2 s survived idle_in_transaction_session_timeout 1s")
	}
	// Again, as an operator: membership moves, limits stay as given.
	if _, err := run(name, "--role", "operator"); err != nil {
		t.Fatal(err)
	}
	var operator, direct bool
	if err := admin.QueryRow(ctx, `SELECT pg_has_role($1, 'drover_operator', 'MEMBER'),
		EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
		        WHERE u.rolname = $1 AND r.rolname = 'drover_analyst')`, name).Scan(&operator, &direct); err != nil || !operator || direct {
		t.Errorf("after --role operator: operator %v, direct analyst membership %v (%v)", operator, direct, err)
	}
}
