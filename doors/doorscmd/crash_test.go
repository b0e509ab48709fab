package doorscmd_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/doors/doorscmd"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

const envChild = "DROVER_DOORS_TEST_CHILD"

// TestMain runs `drover http` or `drover coap` (this package's commands,
// wired as cmd/drover wires them) when the test binary is started as a
// child process by a test.
func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		root := cli.NewRoot("test")
		root.Cmd.AddCommand(doorscmd.HTTPCommand(root.Conn), doorscmd.CoAPCommand(root.Conn))
		os.Exit(root.Execute(strings.Split(os.Getenv(envChild+"_ARGS"), "\n")))
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestIntegrationHTTPKill9 loads `drover http` with concurrent devices,
// kills it with SIGKILL mid-stream, and checks that every reading it
// answered 202 is on raw.sensor: an acknowledgement means Kafka has it.
func TestIntegrationHTTPKill9(t *testing.T) {
	e := ingesttest.New(t)
	secret := e.Devices(t)[ingesttest.Registered]
	addr, adminAddr := freePort(t), freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envChild+"_ARGS="+strings.Join([]string{"http",
		"--kafka-brokers", strings.Join(e.Brokers, ","), "--schema-registry-url", e.RegistryURL,
		"--listen-addr", addr, "--admin-addr", adminAddr, "--log-format", "json"}, "\n"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening, exited := make(chan struct{}), make(chan struct{})
	var tail []string
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			if strings.Contains(sc.Text(), "http door listening") {
				once.Do(func() { close(listening) })
			}
			tailMu.Lock()
			if tail = append(tail, sc.Text()); len(tail) > 20 {
				tail = tail[1:]
			}
			tailMu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	select {
	case <-listening:
	case <-exited:
		tailMu.Lock()
		defer tailMu.Unlock()
		t.Fatalf("drover http exited:\n%s", strings.Join(tail, "\n"))
	case <-time.After(60 * time.Second):
		t.Fatal("drover http not listening within 60s")
	}

	// 8 clients post readings with distinct metrics until the process dies.
	var acked sync.Map // metric -> true
	var nAcked atomic.Int64
	var codesMu sync.Mutex
	codes := map[int]int{} // answers other than 202 (0: no answer)
	var lastBody string
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				metric := fmt.Sprintf("m%d.%d", w, i)
				body := `{"metric":"` + metric + `","value":1,"ts":` + strconv.FormatInt(time.Now().UnixMilli(), 10) + `}`
				req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/devices/farm/collar-1/sensor", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := client.Do(req)
				if err != nil {
					select {
					case <-exited:
						return // the door is gone
					default: // a slow answer on a loaded machine: try again
						codesMu.Lock()
						codes[0]++
						lastBody = err.Error()
						codesMu.Unlock()
						continue
					}
				}
				if resp.StatusCode == http.StatusAccepted {
					acked.Store(metric, true)
					nAcked.Add(1)
				} else {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
					codesMu.Lock()
					codes[resp.StatusCode]++
					lastBody = string(b)
					codesMu.Unlock()
				}
				resp.Body.Close()
			}
		}()
	}
	loadDeadline := time.Now().Add(3 * time.Minute)
	for nAcked.Load() < 300 {
		if time.Now().After(loadDeadline) {
			codesMu.Lock()
			tailMu.Lock()
			t.Fatalf("only %d readings answered 202 within 3 minutes of load; other answers %v, the last: %s\ndrover http's log:\n%s",
				nAcked.Load(), codes, lastBody, strings.Join(tail, "\n"))
		}
		select {
		case <-exited:
			t.Fatal("drover http died under load")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Under load, /metrics carries franz-go's client series (kprom) of
	// the door's producer and registry view, named as on every stage.
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{`drover_http_kafka_produce_bytes_total{client="producer"`, `drover_http_kafka_connects_total{client="registry"`} {
		if !strings.Contains(string(metrics), series) {
			t.Errorf("/metrics lacks %s…", series)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	stop()
	wg.Wait()
	n := int(nAcked.Load())
	t.Logf("drover http killed with SIGKILL after %d acknowledged readings", n)

	recs := e.Consume(t, topics.RawSensor, n, 30*time.Second)
	seen := map[string]bool{}
	for _, r := range recs {
		var sr schemas.SensorReading
		if _, err := e.Serde.Decode(context.Background(), r.Value, &sr); err != nil {
			t.Fatal(err)
		}
		seen[sr.Metric] = true
	}
	lost := 0
	acked.Range(func(k, _ any) bool {
		if !seen[k.(string)] {
			lost++
		}
		return true
	})
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged readings are not on raw.sensor", lost, n)
	}
}
