package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

const sensorSchema = `{"type":"record","name":"Reading","namespace":"drover","fields":[{"name":"device","type":"string"}]}`

func TestMain(m *testing.M) { devtest.Main(m) }

func startStack(t *testing.T, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	start := time.Now()
	s, err := devstack.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stack started in %s", time.Since(start))
	return s
}

func produce(t *testing.T, brokers string, topic string, n int) {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Key: []byte("dev-1"), Value: fmt.Appendf(nil, "v%d", i)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func consume(t *testing.T, brokers string, topic string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(got), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

func TestIntegrationStackRestartKeepsData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	ctx := context.Background()
	dir := t.TempDir()
	s := startStack(t, devstack.Config{DataDir: dir})
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close(ctx)
		}
	})
	e := s.Endpoints()
	produce(t, e.KafkaBrokers, "raw.sensor", 5)

	rc, err := sr.NewClient(sr.URLs(e.SchemaRegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	ss, err := rc.CreateSchema(ctx, "raw.sensor-value", sr.Schema{Schema: sensorSchema, Type: sr.TypeAvro})
	if err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	pgPID := s.Postgres.PID()

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := syscall.Kill(-pgPID, 0); err != syscall.ESRCH {
		t.Fatalf("postgres process group %d alive after Close: %v", pgPID, err)
	}

	s2 := startStack(t, devstack.Config{DataDir: dir})
	t.Cleanup(func() { _ = s2.Close(ctx) })
	e2 := s2.Endpoints()
	got := consume(t, e2.KafkaBrokers, "raw.sensor", 5)
	if want := []string{"v0", "v1", "v2", "v3", "v4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records after restart = %v, want %v", got, want)
	}
	rc2, err := sr.NewClient(sr.URLs(e2.SchemaRegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	sch, err := rc2.SchemaByID(ctx, ss.ID)
	if err != nil {
		t.Fatalf("schema id %d after restart: %v", ss.ID, err)
	}
	if sch.Schema != sensorSchema {
		t.Fatalf("schema after restart = %s", sch.Schema)
	}
	conn, err = pgx.Connect(ctx, e2.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("row after restart: %d, %v", x, err)
	}
}

func TestIntegrationStackRestartKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	ctx := context.Background()
	s := startStack(t, devstack.Config{DataDir: t.TempDir(), NoPostgres: true})
	t.Cleanup(func() { _ = s.Close(ctx) })
	brokers := s.Endpoints().KafkaBrokers
	produce(t, brokers, "raw.gps", 3)
	if err := s.RestartKafka(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Kafka.ListenAddrs()[0]; got != brokers {
		t.Fatalf("kafka address after restart = %s, want %s", got, brokers)
	}
	if got := consume(t, brokers, "raw.gps", 3); len(got) != 3 {
		t.Fatalf("records after RestartKafka = %v", got)
	}
}

func TestEnvFile(t *testing.T) {
	e := devstack.Endpoints{
		MQTTURL:           "tcp://127.0.0.1:1884",
		MQTTWSURL:         "ws://127.0.0.1:8083/mqtt",
		KafkaBrokers:      "127.0.0.1:9092",
		SchemaRegistryURL: "http://127.0.0.1:8081",
		S3Endpoint:        "http://127.0.0.1:9000",
		S3Bucket:          "drover-media",
		DatabaseURL:       "postgres://postgres@127.0.0.1:5433/drover?sslmode=disable",
		MQTTUsername:      "drover-bridge",
		MQTTPasswordFile:  "/data/mqtt-bridge.password",
		Admin:             map[string]string{"processors": "http://127.0.0.1:9471", "bridge": "http://127.0.0.1:9410"},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "env")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteEnvFile(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantLines := []string{
		"DROVER_MQTT_URL=tcp://127.0.0.1:1884",
		"DROVER_MQTT_WS_URL=ws://127.0.0.1:8083/mqtt",
		"DROVER_KAFKA_BROKERS=127.0.0.1:9092",
		"DROVER_SCHEMA_REGISTRY_URL=http://127.0.0.1:8081",
		"DROVER_S3_ENDPOINT=http://127.0.0.1:9000",
		"DROVER_S3_BUCKET=drover-media",
		"DROVER_REPLICATION_CAP=1",
		"DROVER_DATABASE_URL=postgres://postgres@127.0.0.1:5433/drover?sslmode=disable",
		"DROVER_MQTT_USERNAME=drover-bridge",
		"DROVER_MQTT_PASSWORD_FILE=/data/mqtt-bridge.password",
		"AWS_ACCESS_KEY_ID=" + devstack.S3AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + devstack.S3SecretAccessKey,
		"AWS_REGION=us-east-1",
		"DROVER_DEV_BRIDGE_HEALTHZ=http://127.0.0.1:9410/healthz",
		"DROVER_DEV_BRIDGE_READYZ=http://127.0.0.1:9410/readyz",
		"DROVER_DEV_PROCESSORS_HEALTHZ=http://127.0.0.1:9471/healthz",
		"DROVER_DEV_PROCESSORS_READYZ=http://127.0.0.1:9471/readyz",
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
		t.Fatalf("env file:\n%s\nwant lines:\n%s", data, strings.Join(wantLines, "\n"))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	env, err := devstack.ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(wantLines) || env["DROVER_DATABASE_URL"] != e.DatabaseURL {
		t.Fatalf("ReadEnvFile = %v", env)
	}
}

func TestReadEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    map[string]string
		wantErr string
	}{
		{name: "plain", content: "A=1\nB=two words\n", want: map[string]string{"A": "1", "B": "two words"}},
		{name: "comments and blanks", content: "# c\n\nA=1\n", want: map[string]string{"A": "1"}},
		{name: "export and quotes", content: "export A=\"x y\"\nB='z'\nC=a=b\n", want: map[string]string{"A": "x y", "B": "z", "C": "a=b"}},
		{name: "empty value", content: "A=\n", want: map[string]string{"A": ""}},
		{name: "no equals", content: "A=1\nnonsense\n", wantErr: ":2: expected KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := devstack.ReadEnvFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIntegrationStackPortFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack")
	}
	ctx := context.Background()
	// Occupy one port per service.
	taken := map[string]int{}
	for _, svc := range []string{"mqtt", "kafka", "schema-registry", "s3"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		taken[svc] = l.Addr().(*net.TCPAddr).Port
	}
	logs := &syncWriter{w: new(bytes.Buffer)}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	cfg := devstack.Config{
		DataDir: t.TempDir(), NoPostgres: true, Logger: log,
		MQTTPort: taken["mqtt"], KafkaPort: taken["kafka"], RegistryPort: taken["schema-registry"], S3Port: taken["s3"],
	}
	strict := cfg
	strict.StrictPorts = true
	if _, err := devstack.Start(ctx, strict); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("StrictPorts with a taken port: err = %v", err)
	}

	s := startStack(t, cfg)
	t.Cleanup(func() { _ = s.Close(ctx) })
	e := s.Endpoints()
	got := map[string]string{"mqtt": e.MQTTURL, "kafka": e.KafkaBrokers, "schema-registry": e.SchemaRegistryURL, "s3": e.S3Endpoint}
	warned := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			Level, Msg, Service string
			Port                int
			WantedPort          int `json:"wanted_port"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if rec.Msg != "port taken, using another" {
			continue
		}
		if rec.Level != "WARN" || rec.WantedPort != taken[rec.Service] || rec.Port == rec.WantedPort || rec.Port == 0 {
			t.Fatalf("bad warning: %s", line)
		}
		if !strings.HasSuffix(got[rec.Service], fmt.Sprintf(":%d", rec.Port)) {
			t.Fatalf("%s endpoint %s does not use the port in the warning %s", rec.Service, got[rec.Service], line)
		}
		warned[rec.Service] = true
	}
	for svc := range taken {
		if !warned[svc] {
			t.Errorf("no warning for %s; logs:\n%s", svc, logs.String())
		}
		if strings.HasSuffix(got[svc], fmt.Sprintf(":%d", taken[svc])) {
			t.Errorf("%s uses the taken port: %s", svc, got[svc])
		}
	}
}

func TestIntegrationS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts S3")
	}
	ctx := context.Background()
	type created struct {
		bucket, key, etag, contentType string
		size                           int64
		meta                           map[string]string
	}
	events := make(chan created, 10)
	s := startStack(t, devstack.Config{DataDir: t.TempDir(), NoPostgres: true,
		OnObjectCreated: func(bucket, key string, size int64, etag, contentType string, meta map[string]string) {
			events <- created{bucket, key, etag, contentType, size, meta}
		}})
	t.Cleanup(func() { _ = s.Close(ctx) })
	cl := devtest.S3Client(t, s.Endpoints().S3Endpoint)
	bucket := s.Endpoints().S3Bucket

	keys := []string{"cam-1/2025/01/01/a.jpg", "cam-1/2025/01/01/b.jpg", "cam-2/c.mp4"}
	for _, k := range keys {
		_, err := cl.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(k), Body: strings.NewReader("data:" + k),
			ContentType: aws.String("image/jpeg"), Metadata: map[string]string{"device": "cam-1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		ev := <-events
		if ev.bucket != bucket || ev.key != k || ev.size != int64(len("data:"+k)) || ev.contentType != "image/jpeg" || len(ev.etag) != 32 {
			t.Fatalf("OnObjectCreated(%+v) for %s", ev, k)
		}
		if len(ev.meta) != 1 {
			t.Fatalf("meta = %v", ev.meta)
		}
	}
	out, err := cl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(keys[2])})
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(out.Body)
	out.Body.Close()
	if body.String() != "data:"+keys[2] {
		t.Fatalf("get = %q", body.String())
	}
	list, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("cam-1/")})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, o := range list.Contents {
		listed = append(listed, *o.Key)
	}
	sort.Strings(listed)
	if fmt.Sprint(listed) != fmt.Sprint(keys[:2]) {
		t.Fatalf("list cam-1/ = %v", listed)
	}
	// Objects are files on disk.
	if _, err := os.Stat(filepath.Join(s.DataDir(), "s3", "buckets", bucket, "cam-2", "c.mp4")); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}
