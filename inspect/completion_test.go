package inspect

import (
	"bytes"
	"strings"
	"testing"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/topics"
)

// TestCompletion checks shell completion through a root like drover's:
// the completion command exists and topic names complete for tail.
func TestCompletion(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"bash script", []string{"completion", "bash"}, []string{"bash completion"}, nil},
		{"zsh script", []string{"completion", "zsh"}, []string{"zsh completion"}, nil},
		{"fish script", []string{"completion", "fish"}, []string{"fish"}, nil},
		{"tail topics", []string{"__complete", "tail", ""}, []string{topics.RawSensor, topics.DLQ, topics.StateLatest}, nil},
		{"tail second topic", []string{"__complete", "tail", topics.RawSensor, ""}, []string{topics.DLQ}, []string{topics.RawSensor + "\n"}},
		{"tail format", []string{"__complete", "tail", topics.RawSensor, "--format", ""}, []string{"json", "table", "raw"}, nil},
		{"lag format", []string{"__complete", "lag", "--format", ""}, []string{"json", "table"}, nil},
		{"devices status", []string{"__complete", "devices", "--status", ""}, []string{"online", "offline"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := cli.NewRoot("test")
			root.Cmd.AddCommand(TailCommand(root.Conn), LagCommand(root.Conn), DevicesCommand(root.Conn))
			var out bytes.Buffer
			root.Cmd.SetOut(&out)
			root.Cmd.SetErr(&out)
			root.Cmd.SetArgs(c.args)
			if err := root.Cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%.500s", w, out.String())
				}
			}
			for _, w := range c.not {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q", w)
				}
			}
		})
	}
}
