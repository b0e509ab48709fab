package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/topics"
)

// benchRegistryDevices is how many devices BenchmarkBridgeRegistry
// registers (and publishes from).
const benchRegistryDevices = 100_000

// BenchmarkBridgeRegistry measures what the device registry check costs
// the bridge: with 100k registered devices in devices.registry, a backlog
// of 2 × DROVER_BENCH_N (default 2 × 200k) QoS 1 JSON readings from all of
// them, queued in a real mosquitto for two persistent sessions, is drained
// into Kafka once by a bridge with --registry enforce and once by one with
// --registry off, in the same run. The backlog comes in four segments, each
// drained by both, in the order off-enforce, enforce-off, off-enforce,
// enforce-off (ABBA twice), so neither mode profits from going first or
// from a quiet moment of a shared machine. A drain is timed from the
// bridge's "mqtt subscribed" (the enforce bridge subscribes only once its
// registry view is restored; that restore time is reported apart as
// enforce-restore-s) until raw.sensor holds the records, and its CPU time
// is read from /proc over the same span (cpu-ratio: the throughput ratio
// of a CPU-bound bridge alone on its cores). Every message must be
// admitted: no dead letter may appear.
func BenchmarkBridgeRegistry(b *testing.B) {
	half := benchN()
	for i := 0; i < b.N; i++ {
		re := registrytest.New(b)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		if _, err := kadm.NewClient(re.Producer).CreateTopics(ctx, 4, 1, nil, append(rawTopics, topics.Commands)...); err != nil {
			b.Fatal(err)
		}
		e := &env{brokers: re.Brokers, kafka: re.Cluster, serde: registerSchemas(b, re.RegistryURL), regURL: re.RegistryURL}
		re.AddTenant(b, "farm1")
		t0 := time.Now()
		nds := make([]registry.NewDevice, benchRegistryDevices)
		for d := range nds {
			nds[d] = registry.NewDevice{Tenant: "farm1", ID: benchDevice(d), Type: "collar", Labels: map[string]string{"herd": []string{"north", "south"}[d%2]}}
		}
		if _, err := re.Store.AddDevices(ctx, nds, false); err != nil {
			b.Fatalf("registering %d devices: %v", len(nds), err)
		}
		b.Logf("registered %d devices in %s", len(nds), time.Since(t0).Round(time.Millisecond))

		mqttURL := devtest.Mosquitto(b)
		args := func(mode string) []string {
			return []string{
				"bridge", "--mqtt-url", mqttURL, "--kafka-brokers", strings.Join(e.brokers, ","), "--schema-registry-url", e.regURL,
				"--mqtt-client-id", "bench-" + mode, "--mqtt-group", "bench-" + mode, "--registry", mode,
				"--admin-addr", "127.0.0.1:0", "--dev-env=", "--downlink=false",
			}
		}
		// Both persistent sessions and subscriptions first.
		for _, mode := range []string{"off", "enforce"} {
			setup := childCmd(envChild+"=1", envChild+"_ARGS="+strings.Join(args(mode), "\n"))
			if err := runUntilSubscribed(setup); err != nil {
				b.Fatalf("%s bridge setup: %v", mode, err)
			}
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
		if err != nil {
			b.Fatal(err)
		}
		seg := half / 2
		took, cpu := map[string]time.Duration{}, map[string]time.Duration{}
		var restore time.Duration
		var want int64
		drain := func(mode string) {
			want += int64(seg)
			d, c, r := drainOnce(b, e, cl, args(mode), want)
			took[mode] += d
			cpu[mode] += c
			if mode == "enforce" {
				restore += r
			}
		}
		b.ResetTimer()
		// Four segments of half/2 messages, ABBA ABBA: the load of a shared
		// machine drifts over seconds, and each mode meets it alike.
		for h, order := range [][]string{{"off", "enforce"}, {"enforce", "off"}, {"off", "enforce"}, {"enforce", "off"}} {
			b.StopTimer()
			t0 := time.Now()
			publishRegistryBacklog(b, mqttURL, h*seg, seg)
			b.Logf("queued %d messages in %s", seg, time.Since(t0).Round(time.Millisecond))
			b.StartTimer()
			for _, mode := range order {
				drain(mode)
			}
		}
		b.StopTimer()
		if dl := e.endOffsets(b, cl, topics.DLQ); dl != 0 {
			b.Fatalf("%d dead letters: every device is registered and active, want none", dl)
		}
		cl.Close()
		cancel()

		n := float64(4 * seg)
		enforce, off := n/took["enforce"].Seconds(), n/took["off"].Seconds()
		b.ReportMetric(enforce, "enforce-msg/s")
		b.ReportMetric(off, "off-msg/s")
		b.ReportMetric(enforce/off, "ratio")
		b.ReportMetric(restore.Seconds()/4, "enforce-restore-s")
		enforceCPU, offCPU := float64(cpu["enforce"].Microseconds())/n, float64(cpu["off"].Microseconds())/n
		b.ReportMetric(enforceCPU, "enforce-cpu-µs/msg")
		b.ReportMetric(offCPU, "off-cpu-µs/msg")
		// What the ratio would be were the bridge alone on its cores (it is
		// CPU-bound): less at the mercy of the machine's other load.
		b.ReportMetric(offCPU/enforceCPU, "cpu-ratio")
		fmt.Printf("bridge registry: %d registered devices, N=%d per mode | enforce %.0f msg/s (%s, %.1f µs CPU/msg) | off %.0f msg/s (%s, %.1f µs CPU/msg) | ratio %.3f (target ≥ 0.95), by CPU time %.3f | enforce view restore before subscribing %.2fs per start\n",
			benchRegistryDevices, 4*seg, enforce, took["enforce"].Round(time.Millisecond), enforceCPU, off, took["off"].Round(time.Millisecond), offCPU,
			enforce/off, offCPU/enforceCPU, restore.Seconds()/4)
	}
}

func benchDevice(d int) string { return fmt.Sprintf("d%06d", d) }

// drainOnce runs the bridge with args until raw.sensor holds want records
// and stops it; it returns the time from its "mqtt subscribed" log line to
// then, the bridge's CPU time over that span (from /proc), and the time
// from its start to that line.
func drainOnce(b *testing.B, e *env, cl *kgo.Client, args []string, want int64) (drain, cpu, start time.Duration) {
	b.Helper()
	env := []string{envChild + "=1", envChild + "_ARGS=" + strings.Join(args, "\n")}
	if dir := os.Getenv("DROVER_BENCH_CPUPROFILE_DIR"); dir != "" { // one CPU profile per bridge run, named by its mode
		mode := args[slices.Index(args, "--registry")+1]
		env = append(env, fmt.Sprintf("%s_CPUPROFILE=%s/%s-%d.pprof", envChild, dir, mode, want))
	}
	cmd := childCmd(env...)
	cmd.Stdout = nil
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	subscribed := make(chan time.Time, 1)
	var logTail strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			if logTail.Len() < 64<<10 {
				logTail.WriteString(line + "\n")
			}
			mu.Unlock()
			if strings.Contains(line, `"msg":"mqtt subscribed"`) {
				select {
				case subscribed <- time.Now():
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	fail := func(format string, a ...any) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		mu.Lock()
		defer mu.Unlock()
		b.Fatalf("%s: %s\nbridge log:\n%s", strings.Join(args, " "), fmt.Sprintf(format, a...), logTail.String())
	}
	var sub time.Time
	select {
	case sub = <-subscribed:
	case <-time.After(5 * time.Minute):
		fail("not subscribed within 5 minutes")
	}
	cpu0 := procCPU(b, cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Minute)
	for e.endOffsets(b, cl, topics.RawSensor) < want {
		if time.Now().After(deadline) {
			fail("raw.sensor did not reach %d records within 30m", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	drain = time.Since(sub)
	cpu = procCPU(b, cmd.Process.Pid) - cpu0
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		b.Errorf("bridge exit: %v", err)
	}
	return drain, cpu, sub.Sub(began)
}

// procCPU is the user and system CPU time process pid has used so far
// (/proc/PID/stat utime and stime, in clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("bridge CPU time: %v", err)
	}
	// Fields after the command name (which may hold spaces) start at
	// field 3 (state); utime and stime are fields 14 and 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("bridge CPU time: short /proc/%d/stat", pid)
	}
	ticks := 0
	for _, s := range f[11:13] {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("bridge CPU time: /proc/%d/stat: %v", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// publishRegistryBacklog publishes n ~200-byte sensor readings, sequence
// numbers from first, spread over every registered device (device = seq
// modulo benchRegistryDevices), QoS 1 over 8 connections.
func publishRegistryBacklog(b *testing.B, mqttURL string, first, n int) {
	const conns = 8
	nowMS := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for c := 0; c < conns; c++ {
		p := newPublisher(b, mqttURL, fmt.Sprintf("bench-reg-pub-%d-%d", first, c), nil)
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for seq := first + c; seq < first+n; seq += conns {
				dev := benchDevice(seq % benchRegistryDevices)
				payload := fmt.Appendf(nil, `{"ts":%d,"metric":"temperature","value":%d.%03d,"unit":"Cel","attrs":{"firmware":"1.4.2","site":"north-paddock","collar":"%s","seq":"%08d"}}`,
					nowMS, 36+seq%5, seq%1000, dev, seq)
				p.publish(b, "devices/farm1/"+dev+"/sensor", payload, nil)
			}
		}(c)
	}
	wg.Wait()
}
