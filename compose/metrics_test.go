package compose

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack"
)

// stageProc is one drover process started by a test.
type stageProc struct {
	name  string
	cmd   *exec.Cmd
	admin string // host:port of /metrics, or ""
	log   *os.File
	done  chan struct{}
}

// startDrover starts the test binary; the process is stopped with SIGTERM
// (then killed) when the test ends.
func startDrover(t *testing.T, name string, args, env []string, admin string) *stageProc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(droverBin(t), args...)
	cmd.Env = cliEnv(env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &stageProc{name: name, cmd: cmd, admin: admin, log: logf, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(45 * time.Second):
			// A stage must drain and exit on SIGTERM (what docker compose
			// and Kubernetes send); hanging here is a shutdown bug.
			t.Errorf("drover %s did not stop within 45s of SIGTERM; killed", name)
			cmd.Process.Kill()
			<-p.done
		}
		logf.Close()
	})
	return p
}

func (p *stageProc) tail() string {
	b, _ := os.ReadFile(p.log.Name())
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func (p *stageProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrapeNames returns the metric family names of one /metrics page.
func scrapeNames(ctx context.Context, addr string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			names[name] = true
		}
	}
	return names, sc.Err()
}

// rewrite replaces the value of flag (given as "--flag value" or
// "--flag=value") in a compose command.
func rewrite(args []string, flag, value string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--"+flag && i+1 < len(out) {
			out[i+1] = value
			return out
		}
		if strings.HasPrefix(a, "--"+flag+"=") {
			out[i] = "--" + flag + "=" + value
			return out
		}
	}
	return append(out, "--"+flag, value)
}

