package replay

import (
	"testing"

	"github.com/drover-iot/drover/cli"
)

func TestCommandUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"no group", []string{"replay", "--to-time", "2026-11-23"}},
		{"no time", []string{"replay", "--group", "g"}},
		{"bad time", []string{"replay", "--group", "g", "--to-time", "noon"}},
		{"empty topic", []string{"replay", "--group", "g", "--to-time", "2026-11-23", "--topics", "raw.sensor,"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := cli.NewRoot("test")
			root.Cmd.AddCommand(ReplayCommand(root.Conn))
			if code := root.Execute(append([]string{"--dev-env", ""}, c.args...)); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
}
