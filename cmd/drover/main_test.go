package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

var droverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "drover-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if droverBin, err = devtest.BuildDrover(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// drover runs the binary to completion and returns its exit code and output.
func drover(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(droverBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatalf("running drover %v: %v", args, err)
	}
	return 0, out.String()
}

// devProc is a running `drover dev`.
type devProc struct {
	cmd     *exec.Cmd
	envFile string
	mu      sync.Mutex
	log     bytes.Buffer
	done    chan error
}

func (p *devProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func startDev(t *testing.T, dataDir string, args ...string) *devProc {
	return startDevPipeline(t, dataDir, false, args...)
}

func startDevPipeline(t *testing.T, dataDir string, pipeline bool, args ...string) *devProc {
	t.Helper()
	p := &devProc{envFile: filepath.Join(dataDir, "dev.env"), done: make(chan error, 1)}
	all := []string{"dev", "--data-dir", dataDir, "--dev-env", "",
		"--mqtt-port", "0", "--mqtt-ws-port", "0", "--kafka-port", "0", "--registry-port", "0", "--s3-port", "0"}
	if !pipeline {
		all = append(all, "--no-pipeline")
	}
	all = append(all, args...)
	p.cmd = exec.Command(droverBin, all...)
	p.cmd.Env = append(os.Environ(), "DROVER_DATABASE_URL=")
	pr, pw, _ := os.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func (p *devProc) waitReady(t *testing.T) map[string]string {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			t.Fatalf("drover dev exited early: %v\n%s", err, p.Log())
		default:
		}
		if env, err := cli.ReadEnvFile(p.envFile); err == nil {
			return env
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no env file after 90s\n%s", p.Log())
	return nil
}

func (p *devProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("drover dev exited with %v after SIGTERM\n%s", err, p.Log())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("drover dev did not stop within 60s of SIGTERM\n%s", p.Log())
	}
}

// postgresRunning reports whether a postgres server process uses dataDir.
func postgresRunning(t *testing.T, dataDir string) bool {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, "postgres") && strings.Contains(cmdline, dataDir) {
			return true
		}
	}
	return false
}

func TestIntegrationDevLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole embedded stack")
	}
	dataDir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	p := startDev(t, dataDir)
	env := p.waitReady(t)
	for _, k := range []string{"DROVER_MQTT_URL", "DROVER_KAFKA_BROKERS", "DROVER_SCHEMA_REGISTRY_URL", "DROVER_S3_ENDPOINT", "DROVER_DATABASE_URL"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s: %v", k, env)
		}
	}
	if !strings.HasPrefix(env["DROVER_MQTT_URL"], "tcp://127.0.0.1:") || !strings.HasPrefix(env["DROVER_SCHEMA_REGISTRY_URL"], "http://127.0.0.1:") {
		t.Fatalf("unexpected endpoint forms: %v", env)
	}

	// The catalogue is applied: diff against the stack is clean (exit 0),
	// using the env file the way an operator's second terminal would.
	if code, out := drover(t, nil, "topics", "diff", "--replication-cap", "1", "--dev-env", p.envFile); code != 0 {
		t.Fatalf("topics diff exit %d:\n%s", code, out)
	}
	// Every schema is registered and matches.
	if code, out := drover(t, nil, "schemas", "check", "--dev-env", p.envFile); code != 0 {
		t.Fatalf("schemas check exit %d:\n%s", code, out)
	}
	// The database answers.
	pg, err := pgx.Connect(ctx, env["DROVER_DATABASE_URL"])
	if err != nil {
		t.Fatalf("database from env file: %v", err)
	}
	pg.Close(ctx)

	// Produce an Avro record before the restart.
	reg, err := sr.NewClient(sr.URLs(env["DROVER_SCHEMA_REGISTRY_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	unit := "Cel"
	want := schemas.SensorReading{EventID: "e-1", Tenant: "farm1", DeviceID: "cow-7", TS: time.UnixMilli(1_700_000_000_000).UTC(),
		IngestedAt: time.UnixMilli(1_700_000_000_500).UTC(), Metric: "temperature", Value: 38.6, Unit: &unit, Source: "sensor", Attrs: map[string]string{}}
	val, err := serde.Encode(ctx, topics.RawSensor, want)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env["DROVER_KAFKA_BROKERS"]))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.RawSensor, Key: []byte("cow-7"), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	// The operator's view: tail decodes it through the registry.
	if code, out := drover(t, nil, "tail", topics.RawSensor, "--from", "earliest", "--to", "latest", "--format", "json", "--dev-env", p.envFile); code != 0 || !strings.Contains(out, `"device_id":"cow-7"`) {
		t.Fatalf("tail exit %d, want the record decoded:\n%s", code, out)
	}

	p.stop(t)
	if postgresRunning(t, dataDir) {
		t.Fatalf("postgres still running for %s after drover dev stopped", dataDir)
	}
	if _, err := os.Stat(p.envFile); !os.IsNotExist(err) {
		t.Fatalf("env file left behind after stop (err=%v): a waiting script would use dead endpoints", err)
	}

	// Restart on the same data dir: the record and its schema id survive.
	p2 := startDev(t, dataDir)
	env2 := p2.waitReady(t)
	cl2, err := kgo.NewClient(kgo.SeedBrokers(env2["DROVER_KAFKA_BROKERS"]), kgo.ConsumeTopics(topics.RawSensor),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	var got *kgo.Record
	for got == nil && ctx.Err() == nil {
		fetches := cl2.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			if got == nil {
				got = r
			}
		})
	}
	if got == nil {
		t.Fatal("record produced before the restart not readable after it")
	}
	reg2, err := sr.NewClient(sr.URLs(env2["DROVER_SCHEMA_REGISTRY_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	serde2, err := schemas.NewSerde(reg2)
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.SensorReading
	if _, err := serde2.Decode(ctx, got.Value, &back); err != nil {
		t.Fatalf("decoding a pre-restart record after restart (schema id must still resolve): %v", err)
	}
	if back.DeviceID != want.DeviceID || back.Value != want.Value || !back.TS.Equal(want.TS) {
		t.Fatalf("got %+v, want %+v", back, want)
	}
	p2.stop(t)
	if postgresRunning(t, dataDir) {
		t.Fatal("postgres orphaned after the second stop")
	}
}

func TestIntegrationDevPortFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole embedded stack")
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	dataDir := t.TempDir()
	p := startDev(t, dataDir, "--kafka-port", fmt.Sprint(port))
	env := p.waitReady(t)
	if env["DROVER_KAFKA_BROKERS"] == fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("kafka claims taken port %d", port)
	}
	if !strings.Contains(p.Log(), fmt.Sprint(port)) {
		t.Fatalf("log does not mention the taken port %d:\n%s", port, p.Log())
	}
	p.stop(t)
}

