package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandGroupNeedsASubcommand walks the real command tree: every
// command that only groups others (dlq, topics, schemas, backfill, ...)
// exits 2 naming its subcommands when called alone, like `drover dlq`,
// and the error has one "drover: " prefix.
func TestEveryCommandGroupNeedsASubcommand(t *testing.T) {
	var groups [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			if s.Name() == "help" || s.Name() == "completion" {
				continue
			}
			walk(s, append(append([]string{}, path...), s.Name()))
		}
		if len(path) > 0 && !c.Runnable() && c.HasAvailableSubCommands() {
			groups = append(groups, path)
		}
	}
	walk(newRoot().Cmd, nil)
	if len(groups) < 6 {
		t.Fatalf("found only %d command groups: %v", len(groups), groups)
	}
	for _, g := range groups {
		t.Run(strings.Join(g, " "), func(t *testing.T) {
			code, out := drover(t, nil, append(g, "--dev-env", "")...)
			want := "drover: " + strings.Join(g, " ") + ": a subcommand is required: "
			if code != 2 || !strings.HasPrefix(out, want) || strings.Count(out, "drover: ") != 1 {
				t.Fatalf("exit %d, output %q; want exit 2 and %q", code, out, want)
			}
		})
	}
}
