package main

import (
	"net"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestDefaultListenPortsAreDistinct walks the real command tree and checks
// that no two long-running commands listen on the same default port (every
// flag named *-addr with a default host:port), so that every stage and
// service the README starts side by side on one machine can bind. The
// registry service and the console once both defaulted to 9480.
func TestDefaultListenPortsAreDistinct(t *testing.T) {
	owner := map[string]string{} // port -> "command --flag"
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			walk(s)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !strings.HasSuffix(f.Name, "-addr") || f.DefValue == "" {
				return
			}
			_, port, err := net.SplitHostPort(f.DefValue)
			if err != nil || port == "" || port == "0" {
				return
			}
			who := c.CommandPath() + " --" + f.Name
			if prev, ok := owner[port]; ok && !sameStage(prev, who) {
				t.Errorf("default port %s of %s is also the default of %s", port, who, prev)
			}
			owner[port] = who
		})
	}
	walk(newRoot().Cmd)
	if len(owner) < 6 {
		t.Fatalf("found only %d default listen ports (%v): the walk misses flags", len(owner), owner)
	}
}

// sameStage reports whether two flags belong to one stage run two ways (a
// command and its subcommand sharing the stage's admin port, as `drover sink`
// and its maintenance subcommands do).
func sameStage(a, b string) bool {
	cmd := func(s string) string { return strings.Fields(s)[1] }
	return cmd(a) == cmd(b)
}
