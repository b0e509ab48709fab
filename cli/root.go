package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// DefaultDevEnvFile is where `drover dev` writes its endpoints.
const DefaultDevEnvFile = ".drover/dev.env"

// Root is drover's root command plus the state its subcommands share.
type Root struct {
	Cmd  *cobra.Command
	Conn *Conn

	logLevel    string
	logFormat   string
	devEnv      string
	checkConfig bool
}

// NewRoot builds the root command. Subcommands are added by the caller
// (package main wires them); Execute runs the tree.
func NewRoot(version string) *Root {
	r := &Root{Conn: &Conn{}}
	r.Cmd = &cobra.Command{
		Use:   "drover",
		Short: "Kafka-centric IoT telemetry pipeline: MQTT bridge, processors, TimescaleDB sink, jobs and tools",
		Long: `drover moves device telemetry from MQTT through Kafka into TimescaleDB.

Devices publish over MQTT; the bridge validates every payload against an Avro
schema and routes it to raw.* topics or to dlq.events with a reason; goka
processors derive features, alerts and per-device state; the sink writes it
all into TimescaleDB. One binary runs every stage as a subcommand.

Every flag can also be set with an environment variable: --kafka-brokers is
DROVER_KAFKA_BROKERS. Values not set by a flag or the environment are read
from the env file that 'drover dev' writes (--dev-env), when it exists.

Exit codes: 0 success, 1 failure, 2 bad usage or configuration, 3 a check
found drift or an incompatibility.`,
		Example: `  # start the whole pipeline on the embedded stack
  drover dev

  # in another terminal, against that stack
  drover topics diff
  drover schemas check`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := r.Cmd.PersistentFlags()
	pf.StringVar(&r.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&r.logFormat, "log-format", "json", "log format: json or text")
	pf.StringVar(&r.devEnv, "dev-env", DefaultDevEnvFile, "env file written by 'drover dev'; read when present for values not set otherwise (empty = never)")
	pf.BoolVar(&r.checkConfig, "check-config", false, "validate flags, environment and the files they name (secrets, CAs, rules), print 'configuration ok' and exit 0 without connecting to anything; exit 2 on a bad value")
	r.Cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		if !c.HasParent() {
			return &UsageError{Err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
		}
		return &UsageError{Err: fmt.Errorf("%s: %w (see '%s --help')", Path(c), err, c.CommandPath())}
	})
	r.Cmd.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		return r.prepare(cmd, os.Stderr)
	}
	return r
}

// prepare binds the environment (and the dev env file) to unset flags and
// builds the logger.
func (r *Root) prepare(cmd *cobra.Command, logOut io.Writer) error {
	// The dev env path itself may come from the environment. Only the
	// default path may be missing (no `drover dev` running here): a file
	// named by the flag or the variable must exist.
	source, named := "--dev-env", false
	if f := cmd.Flags().Lookup("dev-env"); f != nil {
		named = f.Changed
		if v, ok := os.LookupEnv(EnvName("dev-env")); ok && !f.Changed {
			r.devEnv, source, named = v, EnvName("dev-env"), true
		}
	}
	var defaults map[string]string
	if r.devEnv != "" && cmd.Annotations["drover.writes-dev-env"] == "" {
		m, err := ReadEnvFile(r.devEnv)
		switch {
		case err == nil:
			defaults = m
		case errors.Is(err, os.ErrNotExist) && !named:
		case errors.Is(err, os.ErrNotExist):
			return Usagef("%s %s: no such file (start 'drover dev' first, or give an empty value to read none)", source, r.devEnv)
		default:
			return Usagef("%s %s: %w", source, r.devEnv, err)
		}
	}
	if err := bindEnv(cmd, defaults); err != nil {
		return err
	}
	log, err := NewLogger(logOut, r.logLevel, r.logFormat)
	if err != nil {
		return err
	}
	r.Conn.Log = log
	slog.SetDefault(log)
	if r.checkConfig {
		return r.Conn.startCheck(cmd)
	}
	return nil
}

// WritesDevEnv marks a command (drover dev) that writes the dev env file and
// so must not read it as defaults.
func WritesDevEnv(cmd *cobra.Command) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations["drover.writes-dev-env"] = "true"
}

// NewLogger returns a slog logger writing JSON (or text) at level.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, Usagef("--log-level: unknown level %q (want debug, info, warn or error)", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, Usagef("--log-format: unknown format %q (want json or text)", format)
}

// Execute runs the command tree with a context cancelled by SIGINT or
// SIGTERM; a second signal exits at once with code 130. It prints a failing
// command's error as one line on stderr and returns the exit code.
func (r *Root) Execute(args []string) int {
	annotateEnv(r.Cmd)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default handling: the next signal kills the process
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "drover: second signal, exiting now")
		os.Exit(130)
	}()
	requireSubcommands(r.Cmd)
	r.Cmd.SetArgs(args)
	cmd, err := r.Cmd.ExecuteContextC(ctx)
	if errors.Is(err, ErrConfigOK) {
		if p := Path(cmd); p != "drover" {
			fmt.Fprintf(os.Stdout, "drover %s: configuration ok\n", p)
		} else {
			fmt.Fprintln(os.Stdout, "drover: configuration ok")
		}
		return 0
	}
	if err != nil && isCobraUsage(err) {
		err = &UsageError{Err: err}
		if cmd != nil && cmd.HasParent() {
			err = &UsageError{Err: fmt.Errorf("%s: %w (see '%s --help')", Path(cmd), err, cmd.CommandPath())}
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "drover: %v\n", err)
	}
	return ExitCode(err)
}

// Path is cmd's command path without the root's name ("topics list"), for
// error messages: Execute prefixes every error with "drover: " once. The
// root itself is "drover".
func Path(cmd *cobra.Command) string {
	if cmd == nil || !cmd.HasParent() {
		return "drover"
	}
	p := cmd.Name()
	for c := cmd.Parent(); c.HasParent(); c = c.Parent() {
		p = c.Name() + " " + p
	}
	return p
}

// requireSubcommands makes every command group of the tree that does not
// run anything itself (drover, dlq, topics, schemas, ...) fail with a usage
// error naming its subcommands when called without one, instead of
// printing help and exiting 0. A group's own Args still apply (cobra
// rejects an unknown subcommand of the root); otherwise an argument that is
// no subcommand is named.
func requireSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommands(c)
	}
	if cmd.Runnable() || !cmd.HasAvailableSubCommands() {
		return
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var names []string
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() && s.Name() != "help" && s.Name() != "completion" {
				names = append(names, s.Name())
			}
		}
		what, prefix := "a subcommand", Path(c)+": "
		if !c.HasParent() {
			what, prefix = "a command", ""
		}
		if len(args) > 0 {
			return Usagef("%sunknown command %q (want %s; see '%s --help')", prefix, args[0], strings.Join(names, ", "), c.CommandPath())
		}
		return Usagef("%s%s is required: %s (see '%s --help')", prefix, what, strings.Join(names, ", "), c.CommandPath())
	}
}

// isCobraUsage recognises the argument errors cobra itself returns (unknown
// subcommand, wrong number of arguments), which are usage errors.
func isCobraUsage(err error) bool {
	var ue *UsageError
	if errors.As(err, &ue) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"unknown command ", "accepts ", "requires at least ", "requires at most ", "received ", "invalid argument "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
