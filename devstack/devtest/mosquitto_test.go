package devtest_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

const mosquittoChildEnv = "DEVTEST_MOSQUITTO_CHILD"

// TestMosquittoDiesWithParent re-executes the test binary as a child that
// starts devtest.Mosquitto and reports mosquitto's pid, kills the child
// with SIGKILL (no cleanup runs) and checks that mosquitto goes too.
func TestMosquittoDiesWithParent(t *testing.T) {
	if os.Getenv(mosquittoChildEnv) != "" {
		mosquittoChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMosquittoDiesWithParent$", "-test.count=1", "-test.timeout=60s")
	// The child's t.TempDir is never removed (SIGKILL): put it in ours.
	cmd.Env = append(os.Environ(), mosquittoChildEnv+"=1", "TMPDIR="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killChild := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	defer killChild()

	pidc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MOSQUITTO_PID="); ok {
				if pid, err := strconv.Atoi(v); err == nil {
					pidc <- pid
				}
			}
		}
		close(pidc)
	}()
	var pid int
	select {
	case p, ok := <-pidc:
		if !ok {
			t.Fatal("child exited without reporting mosquitto's pid")
		}
		pid = p
	case <-time.After(30 * time.Second):
		t.Fatal("child did not report mosquitto's pid within 30s")
	}
	t.Cleanup(func() { // whatever happens, leave no mosquitto behind
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if !alive(pid) {
		t.Fatalf("mosquitto (pid %d) not running before the child is killed", pid)
	}

	killChild()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto (pid %d) still running 5s after its parent was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mosquittoChild is the child side: start mosquitto, report its pid on
// stdout, wait to be killed.
func mosquittoChild(t *testing.T) {
	devtest.Mosquitto(t)
	pid, err := childPid("mosquitto")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("MOSQUITTO_PID=%d\n", pid)
	time.Sleep(50 * time.Second) // killed by the parent long before
	t.Fatal("not killed by the parent")
}

// childPid finds the child process of this process whose command is comm.
func childPid(comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		fields := strings.Fields(s[rp+1:])
		if s[lp+1:rp] == comm && len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child process %q", comm)
}

// alive reports whether pid is a live process (zombies, which an init that
// does not reap would leave, count as dead).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 0 && f[0] == "Z" {
			return false
		}
	}
	return true
}
