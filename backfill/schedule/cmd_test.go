package schedule

import (
	"testing"

	"github.com/drover-iot/drover/cli"
)

func TestCommandUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"no jobs", []string{"schedule"}},
		{"missing file", []string{"schedule", "--jobs", "testdata/nope.yaml"}},
		{"bad window", []string{"schedule", "--jobs", "testdata/bad-window.bad.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := cli.NewRoot("test")
			root.Cmd.AddCommand(ScheduleCommand(root.Conn))
			if code := root.Execute(append([]string{"--dev-env", ""}, c.args...)); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
	if _, err := Load("testdata/jobs.yaml"); err != nil {
		t.Fatalf("the example jobs file: %v", err)
	}
}
