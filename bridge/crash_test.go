package bridge

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// child is a `drover bridge` subprocess (the test binary re-executed).
type child struct {
	cmd      *exec.Cmd
	ready    chan struct{}
	exited   chan struct{}
	exitCode atomic.Int32
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envChild+"_ARGS="+strings.Join(append([]string{"bridge"}, args...), "\n"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, ready: make(chan struct{}), exited: make(chan struct{})}
	var logMu sync.Mutex
	var tail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"msg":"mqtt subscribed"`) {
				once.Do(func() { close(c.ready) })
			}
			logMu.Lock()
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			logMu.Unlock()
		}
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		c.exitCode.Store(int32(code))
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = cmd.Process.Kill()
			<-c.exited
		}
	})
	select {
	case <-c.ready:
	case <-c.exited:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("bridge subprocess exited before subscribing:\n%s", strings.Join(tail, "\n"))
	case <-time.After(60 * time.Second):
		t.Fatal("bridge subprocess not subscribed within 60s")
	}
	return c
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.exited
}

// seqOf extracts the sequence number a crash-test message carries: the
// value of a valid reading, or the "seq" string of an invalid one.
func seqOf(t *testing.T, r *kgo.Record, serde *schemas.Serde) int {
	t.Helper()
	ctx := context.Background()
	if r.Topic == topics.DLQ {
		var dl schemas.DeadLetter
		if _, err := serde.Decode(ctx, r.Value, &dl); err != nil {
			t.Fatal(err)
		}
		s := string(dl.Payload)
		i := strings.Index(s, `"bad-`)
		if i < 0 {
			t.Fatalf("unexpected dead letter %s: %s", dl.Reason, s)
		}
		n, _ := strconv.Atoi(s[i+5 : i+5+strings.IndexByte(s[i+5:], '"')])
		return n
	}
	var sr schemas.SensorReading
	if _, err := serde.Decode(ctx, r.Value, &sr); err != nil {
		t.Fatal(err)
	}
	return int(sr.Value)
}

// collect consumes raw.sensor and dlq.events until every seq in [0, n) was
// seen or the deadline passes; it returns how often each was seen.
func collect(t *testing.T, e *env, n int, d time.Duration) []int {
	t.Helper()
	seen := make([]int, n)
	distinct := 0
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topics.RawSensor, topics.DLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for distinct < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			s := seqOf(t, r, e.serde)
			if s < 0 || s >= n {
				t.Fatalf("seq %d out of range", s)
			}
			if seen[s]++; seen[s] == 1 {
				distinct++
			}
		})
	}
	if distinct < n {
		var missing []int
		for i, c := range seen {
			if c == 0 && len(missing) < 20 {
				missing = append(missing, i)
			}
		}
		t.Fatalf("%d of %d messages are in neither raw.sensor nor dlq.events; first missing: %v", n-distinct, n, missing)
	}
	return seen
}

// crashPayload is message seq: every 50th is invalid (a dead letter).
func crashPayload(seq int, nowMS int64) (topic string, payload []byte) {
	topic = fmt.Sprintf("devices/farm1/dev-%03d/sensor", seq%100)
	if seq%50 == 49 {
		return topic, fmt.Appendf(nil, `{"ts":%d,"metric":"seq","value":"bad-%d"}`, nowMS, seq)
	}
	return topic, fmt.Appendf(nil, `{"ts":%d,"metric":"seq","value":%d,"unit":"count"}`, nowMS, seq)
}

// publishAll publishes seqs [0, n) with QoS 1 from several connections and
// calls progress after each PUBACK.
func publishAll(t *testing.T, mqttURL string, n, conns int, progress func(int64)) {
	t.Helper()
	var done atomic.Int64
	var wg sync.WaitGroup
	nowMS := time.Now().UnixMilli()
	for c := 0; c < conns; c++ {
		p := newPublisher(t, mqttURL, fmt.Sprintf("crash-pub-%d", c), nil)
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for seq := c; seq < n && p.ctx.Err() == nil; seq += conns {
				topic, payload := crashPayload(seq, nowMS)
				p.publish(t, topic, payload, nil)
				if progress != nil {
					progress(done.Add(1))
				}
			}
		}(c)
	}
	wg.Wait()
}

func crashN() int {
	if s := os.Getenv("DROVER_CRASH_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 20000
}

// TestIntegrationBridgeCrash runs the bridge as a subprocess, publishes
// 20k QoS 1 messages (DROVER_CRASH_N to change), kills the bridge with
// SIGKILL mid-stream, restarts it and checks that every message is in
// raw.sensor or dlq.events; duplicates are allowed and reported.
func TestIntegrationBridgeCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newEnv(t)
	regURL := e.regURL
	mqttURL := devtest.Mosquitto(t)
	args := []string{
		"--mqtt-url", mqttURL, "--kafka-brokers", strings.Join(e.brokers, ","), "--schema-registry-url", regURL,
		"--mqtt-client-id", "crash-bridge", "--admin-addr", "127.0.0.1:0", "--dev-env=", "--downlink=false", // one token: the child splits lines and drops empty ones
	}
	first := startChild(t, args...)
	n := crashN()
	var killed atomic.Bool
	killAt := int64(n / 3)
	var second *child
	var secondMu sync.Mutex
	publishAll(t, mqttURL, n, 4, func(done int64) {
		if done == killAt && killed.CompareAndSwap(false, true) {
			go func() {
				first.kill9(t)
				t.Logf("bridge killed with SIGKILL after %d PUBACKs", done)
				c := startChild(t, args...)
				secondMu.Lock()
				second = c
				secondMu.Unlock()
			}()
		}
	})
	t.Logf("published %d messages", n)
	waitFor(t, 90*time.Second, "restarted bridge", func() bool {
		secondMu.Lock()
		defer secondMu.Unlock()
		return second != nil
	})
	if first.exitCode.Load() == 0 {
		t.Fatal("first bridge was not killed")
	}
	seen := collect(t, e, n, 180*time.Second)
	dups := 0
	for _, c := range seen {
		if c > 1 {
			dups += c - 1
		}
	}
	t.Logf("all %d messages landed in raw.sensor or dlq.events; %d duplicates (redelivered after the kill)", n, dups)
	// A clean stop after the crash: SIGTERM drains and exits 0.
	secondMu.Lock()
	s := second
	secondMu.Unlock()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
		if code := s.exitCode.Load(); code != 0 {
			t.Errorf("bridge exited with %d after SIGTERM, want 0", code)
		}
	case <-time.After(60 * time.Second):
		t.Error("bridge did not exit within 60s of SIGTERM")
	}
}
