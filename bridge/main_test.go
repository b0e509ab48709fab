package bridge

import (
	"os"
	"runtime/pprof"
	"testing"

	"github.com/drover-iot/drover/cli"
)

// envChild makes the test binary run `drover bridge` with the arguments in
// DROVER_BRIDGE_CHILD_ARGS (newline separated) instead of the tests: the
// crash test runs the bridge as a subprocess it can kill -9.
const envChild = "DROVER_BRIDGE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "bare" {
		os.Exit(bareSubscriber(os.Getenv(envChild + "_ARGS")))
	}
	if os.Getenv(envChild) == "1" {
		root := cli.NewRoot("test")
		root.Cmd.AddCommand(Command(root.Conn))
		if p := os.Getenv(envChild + "_CPUPROFILE"); p != "" { // profiling the benchmark's bridge
			if f, err := os.Create(p); err == nil {
				_ = pprof.StartCPUProfile(f)
				code := root.Execute(splitLines(os.Getenv(envChild + "_ARGS")))
				pprof.StopCPUProfile()
				f.Close()
				os.Exit(code)
			}
		}
		os.Exit(root.Execute(splitLines(os.Getenv(envChild + "_ARGS"))))
	}
	os.Exit(m.Run())
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
