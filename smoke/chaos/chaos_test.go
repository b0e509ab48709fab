package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

var droverBin string

// DefaultStages are the stages the schedule kills when DROVER_CHAOS_STAGES
// is unset.
const DefaultStages = "bridge-a,bridge-b,process,sink"

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "drover-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	droverBin = filepath.Join(dir, "drover")
	build := exec.Command("go", "build", "-o", droverBin, "./cmd/drover")
	build.Dir = "../.."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building drover:", err)
		return 1
	}
	return m.Run()
}

func envInt(t *testing.T, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("%s: %q is not a positive integer", name, v)
	}
	return n
}

// stage is one drover subprocess under a supervisor that restarts it when
// it exits, as a deployment would: after its planned downtime when the
// chaos schedule killed it, after a second when it exited on its own (a
// crash, counted).
type stage struct {
	name  string
	args  []string
	admin string // host:port of its admin server
	logs  *lockedBuf

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	downFor  time.Duration
	stopping bool
	kills    int
	crashes  int
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 {
		keep := append([]byte(nil), l.b.Bytes()[l.b.Len()-(1<<20):]...)
		l.b.Reset()
		l.b.Write(keep)
	}
	return l.b.Write(p)
}

// tail returns the last max bytes written.
func (l *lockedBuf) tail(max int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

func (s *stage) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil
	}
	cmd := exec.Command(droverBin, append(s.args, "--admin-addr", s.admin)...)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.name, err)
	}
	done := make(chan struct{})
	s.cmd, s.done = cmd, done
	go s.supervise(cmd, done)
	return nil
}

func (s *stage) supervise(cmd *exec.Cmd, done chan struct{}) {
	_ = cmd.Wait()
	close(done)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	delay := s.downFor
	if delay == 0 {
		s.crashes++
		delay = time.Second
	}
	s.downFor = 0
	s.mu.Unlock()
	time.Sleep(delay)
	if err := s.start(); err != nil {
		fmt.Fprintf(s.logs, "chaos: restarting %s: %v\n", s.name, err)
	}
}

