package bridge

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/topics"
)

// bareSubscriber is the benchmark's ceiling: a plain paho.golang v5
// subscriber with a persistent session that only acknowledges (paho's
// automatic acks). args: "url clientID group n"; n = 0 only creates the
// session and subscription. It exits 0 after n messages.
func bareSubscriber(args string) int {
	f := strings.Fields(args)
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bare: want url clientID group n")
		return 2
	}
	u, err := url.Parse(f[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	n, _ := strconv.ParseInt(f[3], 10, 64)
	var got atomic.Int64
	done := make(chan struct{})
	subscribed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls:            []*url.URL{u},
		KeepAlive:             30,
		SessionExpiryInterval: 3600,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/" + f[2] + "/devices/#", QoS: 1}}}); err == nil {
					subscribed <- struct{}{}
				}
			}()
		},
		ClientConfig: paho.ClientConfig{
			ClientID: f[1],
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
				if got.Add(1) == n {
					close(done)
				}
				return true, nil
			}},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if n == 0 {
		<-subscribed
	} else {
		select {
		case <-done:
		case <-time.After(30 * time.Minute):
			fmt.Fprintf(os.Stderr, "bare: got %d of %d\n", got.Load(), n)
			return 1
		}
	}
	time.Sleep(100 * time.Millisecond) // let the last PUBACKs go out
	dctx, dc := context.WithTimeout(context.Background(), 5*time.Second)
	defer dc()
	_ = cm.Disconnect(dctx)
	return 0
}

// benchN is the benchmark's message count: DROVER_BENCH_N or 200k.
func benchN() int {
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 200_000
}

// usage is the CPU time and peak RSS of an exited child.
type usage struct {
	cpu time.Duration
	rss int64 // bytes
}

func childUsage(ps *os.ProcessState) usage {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return usage{}
	}
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), rss: ru.Maxrss * 1024}
}