func TestCLIBadInput(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		wantOut  string
	}{
		{name: "unknown command", args: []string{"nope"}, wantCode: 2, wantOut: "unknown command"},
		{name: "unknown flag", args: []string{"topics", "list", "--frobnicate"}, wantCode: 2, wantOut: "--frobnicate"},
		{name: "bad port", args: []string{"dev", "--mqtt-port", "70000", "--dev-env", ""}, wantCode: 2, wantOut: "--mqtt-port"},
		{name: "bad env value", env: []string{"DROVER_MQTT_PORT=abc"}, args: []string{"dev", "--dev-env", ""}, wantCode: 2, wantOut: "DROVER_MQTT_PORT"},
		{name: "missing catalogue file", args: []string{"topics", "list", "--catalogue", "/nonexistent/cat.yaml", "--dev-env", ""}, wantCode: 2, wantOut: "/nonexistent/cat.yaml"},
		{name: "unreachable broker", args: []string{"topics", "diff", "--kafka-brokers", "127.0.0.1:1", "--dev-env", ""}, wantCode: 1, wantOut: "127.0.0.1:1"},
		{name: "unreachable registry", args: []string{"schemas", "check", "--schema-registry-url", "http://127.0.0.1:1", "--dev-env", ""}, wantCode: 1, wantOut: "127.0.0.1:1"},
		{name: "bad dev alert rules", args: []string{"dev", "--alert-rules", "../../processors/alerts/testdata/bad-name.bad.yaml", "--dev-env", ""}, wantCode: 2, wantOut: `bad-name.bad.yaml: rule "Fever Alert": name`},
		{name: "missing dev alert rules", args: []string{"dev", "--alert-rules", "/nonexistent/rules.yaml", "--dev-env", ""}, wantCode: 2, wantOut: "/nonexistent/rules.yaml"},
		{name: "bad dev check interval", args: []string{"dev", "--alert-check-interval", "0s", "--dev-env", ""}, wantCode: 2, wantOut: "--alert-check-interval"},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantOut: "DROVER_"},
		{name: "missing dev env file", args: []string{"topics", "list", "--dev-env", "/nonexistent/dev.env"}, wantCode: 2, wantOut: "drover: --dev-env /nonexistent/dev.env: no such file"},
		{name: "missing dev env file by variable", env: []string{"DROVER_DEV_ENV=/nonexistent/dev.env"}, args: []string{"topics", "list"}, wantCode: 2, wantOut: "drover: DROVER_DEV_ENV /nonexistent/dev.env: no such file"},
		{name: "flag error names the command once", args: []string{"schemas", "show", "raw.sensor", "--format", "xml", "--dev-env", ""}, wantCode: 2, wantOut: "drover: schemas show: unknown flag: --format (see 'drover schemas show --help')"},
		{name: "argument error names the command", args: []string{"state", "get", "--dev-env", ""}, wantCode: 2, wantOut: "drover: state get: accepts 1 arg(s), received 0 (see 'drover state get --help')"},
		{name: "bridge argument", args: []string{"bridge", "extra", "--dev-env", ""}, wantCode: 2, wantOut: "drover: bridge takes no arguments"},
		{name: "no command", args: []string{"--dev-env", ""}, wantCode: 2, wantOut: "drover: a command is required: "},
		{name: "unknown subcommand", args: []string{"dlq", "purge", "--dev-env", ""}, wantCode: 2, wantOut: `drover: dlq: unknown command "purge" for "drover dlq"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := drover(t, tt.env, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tt.wantCode, tt.wantOut, out)
			}
			if code != 0 {
				// One error line with one "drover: " prefix (logs are JSON
				// lines on stderr and do not start with it).
				if n := strings.Count(out, "drover: "); n != 1 || strings.Contains(out, "drover: drover") {
					t.Fatalf("want exactly one error line with one drover: prefix, got %d:\n%s", n, out)
				}
			}
		})
	}
}

// TestIntegrationDevPipeline is what `make run` promises: the simulator's
// messages flow through the bridge, processors and sink into PostgreSQL, and
// SIGTERM then stops every stage cleanly.
func TestIntegrationDevPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole pipeline")
	}
	dataDir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := startDevPipeline(t, dataDir, true)
	env := p.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db, err := pgx.Connect(ctx, env["DROVER_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	want := map[string]string{
		"sensor readings": "SELECT count(*) FROM sensor_readings",
		"gps fixes":       "SELECT count(*) FROM gps_fixes",
		"device state":    "SELECT count(*) FROM device_state",
		"dead letters":    "SELECT count(*) FROM dead_letters WHERE stage IN ('decode','validate','route')",
		// The example stream app vet-share: the simulator's MQTT readings,
		// filtered by the app's goka group, shared with tenant vet.
		"app records": `SELECT count(*) FROM app_records WHERE app = 'vet-share' AND tenant = 'vet' AND source_tenant = 'demo'
			AND agreement = 'AGR-demo-vet-1' AND kafka_topic = 'apps.vet-share' AND payload->>'metric' = 'temperature'
			AND device_id LIKE 'collar-%' AND cardinality(source_event_ids) = 1`,
	}
	// A camera trap uploads an image: the embedded S3's notification goes
	// through the media stage to raw.image2d.meta and the sink.
	s3c := devtest.S3Client(t, env["DROVER_S3_ENDPOINT"])
	key := "image2d/farm1/trap-3/" + time.Now().UTC().Format("2006/01/02") + "/frame-0001.jpg"
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(env["DROVER_S3_BUCKET"]), Key: aws.String(key),
		Body: strings.NewReader("not really a jpeg"), ContentType: aws.String("image/jpeg")}); err != nil {
		t.Fatalf("put object: %v", err)
	}
	want["media object"] = "SELECT count(*) FROM media_objects WHERE key = '" + key + "' AND device_id = 'trap-3' AND kind = 'image2d'"
	deadline := time.Now().Add(2 * time.Minute)
	missing := map[string]bool{}
	for k := range want {
		missing[k] = true
	}
	for len(missing) > 0 && time.Now().Before(deadline) {
		for k := range missing {
			var n int64
			// Tables appear once the sink has migrated; errors mean "not yet".
			if err := db.QueryRow(ctx, want[k]).Scan(&n); err == nil && n > 0 {
				delete(missing, k)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("after 2 minutes of drover dev, no rows yet for %v\n%s", missing, p.Log())
	}
	db.Close(ctx)
	p.stop(t)
	if postgresRunning(t, dataDir) {
		t.Fatal("postgres orphaned after drover dev stopped")
	}
	for _, stage := range []string{"bridge", "processors", "sink", "simulator", "media"} {
		if !strings.Contains(p.Log(), `"msg":"stage stopped","stage":"`+stage+`"`) {
			t.Errorf("stage %s did not report a clean stop", stage)
		}
	}
}
