package devtest

import (
	"bytes"
	"errors"
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
)

// Mosquitto starts a real mosquitto broker on a free port of 127.0.0.1 and
// returns its URL, tcp://127.0.0.1:PORT. The generated configuration (in
// t.TempDir()) allows anonymous clients, keeps no persistence, and lifts
// the per-client queue and in-flight limits (max_queued_messages 0,
// max_inflight_messages 0: unlimited), because Mosquitto's default queue of
// 1000 silently drops QoS 1 backlog. extraConf lines are appended. A
// missing mosquitto fails the test. Mosquitto is killed when the test
// process dies, even by SIGKILL (parent-death signal; as root it is kept
// from dropping privileges, which would clear that signal).
func Mosquitto(t testing.TB, extraConf ...string) string {
	t.Helper()
	bin := mosquittoBin(t)
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("devtest: mosquitto: %v", err)
		}
		var user []string
		if os.Geteuid() == 0 {
			// Run as root, mosquitto switches to the mosquitto user, and
			// the kernel clears the parent-death signal on that credential
			// change: a killed test process would leave mosquitto behind.
			// "user root" keeps it from dropping privileges (mosquitto.conf(5)).
			user = []string{"user root"}
		}
		conf := strings.Join(append(append(user,
			fmt.Sprintf("listener %d 127.0.0.1", port),
			"allow_anonymous true",
			"max_queued_messages 0",
			"max_inflight_messages 0",
			"persistence false",
			"log_dest stderr",
			"log_type error",
			"log_type warning",
		), extraConf...), "\n") + "\n"
		confPath := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatalf("devtest: mosquitto: %v", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // readable if extraConf makes mosquitto drop root
			t.Fatalf("devtest: mosquitto: %v", err)
		}
		url, stop, err := startMosquitto(bin, confPath, port)
		if err == nil {
			t.Cleanup(stop)
			return url
		}
		lastErr = err
	}
	t.Fatalf("devtest: mosquitto: %v", lastErr)
	return ""
}

// MosquittoConf starts a real mosquitto with conf, a whole configuration
// (its listeners on ports from FreePort; "user root" is added when the
// test runs as root, as for Mosquitto), and waits until it accepts
// connections on port. It is stopped when the test ends. Files the
// configuration names must be readable by the mosquitto process.
func MosquittoConf(t testing.TB, conf string, port int) {
	t.Helper()
	bin := mosquittoBin(t)
	if os.Geteuid() == 0 {
		conf = "user root\n" + conf
	}
	confPath := filepath.Join(t.TempDir(), "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("devtest: mosquitto: %v", err)
	}
	_, stop, err := startMosquitto(bin, confPath, port)
	if err != nil {
		t.Fatalf("devtest: mosquitto: %v", err)
	}
	t.Cleanup(stop)
}

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("devtest: free port: %v", err)
	}
	return p
}

func mosquittoBin(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatal("mosquitto not found: apt-get install -y mosquitto")
		}
		bin = "/usr/sbin/mosquitto"
	}
	return bin
}

func startMosquitto(bin, confPath string, port int) (string, func(), error) {
	cmd := exec.Command(bin, "-c", confPath)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return "", nil, fmt.Errorf("mosquitto exited during start:\n%s", out.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return "tcp://" + addr, stop, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("mosquitto not accepting connections after 10s:\n" + out.String())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