// BenchmarkBridgeDrain measures how fast the bridge drains a backlog of N
// (DROVER_BENCH_N, default 200k) QoS 1 JSON sensor messages (~200 bytes,
// 1000 devices) queued in a real mosquitto for its persistent session,
// until all are in Kafka (end offsets), against a bare paho subscriber
// that only acknowledges the same backlog. Both run as subprocesses so
// their CPU time and peak RSS are their own (Kafka and the registry run in
// the benchmark process). DROVER_BENCH_BRIDGE_ARGS adds bridge flags.
func BenchmarkBridgeDrain(b *testing.B) {
	n := benchN()
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		mqttURL := devtest.Mosquitto(b)
		bridgeArgs := []string{
			"bridge", "--mqtt-url", mqttURL, "--kafka-brokers", strings.Join(e.brokers, ","), "--schema-registry-url", e.regURL,
			"--mqtt-client-id", "bench-bridge", "--admin-addr", "127.0.0.1:0", "--dev-env=", "--downlink=false",
		}
		bridgeArgs = append(bridgeArgs, strings.Fields(os.Getenv("DROVER_BENCH_BRIDGE_ARGS"))...)
		bareArgs := fmt.Sprintf("%s bench-bare bare %d", mqttURL, 0)

		// 1. Create both persistent sessions and subscriptions, then go away.
		if out, err := childCmd(envChild+"=bare", envChild+"_ARGS="+bareArgs).CombinedOutput(); err != nil {
			b.Fatalf("bare subscriber setup: %v: %s", err, out)
		}
		setup := childCmd(envChild+"=1", envChild+"_ARGS="+strings.Join(bridgeArgs, "\n"))
		if err := runUntilSubscribed(setup); err != nil {
			b.Fatalf("bridge setup: %v", err)
		}

		// 2. Queue the backlog (each message goes to both sessions).
		t0 := time.Now()
		publishBacklog(b, mqttURL, n)
		b.Logf("queued %d messages in %s", n, time.Since(t0).Round(time.Millisecond))

		// 3. The ceiling: the bare subscriber drains its copy.
		b.ResetTimer()
		bare := childCmd(envChild+"=bare", envChild+"_ARGS="+fmt.Sprintf("%s bench-bare bare %d", mqttURL, n))
		start := time.Now()
		if out, err := bare.CombinedOutput(); err != nil {
			b.Fatalf("bare subscriber: %v: %s", err, out)
		}
		bareDur := time.Since(start)
		bareUse := childUsage(bare.ProcessState)

		// 4. The bridge drains its copy into Kafka.
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
		if err != nil {
			b.Fatal(err)
		}
		run := childCmd(envChild+"=1", envChild+"_ARGS="+strings.Join(bridgeArgs, "\n"))
		run.Stdout, run.Stderr = nil, nil
		start = time.Now()
		if err := run.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Minute)
		for {
			if got := e.endOffsets(b, cl, topics.RawSensor); got >= int64(n) {
				break
			}
			if time.Now().After(deadline) {
				_ = run.Process.Kill()
				b.Fatalf("bridge did not drain %d messages within 30m", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		bridgeDur := time.Since(start)
		b.StopTimer()
		_ = run.Process.Signal(syscall.SIGTERM)
		if err := run.Wait(); err != nil {
			b.Errorf("bridge exit: %v", err)
		}
		cl.Close()
		bridgeUse := childUsage(run.ProcessState)

		bridgeRate := float64(n) / bridgeDur.Seconds()
		bareRate := float64(n) / bareDur.Seconds()
		bridgeCPU := float64(bridgeUse.cpu.Microseconds()) / float64(n)
		bareCPU := float64(bareUse.cpu.Microseconds()) / float64(n)
		b.ReportMetric(bridgeRate, "bridge-msg/s")
		b.ReportMetric(bareRate, "bare-msg/s")
		b.ReportMetric(bridgeRate/bareRate, "ratio")
		b.ReportMetric(bridgeCPU, "bridge-cpu-µs/msg")
		b.ReportMetric(bareCPU, "bare-cpu-µs/msg")
		b.ReportMetric(float64(bridgeUse.rss)/(1<<20), "bridge-rss-MB")
		fmt.Printf("bridge drain: N=%d bridge %.0f msg/s (%s, %.1f µs CPU/msg, peak RSS %.1f MB) | bare paho subscriber %.0f msg/s (%s, %.1f µs CPU/msg, peak RSS %.1f MB) | ratio %.2f (target ≥ 0.8, ≤ 30 µs/msg, < 64 MB)\n",
			n, bridgeRate, bridgeDur.Round(time.Millisecond), bridgeCPU, float64(bridgeUse.rss)/(1<<20),
			bareRate, bareDur.Round(time.Millisecond), bareCPU, float64(bareUse.rss)/(1<<20), bridgeRate/bareRate)
	}
}

func childCmd(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// runUntilSubscribed starts cmd, waits for the bridge's "mqtt subscribed"
// log line and stops it with SIGTERM.
func runUntilSubscribed(cmd *exec.Cmd) error {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var log strings.Builder
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		k, err := stderr.Read(buf)
		log.Write(buf[:k])
		if strings.Contains(log.String(), `"msg":"mqtt subscribed"`) {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			go func() { _, _ = stderr.Read(buf) }()
			return cmd.Wait()
		}
		if err != nil {
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("bridge never subscribed: %s", log.String())
}

// publishBacklog publishes n ~200-byte sensor readings for 1000 devices
// with QoS 1 over 8 connections.
func publishBacklog(b *testing.B, mqttURL string, n int) {
	const conns = 8
	nowMS := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		p := newPublisher(b, mqttURL, fmt.Sprintf("bench-pub-%d", c), nil)
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for seq := c; seq < n; seq += conns {
				dev := seq % 1000
				payload := fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%d.%03d,"unit":"Cel","attrs":{"firmware":"1.4.2","site":"north-paddock","collar":"c-%04d","seq":"%08d"}}`,
					nowMS, 36+seq%5, seq%1000, dev, seq)
				p.publish(b, fmt.Sprintf("devices/farm1/dev-%04d/sensor", dev), payload, nil)
			}
		}(c)
	}
	wg.Wait()
}
