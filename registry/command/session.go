// Package command is the command-line layer of the device registry:
// `drover devices`, `drover tenants` and `drover registry`. It parses flags
// and prints; the registry packages below it do the work.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/dynsec"
	"github.com/drover-iot/drover/schemas"
)

// session is a CLI's connection to the registry: a view read up to the
// topic's end, and a store writing through it.
type session struct {
	view     *registry.View
	store    *registry.Store
	serde    *schemas.Serde
	producer *kgo.Client
	stop     func()
}

// open reads the registry (within timeout) and returns a session; close it.
func open(ctx context.Context, conn *cli.Conn, timeout time.Duration) (*session, error) {
	if timeout <= 0 {
		return nil, cli.Usagef("--timeout: %s, want a positive duration", timeout)
	}
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return nil, err
	}
	serde, err := schemas.ConnSerde(conn)
	if err != nil {
		return nil, err
	}
	// A command's view logs warnings only (no "ready" line on every run).
	view, err := registry.NewView(kopts, serde, registry.WithLogger(slog.New(warnOnly{conn.Logger().Handler()})))
	if err != nil {
		return nil, err
	}
	producer, err := conn.Kafka()
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- view.Run(rctx) }()
	s := &session{view: view, serde: serde, producer: producer,
		store: registry.NewStore(view, producer, serde, registry.WithActor(actor())),
		stop:  func() { cancel(); <-done; producer.Close() }}
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	select {
	case <-view.Ready():
		return s, nil
	case err := <-done:
		s.stop = func() { producer.Close() }
		s.close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	case <-wctx.Done():
		s.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("the registry (topic %s) was not read within --timeout %s (is Kafka reachable?)", view.Topic(), timeout)
	}
}

func (s *session) close() { s.stop() }

// warnOnly passes records of level warn and above.
type warnOnly struct{ slog.Handler }

func (w warnOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && w.Handler.Enabled(ctx, l)
}

func (w warnOnly) WithAttrs(as []slog.Attr) slog.Handler { return warnOnly{w.Handler.WithAttrs(as)} }
func (w warnOnly) WithGroup(g string) slog.Handler       { return warnOnly{w.Handler.WithGroup(g)} }

// actor names the operator in the registry's records: cli:USER.
func actor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// parseKey parses a TENANT/DEVICE argument.
func parseKey(arg string) (string, string, error) {
	t, d, err := identity.ParseKey(arg)
	if err != nil {
		return "", "", cli.Usagef("%q: want TENANT/DEVICE: %w", arg, err)
	}
	return t, d, nil
}

// classify turns registry input errors into usage errors (exit 2).
func classify(err error) error {
	var ue *cli.UsageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	if errors.Is(err, registry.ErrInvalid) || errors.Is(err, identity.ErrInvalid) {
		return &cli.UsageError{Err: err}
	}
	return err
}

// pushFlags say how `devices add/rotate/import` hand a new secret to
// Mosquitto's dynamic security plugin, the one broker that needs the
// plaintext (the registry keeps only its hash).
type pushFlags struct {
	url, user, passFile string
}

func (p *pushFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&p.url, "dynsec-url", "", "Mosquitto with the dynamic security plugin to hand the new secret to (tcp://host:1883; empty = none: the registry service or a rendered config must do it)")
	fs.StringVar(&p.user, "dynsec-user", "drover-registry", "dynsec administrator user")
	fs.StringVar(&p.passFile, "dynsec-password-file", "", "file holding the dynsec administrator's password")
}

// pusher returns a function handing secrets to Mosquitto, or nil when no
// --dynsec-url was given.
func (p *pushFlags) pusher(ctx context.Context, s *session) (func(key, secret string) error, func(), error) {
	if p.url == "" {
		return nil, func() {}, nil
	}
	pass, err := cli.ReadSecretFile("dynsec-password-file", p.passFile)
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := dynsec.Dial(dctx, dynsec.ClientConfig{URL: p.url, Username: p.user, Password: []byte(pass)})
	if err != nil {
		return nil, nil, err
	}
	sync, err := dynsec.NewSync(s.view, c, 0, nil, nil)
	if err != nil {
		_ = c.Close()
		return nil, nil, err
	}
	push := func(key, secret string) error { return sync.PushSecret(ctx, key, secret) }
	return push, func() { _ = c.Close() }, nil
}

// format resolves --format: table on a terminal, json otherwise.
func format(f string, out io.Writer) (string, error) {
	switch f {
	case "table", "json":
		return f, nil
	case "":
		if fd, ok := out.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
			return "table", nil
		}
		return "json", nil
	}
	return "", cli.Usagef("--format: %q (want table or json)", f)
}
