package timescale

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) != "" {
		os.Exit(childMain())
	}
	devtest.Main(m)
}

func testLog() *slog.Logger { return devtest.Logger() }

// connect opens a connection to url with the sink's settings (ParseURL:
// no server-side prepared statements, so it works through a
// transaction-pooling PgBouncer too), closed at the end of the test.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// migratedDB returns a fresh database migrated with --timescale=auto and
// its layout.
func migratedDB(t testing.TB) (string, Layout) {
	t.Helper()
	url := devtest.Postgres(t)
	c := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Migrate(ctx, c, ModeAuto, DefaultLayout(PathPostgres), testLog())
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return url, res.Layout
}

// testWriter returns a Writer for url, closed when the test ends.
func testWriter(t testing.TB, url string, layout Layout) *Writer {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(cfg, layout)
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func count(t testing.TB, c *pgx.Conn, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitFor polls cond every 100ms until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
}

// kafkaEnv is an embedded Kafka with every sink topic, a registry with the
// schemas registered, and a producer.
type kafkaEnv struct {
	cluster  *kfake.Cluster
	brokers  []string
	regURL   string
	reg      http.Handler
	serde    *schemas.Serde
	producer *kgo.Client
}

func newKafkaEnv(t testing.TB, partitions int32, opts ...kfake.Opt) *kafkaEnv {
	t.Helper()
	opts = append([]kfake.Opt{kfake.SeedTopics(partitions, SinkTopics...)}, opts...)
	cl := devtest.Kafka(t, opts...)
	reg, regURL := devtest.Registry(t)
	rc, err := sr.NewClient(sr.URLs(regURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, rc, SinkTopics); err != nil {
		t.Fatalf("register schemas: %v", err)
	}
	serde, err := schemas.NewSerde(rc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := kgo.NewClient(kgo.SeedBrokers(cl.ListenAddrs()...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &kafkaEnv{cluster: cl, brokers: cl.ListenAddrs(), regURL: regURL, reg: reg, serde: serde, producer: p}
}

// record encodes v for topic with key.
func (e *kafkaEnv) record(t testing.TB, topic, key string, v any) *kgo.Record {
	t.Helper()
	b, err := e.serde.Encode(context.Background(), topic, v)
	if err != nil {
		t.Fatalf("encode %s: %v", topic, err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
}

func (e *kafkaEnv) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := e.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// newSerdeFor returns a serde for the registry at url.
func newSerdeFor(t testing.TB, url string) *schemas.Serde {
	t.Helper()
	rc, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.NewSerde(rc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// day0 is the fixed start of the test data sets (a recent UTC midnight, so
// partitions are inside the accepted event-time range).
var day0 = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)

func at(h, m int) time.Time {
	return day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

func fmtID(parts ...any) string { return fmt.Sprint(parts...) }

func registryClient(t testing.TB, url string) *sr.Client {
	t.Helper()
	rc, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// setRole switches c to role. A login that is not a superuser needs to be
// a member of it first (it may grant that to itself if it has CREATEROLE),
// as on an external test server.
func setRole(t testing.TB, c *pgx.Conn, role string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.Exec(ctx, "RESET ROLE"); err != nil {
		t.Fatal(err)
	}
	var member bool
	if err := c.QueryRow(ctx, "SELECT pg_has_role(current_user, $1, 'USAGE')", role).Scan(&member); err != nil {
		t.Fatal(err)
	}
	if !member {
		if _, err := c.Exec(ctx, "GRANT "+role+" TO CURRENT_USER"); err != nil {
			t.Fatalf("grant %s to the test login: %v", role, err)
		}
	}
	if _, err := c.Exec(ctx, "SET ROLE "+role); err != nil {
		t.Fatalf("set role %s: %v", role, err)
	}
}