// TestIntegrationMetricNames runs the compose commands of every stage (the
// base compose file's command lines, with local addresses and directories)
// against the embedded stack of 'drover dev --no-pipeline', drives traffic
// through them with 'drover simulate', and checks that every metric the
// dashboards and alert rules use is exported by a running stage.
func TestIntegrationMetricNames(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the embedded stack and every stage")
	}
	used := usedMetrics(t)
	p := mustLoad(t, overlays(t)[0])
	dir := t.TempDir()
	envFile := filepath.Join(dir, "dev.env")
	// Only the dev stack's media notifier runs (it turns S3 uploads into
	// media.object.events records, as MinIO's Kafka target does in compose).
	startDrover(t, "dev", []string{"dev", "--skip", "bridge,processors,sink,simulator", "--data-dir", filepath.Join(dir, "data"),
		"--kafka-port", "0", "--mqtt-port", "0", "--registry-port", "0", "--s3-port", "0", "--postgres-port", "0",
		"--env-file", envFile, "--log-format", "text"}, nil, "")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(envFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drover dev wrote no env file within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	devEnv, err := devstack.ReadEnvFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for k, v := range devEnv {
		env = append(env, k+"="+v)
	}
	env = append(env, "DROVER_LOG_FORMAT=text")

	jobs := filepath.Join(dir, "jobs.yaml")
	if err := os.WriteFile(jobs, []byte("jobs:\n  - name: redrive\n    schedule: \"@every 1s\"\n    type: dlq-redrive\n    since: 1h\n    dry_run: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A rule that fires on every temperature reading, so alerts fire within
	// seconds.
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - name: warm\n    kind: threshold\n    metric: temperature\n    op: \">\"\n    threshold: 0\n    severity: warning\n    message: \"{device} warm\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The database of drover dev may lack TimescaleDB: --timescale auto.
	command := func(service string) []string {
		args := slices.Clone([]string(p.Services[service].Command))
		if slices.Contains(args, "--timescale") {
			args = rewrite(args, "timescale", "auto")
		}
		// The simulator's devices are not registered: the bridge observes
		// the registry (and exports its admission metrics) instead of
		// dead-lettering every reading, as the dev overlay does.
		if service == "bridge" {
			args = rewrite(args, "registry", "observe")
		}
		return args
	}
	for _, init := range []string{"topics-apply", "schemas-register", "sink-migrate"} {
		if _, err := runDrover(t, command(init), env...); err != nil {
			t.Fatalf("%s: %v", init, err)
		}
	}

	stages := map[string]*stageProc{}
	for _, name := range []string{"bridge", "process", "sink", "media", "schedule"} {
		args := command(name)
		addr := freeAddr(t)
		args = rewrite(args, "admin-addr", addr)
		if slices.Contains(args, "--state-dir") {
			args = rewrite(args, "state-dir", filepath.Join(dir, name+"-state"))
		}
		switch name {
		case "schedule":
			args = rewrite(args, "jobs", jobs)
		case "process":
			args = rewrite(args, "rules", rules)
		case "media":
			// Its own group: the dev stack's media stage consumes as drover-media.
			args = rewrite(args, "group", "drover-media-compose-test")
		}
		stages[name] = startDrover(t, name, args, env, addr)
	}
	// drover dev's broker enforces the device registry: the simulator
	// registers its herd and each device connects as itself.
	sim := startDrover(t, "simulate", []string{"simulate", "--admin-addr", "", "--devices", "20", "--rate", "100",
		"--count", "3000", "--invalid-ratio", "0.2", "--media-ratio", "0.05", "--seed", "7",
		"--register", "--secrets-file", filepath.Join(dir, "devices.secrets")}, env, "")

	owner := func(metric string) []string {
		switch {
		case metric == "up":
			return nil // Prometheus' own series
		case strings.HasPrefix(metric, "drover_bridge_"):
			return []string{"bridge"}
		case strings.HasPrefix(metric, "drover_features_"), strings.HasPrefix(metric, "drover_alerts_"), strings.HasPrefix(metric, "drover_state_"):
			return []string{"process"}
		case strings.HasPrefix(metric, "drover_sink_"):
			return []string{"sink"}
		case strings.HasPrefix(metric, "drover_media_"):
			return []string{"media"}
		case strings.HasPrefix(metric, "drover_schedule_"):
			return []string{"schedule"}
		}
		return []string{"bridge", "process", "sink", "media", "schedule"}
	}
	base := func(m string) []string {
		out := []string{m}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok {
				out = append(out, b)
			}
		}
		return out
	}

	var mu sync.Mutex
	exported := map[string]map[string]bool{}
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for m := range used {
			owners := owner(m)
			if owners == nil {
				continue
			}
			found := false
			for _, o := range owners {
				for _, b := range base(m) {
					if exported[o][b] {
						found = true
					}
				}
			}
			if !found {
				out = append(out, m)
			}
		}
		sort.Strings(out)
		return out
	}
	deadline = time.Now().Add(3 * time.Minute)
	for {
		for name, s := range stages {
			if s.exited() {
				t.Fatalf("stage %s exited:\n%s", name, s.tail())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			names, err := scrapeNames(ctx, s.admin)
			cancel()
			if err != nil {
				continue
			}
			mu.Lock()
			if exported[name] == nil {
				exported[name] = map[string]bool{}
			}
			for n := range names {
				exported[name][n] = true
			}
			mu.Unlock()
		}
		miss := missing()
		// franz-go's client metrics (kprom), one naming scheme on every
		// long-running stage: drover_<stage>_kafka_*{client="<role>"}
		// (schedule's appear with a job's first run; its own test checks them).
		for _, name := range []string{"bridge", "process", "sink", "media"} {
			m := "drover_" + name + "_kafka_connects_total"
			mu.Lock()
			if !exported[name][m] {
				miss = append(miss, m)
			}
			mu.Unlock()
		}
		if len(miss) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, m := range miss {
				t.Errorf("metric %s (used by %s) is not exported by drover %s", m, strings.Join(used[m], "; "), strings.Join(owner(m), "/"))
			}
			// (the kprom series have no user: "used by" is empty for them)
			for name, s := range stages {
				t.Logf("drover %s output (tail):\n%s", name, s.tail())
			}
			t.Logf("drover simulate output (tail):\n%s", sim.tail())
			return
		}
		time.Sleep(time.Second)
	}
	t.Logf("all %d metric names used by dashboards and alerts are exported", len(used))
}