// waitReady polls the stage's /readyz until it answers 200.
func (s *stage) waitReady(t *testing.T, max time.Duration) {
	t.Helper()
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		resp, err := cl.Get("http://" + s.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %v", s.name, max)
}

// kill9 kills the stage with SIGKILL; the supervisor restarts it after down.
func (s *stage) kill9(down time.Duration) {
	s.mu.Lock()
	s.downFor = down
	s.kills++
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (s *stage) stop(t *testing.T) {
	s.mu.Lock()
	s.stopping = true
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack.
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// Known: `drover bridge` can hang in its downlink consumer's
		// LeaveGroup against the embedded Kafka after its group's members
		// were killed (reported to the lead). A stop hang is not what
		// this test measures (loss and duplicates), so it is logged with
		// the stacks; DROVER_CHAOS_STRICT_STOP=1 makes it a failure.
		report := t.Logf
		if os.Getenv("DROVER_CHAOS_STRICT_STOP") == "1" {
			report = t.Errorf
		}
		report("FINDING: %s did not stop within 60 s of SIGTERM; its output with the goroutine dump (SIGQUIT):\n%s", s.name, s.logs.tail(64<<10))
	}
}

// TestIntegrationChaos is `make chaos`.
func TestIntegrationChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts drover dev and four stage processes")
	}
	if os.Getenv("DROVER_CHAOS") != "1" {
		// Opt-in until the stages rejoin their consumer groups promptly
		// after SIGKILL on the embedded Kafka (smoke/README.md, "Open
		// findings"): today it fails about every other run.
		t.Skip("chaos test is opt-in: DROVER_CHAOS=1 (make chaos); it is red until the open findings in smoke/README.md are fixed")
	}
	n := envInt(t, "DROVER_CHAOS_N", 3000)
	secs := envInt(t, "DROVER_CHAOS_SECONDS", 30)
	seed := uint64(envInt(t, "DROVER_CHAOS_SEED", time.Now().UnixNano()&0x7fffffffffff))
	t.Logf("chaos: seed %d (replay with DROVER_CHAOS_SEED=%d), %d messages over %d s", seed, seed, n, secs)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	dir := t.TempDir()
	envFile := filepath.Join(dir, "dev.env")
	logs := &lockedBuf{}
	dev := &stage{name: "dev", admin: freeAddr(t), args: []string{"dev", "--no-pipeline", "--dev-env", "",
		"--data-dir", filepath.Join(dir, "data"), "--env-file", envFile,
		"--mqtt-port", "0", "--kafka-port", "0", "--registry-port", "0", "--s3-port", "0"}}
	// drover dev has no --admin-addr: start it by hand.
	devCmd := exec.Command(droverBin, dev.args...)
	devCmd.Stdout, devCmd.Stderr = logs, logs
	if err := devCmd.Start(); err != nil {
		t.Fatal(err)
	}
	devDone := make(chan struct{})
	dev.cmd, dev.done = devCmd, devDone
	dev.stopping = true // no supervisor: dev is not part of the schedule
	go func() { _ = devCmd.Wait(); close(devDone) }()
	dev.logs = logs
	var stages []*stage
	t.Cleanup(func() {
		dev.stop(t)
		if t.Failed() {
			t.Logf("drover dev output (tail):\n%s", logs.tail(8000))
			for _, s := range stages {
				t.Logf("%s output (tail):\n%s", s.name, s.logs.tail(8000))
			}
		}
	})
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(envFile); err == nil {
			break
		}
		select {
		case <-dev.done:
			t.Fatal("drover dev exited before writing its env file")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("drover dev wrote no env file within 3 minutes")
		}
	}
	env, err := devstack.ReadEnvFile(envFile)
	if err != nil {
		t.Fatal(err)
	}

	stages = []*stage{
		{name: "bridge-a", args: []string{"bridge", "--dev-env", envFile, "--mqtt-client-id", "chaos-bridge-a"}},
		{name: "bridge-b", args: []string{"bridge", "--dev-env", envFile, "--mqtt-client-id", "chaos-bridge-b"}},
		{name: "process", args: []string{"process", "--dev-env", envFile}},
		{name: "sink", args: []string{"sink", "--dev-env", envFile}},
	}
	for _, s := range stages {
		s.admin = freeAddr(t)
		s.logs = &lockedBuf{}
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.stop(t) })
	}
	for _, s := range stages {
		s.waitReady(t, 2*time.Minute)
	}

	// The load: message i goes to device d(i%devices); every tenth is
	// invalid (truncated JSON carrying its number). Device "fever" gets a
	// reading every 30 s of event time, above 39.5 °C for 15 minutes.
	run := fmt.Sprintf("chaos-%d", seed%100000)
	const devices = 16
	base := time.Now().Add(-50 * time.Minute).Truncate(time.Minute)
	type msg struct {
		topic   string
		payload []byte
		valid   bool
		dev     string
		ts      time.Time
		value   float64
	}
	msgs := make([]msg, n)
	feverK := 0
	for i := range msgs {
		dev := fmt.Sprintf("%s-d%02d", run, i%devices)
		ts := base.Add(time.Duration(i) * time.Millisecond)
		v := 36 + float64(i%1000)/1000
		if i%10 == 9 {
			msgs[i] = msg{topic: "devices/chaos/" + dev + "/sensor", payload: fmt.Appendf(nil, `{"seq":%d,"ts":`, i), dev: dev}
			continue
		}
		if i%10 == 4 && feverK < 40 {
			dev = run + "-fever"
			ts = base.Add(time.Duration(feverK) * 30 * time.Second)
			v = 40
			if feverK >= 30 {
				v = 38
			}
			feverK++
		}
		msgs[i] = msg{topic: "devices/chaos/" + dev + "/sensor", valid: true, dev: dev, ts: ts, value: v,
			payload: fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%g}`, ts.UnixMilli(), v)}
	}

	u, _ := url.Parse(env["DROVER_MQTT_URL"])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ClientConfig: paho.ClientConfig{ClientID: run + "-pub"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cm.Disconnect(context.Background()) }()

	// DROVER_CHAOS_STAGES picks the stages the schedule kills (default all
	// four).
	victims := stages
	v := os.Getenv("DROVER_CHAOS_STAGES")
	if v == "" {
		v = DefaultStages
	}
	t.Logf("chaos: killing %s", v)
	{
		victims = nil
		for _, name := range strings.Split(v, ",") {
			i := slices.IndexFunc(stages, func(s *stage) bool { return s.name == strings.TrimSpace(name) })
			if i < 0 {
				t.Fatalf("DROVER_CHAOS_STAGES: unknown stage %q (want bridge-a, bridge-b, process, sink)", name)
			}
			victims = append(victims, stages[i])
		}
	}

	// The schedule: every 1-4 s, SIGKILL one stage and restart it 0.2-2 s later.
	pubDone := make(chan struct{})
	var schedule []string
	var chaosWG sync.WaitGroup
	chaosWG.Add(1)
	go func() {
		defer chaosWG.Done()
		for {
			wait := time.Duration(1000+rng.IntN(3000)) * time.Millisecond
			select {
			case <-pubDone:
				return
			case <-time.After(wait):
			}
			s := victims[rng.IntN(len(victims))]
			down := time.Duration(200+rng.IntN(1800)) * time.Millisecond
			schedule = append(schedule, fmt.Sprintf("%s down %v", s.name, down))
			s.kill9(down)
			time.Sleep(down)
		}
	}()

	interval := time.Duration(secs) * time.Second / time.Duration(n)
	start := time.Now()
	for i, m := range msgs {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if _, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: m.topic, Payload: m.payload}); err != nil {
			close(pubDone)
			chaosWG.Wait()
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	close(pubDone)
	chaosWG.Wait()
	t.Logf("published %d messages in %v; schedule: %s", n, time.Since(start).Round(time.Millisecond), strings.Join(schedule, ", "))
	for _, s := range stages {
		s.mu.Lock()
		crashes := s.crashes
		s.mu.Unlock()
		if crashes > 0 {
			t.Logf("%s exited on its own %d times (restarted); see its output", s.name, crashes)
		}
		s.waitReady(t, 2*time.Minute)
	}

	// Expected content.
	type key struct {
		dev string
		ts  int64
	}
	want := map[key]float64{}
	var invalid []string
	devs := map[string]bool{}
	for _, m := range msgs {
		devs[m.dev] = true
		if m.valid {
			want[key{m.dev, m.ts.UnixMicro()}] = m.value
		} else {
			invalid = append(invalid, string(m.payload))
		}
	}
	devList := make([]string, 0, len(devs))
	for d := range devs {
		devList = append(devList, d)
	}
	checksum := func(rows map[key]float64) string {
		ks := make([]key, 0, len(rows))
		for k := range rows {
			ks = append(ks, k)
		}
		slices.SortFunc(ks, func(a, b key) int {
			if c := strings.Compare(a.dev, b.dev); c != 0 {
				return c
			}
			return int(a.ts - b.ts)
		})
		h := sha256.New()
		for _, k := range ks {
			fmt.Fprintf(h, "%s|%d|%g\n", k.dev, k.ts, rows[k])
		}
		return hex.EncodeToString(h.Sum(nil))[:16]
	}

	db, err := pgx.Connect(ctx, env["DROVER_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())

	var got map[key]float64
	var rowCount int
	var dlq map[string]int
	var feverAlerts int
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got, rowCount = map[key]float64{}, 0
		rows, err := db.Query(ctx, `SELECT device_id, ts, value FROM sensor_readings WHERE tenant = 'chaos' AND device_id = ANY($1)`, devList)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var d string
			var ts time.Time
			var v float64
			if err := rows.Scan(&d, &ts, &v); err != nil {
				t.Fatal(err)
			}
			got[key{d, ts.UnixMicro()}] = v
			rowCount++
		}
		rows.Close()
		dlq = map[string]int{}
		rows, err = db.Query(ctx, `SELECT payload_excerpt FROM dead_letters WHERE device_id = ANY($1)`, devList)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p []byte
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			dlq[string(p)]++
		}
		rows.Close()
		if err := db.QueryRow(ctx, `SELECT count(*) FROM alerts WHERE rule = 'fever' AND device_id = $1`, run+"-fever").Scan(&feverAlerts); err != nil {
			t.Fatal(err)
		}
		if (rowCount >= len(want) && len(dlq) >= len(invalid) && feverAlerts >= 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	// dlq.events itself (the table above is its copy) and alerts.events.
	kafkaDLQ, firings := readTopics(ctx, t, env, run)

	lost, wrong := 0, 0
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			lost++
		case g != v:
			wrong++
		}
	}
	dlqLost, dlqDup, topicLost := 0, 0, 0
	for _, p := range invalid {
		switch c := dlq[p]; {
		case c == 0:
			dlqLost++
		case c > 1:
			dlqDup += c - 1
		}
		if kafkaDLQ[p] == 0 {
			topicLost++
		}
	}
	var firingRecords int
	for _, c := range firings {
		firingRecords += c
	}
	kills, crashes := map[string]int{}, map[string]int{}
	for _, s := range stages {
		s.mu.Lock()
		kills[s.name], crashes[s.name] = s.kills, s.crashes
		s.mu.Unlock()
	}
	t.Logf("chaos report: seed %d, kills %v, crashes (exits on their own, restarted) %v\n  valid: sent %d, rows %d, lost %d, duplicate rows %d, wrong values %d, checksum want %s got %s\n  invalid: sent %d, dead letters %d distinct, lost %d, duplicate dead letters %d; on dlq.events: lost %d\n  fever alerts: %d rows (want 1), %d distinct firings on alerts.events (want 1) in %d records",
		seed, kills, crashes, len(want), rowCount, lost, rowCount-(len(want)-lost), wrong, checksum(want), checksum(got),
		len(invalid), len(dlq), dlqLost, dlqDup, topicLost, feverAlerts, len(firings), firingRecords)
	if lost != 0 || rowCount != len(want) || wrong != 0 || checksum(want) != checksum(got) {
		t.Errorf("database: loss %d, rows %d of %d, wrong values %d (seed %d)", lost, rowCount, len(want), wrong, seed)
	}
	if topicLost != 0 {
		t.Errorf("dlq.events: %d of %d invalid messages missing (seed %d)", topicLost, len(invalid), seed)
	}
	if len(firings) != 1 {
		t.Errorf("alerts.events: %d distinct fever firings, want 1 (seed %d)", len(firings), seed)
	}
	if dlqLost != 0 {
		t.Errorf("dead letters: %d of %d invalid messages missing (seed %d)", dlqLost, len(invalid), seed)
	}
	if feverAlerts != 1 {
		t.Errorf("fever alerts: %d rows, want exactly 1 (seed %d)", feverAlerts, seed)
	}
}

// readTopics reads dlq.events (payload → count) and the fever firings on
// alerts.events (alert_id → records) of the run from the start.
func readTopics(ctx context.Context, t *testing.T, env map[string]string, run string) (map[string]int, map[string]int) {
	t.Helper()
	reg, err := sr.NewClient(sr.URLs(env["DROVER_SCHEMA_REGISTRY_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	brokers := strings.Split(env["DROVER_KAFKA_BROKERS"], ",")
	seed, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(seed).ListEndOffsets(ctx, topics.DLQ, topics.Alerts)
	seed.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics.DLQ, topics.Alerts),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	dlq, firings := map[string]int{}, map[string]int{}
	left := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if left[o.Topic] == nil {
				left[o.Topic] = map[int32]int64{}
			}
			left[o.Topic][o.Partition] = o.Offset
		}
	})
	pending := func() bool {
		for _, ps := range left {
			if len(ps) > 0 {
				return true
			}
		}
		return false
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for pending() {
		fs := cl.PollFetches(rctx)
		if rctx.Err() != nil {
			t.Fatalf("reading %s and %s: %v", topics.DLQ, topics.Alerts, rctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := left[r.Topic][r.Partition]; ok && r.Offset+1 >= end {
				delete(left[r.Topic], r.Partition)
			}
			switch r.Topic {
			case topics.DLQ:
				var d schemas.DeadLetter
				if _, err := serde.DecodeTopic(rctx, r.Topic, r.Value, &d); err == nil && strings.Contains(d.Source, run) {
					dlq[string(d.Payload)]++
				}
			case topics.Alerts:
				var a schemas.Alert
				if _, err := serde.DecodeTopic(rctx, r.Topic, r.Value, &a); err == nil && a.DeviceID == run+"-fever" &&
					a.Rule == "fever" && a.State == "firing" {
					firings[a.AlertID]++
				}
			}
		})
	}
	return dlq, firings
}
