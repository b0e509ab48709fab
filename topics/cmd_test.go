package topics

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// run executes `topics args...` and returns its stdout, stderr and error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := Command(&cli.Conn{})
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func TestCommandListGolden(t *testing.T) {
	for _, c := range []struct {
		name, golden string
		args         []string
	}{
		{"default", "testdata/list.golden", []string{"list"}},
		{"dev cap", "testdata/list-cap1.golden", []string{"list", "--replication-cap", "1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := run(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(c.golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(c.golden)
			if err != nil {
				t.Fatalf("%v (run go test ./topics -run TestCommandListGolden -update)", err)
			}
			if out != string(want) {
				t.Errorf("list output differs from %s (rerun with -update if intended):\n%s", c.golden, out)
			}
		})
	}
}

func TestCommandUsageErrors(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		errMsg string
	}{
		{"bad catalogue", []string{"list", "--catalogue", "testdata/zero_partitions.bad.yaml"},
			`--catalogue: testdata/zero_partitions.bad.yaml:4: topic "raw.gps": partitions: must be ≥ 1, got 0`},
		{"missing catalogue", []string{"list", "--catalogue", "testdata/nope.yaml"}, "no such file"},
		{"negative cap", []string{"list", "--replication-cap", "-1"}, "--replication-cap: must be ≥ 0, got -1"},
		{"zero timeout", []string{"diff", "--timeout", "0s"}, "--timeout: must be > 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := run(t, c.args...)
			if err == nil || !strings.Contains(err.Error(), c.errMsg) {
				t.Fatalf("error %v, want it to contain %q", err, c.errMsg)
			}
			if code := cli.ExitCode(err); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
		})
	}
}

func TestIntegrationCommandDiffApply(t *testing.T) {
	_, addr := newCluster(t, 1)
	conn := []string{"--kafka-brokers", addr, "--replication-cap", "1"}

	out, _, err := run(t, append([]string{"diff"}, conn...)...)
	if !errors.Is(err, cli.ErrCheckFailed) || cli.ExitCode(err) != 3 {
		t.Fatalf("diff on an empty cluster: err %v (exit %d), want exit 3", err, cli.ExitCode(err))
	}
	if !strings.Contains(out, "create raw.gps: 24 partitions, replication 1") {
		t.Errorf("diff output:\n%s", out)
	}

	out, _, err = run(t, append([]string{"apply", "--dry-run"}, conn...)...)
	if err != nil || !strings.Contains(out, "dry run, would apply: create raw.gps") {
		t.Fatalf("apply --dry-run: %v\n%s", err, out)
	}
	if _, _, err := run(t, append([]string{"diff"}, conn...)...); cli.ExitCode(err) != 3 {
		t.Fatalf("dry run changed the cluster: diff now %v", err)
	}

	out, _, err = run(t, append([]string{"apply"}, conn...)...)
	if err != nil || !strings.Contains(out, "applied: create raw.gps") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, _, err = run(t, append([]string{"diff"}, conn...)...)
	if err != nil || !strings.Contains(out, "no changes") {
		t.Fatalf("diff after apply: %v\n%s", err, out)
	}
	out, _, err = run(t, append([]string{"apply"}, conn...)...)
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
}

func TestIntegrationCommandApplyNeedsCap(t *testing.T) {
	_, addr := newCluster(t, 1)
	_, errOut, err := run(t, "apply", "--kafka-brokers", addr)
	if err == nil || !strings.Contains(err.Error(), "--replication-cap 1") {
		t.Fatalf("apply with replication 3 on one broker: %v", err)
	}
	if !strings.Contains(errOut, "note: the cluster has 1 live broker(s)") {
		t.Errorf("stderr has no note about the broker count: %q", errOut)
	}
}

func TestCommandUnreachableBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	// A broker that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	for _, c := range []struct{ name, sub, addr string }{
		{"refused diff", "diff", addr},
		{"refused apply", "apply", addr},
		{"silent diff", "diff", silent.Addr().String()},
		{"silent apply", "apply", silent.Addr().String()},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr := c.addr
			start := time.Now()
			_, _, err := run(t, c.sub, "--kafka-brokers", addr, "--timeout", "1s")
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("no error against a dead broker")
			}
			if !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming %s", err, addr)
			}
			if elapsed > 5*time.Second {
				t.Errorf("took %s to give up, want about --timeout", elapsed)
			}
			if code := cli.ExitCode(err); code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
		})
	}
}

func TestHumanRetention(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"unset", "", "(default)"},
		{"forever", "-1", "forever"},
		{"days", "604800000", "7d"},
		{"hours", "43200000", "12h"},
		{"odd", "1500", "1.5s"},
		{"not a number", "x", "x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := humanRetention(c.in); got != c.want {
				t.Errorf("humanRetention(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}
