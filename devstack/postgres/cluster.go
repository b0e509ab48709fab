package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Options configure Start.
type Options struct {
	// DataDir is the cluster's data directory (required). An empty or
	// missing directory is initialised with initdb; a directory that already
	// holds a cluster is reused as is.
	DataDir string
	// Port is the TCP port on 127.0.0.1; 0 (the default) picks a free port.
	Port int
	// Logger receives the server's own log lines at debug level and Start's
	// notices; nil discards them.
	Logger *slog.Logger
	// Durable keeps fsync, synchronous_commit and full_page_writes on. The
	// default (false) turns them off: the cluster is throwaway, and a crash
	// of the machine may lose or corrupt it.
	Durable bool
	// BinDir is where initdb and postgres live. The default ("") searches
	// PATH, then /usr/lib/postgresql/*/bin, highest version first.
	BinDir string
	// StartTimeout bounds how long Start waits for the server to accept
	// connections; 0 means 30 s.
	StartTimeout time.Duration
}

// Cluster is a running PostgreSQL server started by Start. Its methods are
// safe for concurrent use.
type Cluster struct {
	opts    Options
	bins    binaries
	dataDir string
	cred    *syscall.Credential // nil: run as the current user
	log     *slog.Logger

	mu      sync.Mutex
	port    int
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	waitErr error         // cmd.Wait's result, set before done is closed
	sockDir string

	tailMu sync.Mutex
	tail   tailBuffer
}

// Start initialises opts.DataDir if needed, starts postgres on opts.Port and
// waits until it accepts connections. Stop the cluster with Stop; if the Go
// process dies first, the kernel sends the server SIGQUIT (immediate
// shutdown), so no server is left behind.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.DataDir == "" {
		return nil, errors.New("postgres: data dir is required")
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bins, err := findBinaries(opts.BinDir)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("postgres: data dir: %w", err)
	}
	c := &Cluster{opts: opts, bins: bins, dataDir: dir, log: log, tail: tailBuffer{max: 64 << 10}}
	if err := c.prepareDataDir(ctx); err != nil {
		return nil, err
	}
	if err := c.startServer(ctx, opts.Port); err != nil {
		return nil, err
	}
	return c, nil
}

// prepareDataDir creates the data directory, hands it to the postgres user
// when running as root, and runs initdb when it holds no cluster yet.
func (c *Cluster) prepareDataDir(ctx context.Context) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("postgres: create data dir: %w", err)
	}
	if os.Geteuid() == 0 {
		cred, err := postgresUser()
		if err != nil {
			return err
		}
		c.cred = cred
		if err := c.makeTraversable(filepath.Dir(c.dataDir)); err != nil {
			return err
		}
		if err := os.Chown(c.dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("postgres: hand data dir to the postgres user: %w", err)
		}
	}
	if err := os.Chmod(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("postgres: data dir: %w", err)
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil // already initialised
	}
	entries, err := os.ReadDir(c.dataDir)
	if err != nil {
		return fmt.Errorf("postgres: data dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("postgres: data dir %s is not empty and holds no cluster (no PG_VERSION)", c.dataDir)
	}
	args := []string{"-D", c.dataDir, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--locale=C"}
	if !c.opts.Durable {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, c.bins.initdb, args...)
	c.setProc(cmd)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("postgres: initdb %s: %w\n%s", c.dataDir, err, lastLines(string(out), 20))
	}
	c.log.Debug("postgres initdb done", "data_dir", c.dataDir, "took", time.Since(start).String())
	return nil
}

// postgresUser looks up the postgres OS user PostgreSQL runs as under root.
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres: running as root needs the postgres OS user to run the server (apt-get install -y postgresql creates it): %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres: postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeTraversable adds the search (x) bit for others to dir and its parents
// where it is missing, so the postgres user can reach the data directory.
// Only the x bit is added: directory listings stay private.
func (c *Cluster) makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o001); err != nil {
				return fmt.Errorf("postgres: make %s traversable for the postgres user: %w", d, err)
			}
			c.log.Debug("postgres: made directory traversable for the postgres user", "dir", d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// setProc makes cmd run in its own process group, die with its parent, and
// run as the postgres user when we are root.
func (c *Cluster) setProc(cmd *exec.Cmd) {
	cmd.Dir = c.dataDir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGQUIT, // postmaster: immediate shutdown, children included
		Credential: c.cred,
	}
}

// childEnv is our environment without PG* variables, which would otherwise
// steer initdb and postgres (PGDATA, PGPORT, ...).
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// startServer runs postgres and waits until it accepts connections. With
// port 0 a free port is chosen, and another one if binding loses a race.
func (c *Cluster) startServer(ctx context.Context, port int) error {
	const attempts = 3
	var err error
	for i := 0; i < attempts; i++ {
		p := port
		if p == 0 {
			if p, err = freePort(); err != nil {
				return fmt.Errorf("postgres: %w", err)
			}
		}
		err = c.startOnce(ctx, p)
		if err == nil || port != 0 || !errors.Is(err, errAddrInUse) {
			return err
		}
	}
	return err
}

var errAddrInUse = errors.New("address in use")

func (c *Cluster) startOnce(ctx context.Context, port int) error {
	sockDir, err := os.MkdirTemp("", "drover-pg-")
	if err != nil {
		return fmt.Errorf("postgres: socket dir: %w", err)
	}
	if c.cred != nil {
		if err := os.Chown(sockDir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			os.RemoveAll(sockDir)
			return fmt.Errorf("postgres: socket dir: %w", err)
		}
	}
	args := []string{
		"-D", c.dataDir,
		"-p", strconv.Itoa(port),
		"-k", sockDir,
		"-c", "listen_addresses=127.0.0.1",
	}
	if !c.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(c.bins.postgres, args...)
	c.setProc(cmd)
	w := &logWriter{c: c}
	cmd.Stdout, cmd.Stderr = w, w
	c.tailMu.Lock()
	c.tail.buf = c.tail.buf[:0]
	c.tailMu.Unlock()

	start := time.Now()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(sockDir)
		return fmt.Errorf("postgres: start server: %w", err)
	}
	done := make(chan struct{})
	c.mu.Lock()
	c.port, c.cmd, c.done, c.sockDir = port, cmd, done, sockDir
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(done)
	}()

	if err := c.waitReady(ctx, done); err != nil {
		_ = c.Stop(context.Background())
		return err
	}
	c.log.Debug("postgres accepting connections", "port", port, "pid", cmd.Process.Pid, "took", time.Since(start).String())
	return nil
}

// waitReady pings the server until it answers, it exits, or the start
// timeout or ctx expires.
func (c *Cluster) waitReady(ctx context.Context, done <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	url := c.URL("postgres")
	for {
		select {
		case <-done:
			c.mu.Lock()
			werr := c.waitErr
			c.mu.Unlock()
			tail := c.LogTail(20)
			err := fmt.Errorf("postgres: server exited during start (%v):\n%s", werr, tail)
			if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "could not create any TCP/IP sockets") {
				err = fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("postgres: not accepting connections after %s: %w\n%s", c.opts.StartTimeout, ctx.Err(), c.LogTail(20))
		case <-tick.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(pctx, url)
		if err == nil {
			err = conn.Ping(pctx)
			conn.Close(pctx)
		}
		pcancel()
		if err == nil {
			return nil
		}
	}
}

// logWriter feeds the server's output to the log tail and the logger.
type logWriter struct{ c *Cluster }

func (w *logWriter) Write(p []byte) (int, error) {
	w.c.tailMu.Lock()
	w.c.tail.write(p)
	w.c.tailMu.Unlock()
	if w.c.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
			w.c.log.Debug(line, "component", "postgres")
		}
	}
	return len(p), nil
}

var _ io.Writer = (*logWriter)(nil)

// LogTail returns the last n lines the server wrote since its last start.
func (c *Cluster) LogTail(n int) string {
	c.tailMu.Lock()
	defer c.tailMu.Unlock()
	return lastLines(string(c.tail.buf), n)
}

// Port is the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// DataDir is the absolute data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// PID is the postmaster's process id, or 0 when the server is stopped.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	select {
	case <-c.done:
		return 0
	default:
		return c.cmd.Process.Pid
	}
}

// URL is a connection URL for database dbname as the postgres superuser:
// postgres://postgres@127.0.0.1:PORT/dbname?sslmode=disable.
func (c *Cluster) URL(dbname string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port(), dbname)
}

// Stop shuts the server down: SIGINT (fast shutdown: sessions are
// disconnected, the cluster stays consistent), then SIGKILL to the whole
// process group if it has not exited within 10 s or when ctx ends. Stopping
// a stopped cluster is a no-op.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	cmd, done, sockDir := c.cmd, c.done, c.sockDir
	c.cmd, c.sockDir = nil, ""
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	defer os.RemoveAll(sockDir)
	pid := cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGINT)
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	var err error
	select {
	case <-done:
		return nil
	case <-timer.C:
		err = errors.New("postgres: no fast shutdown within 10s, killed")
	case <-ctx.Done():
		err = fmt.Errorf("postgres: stop: %w, killed", ctx.Err())
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-done
	return err
}

// Restart stops the server and starts it again on the same port and data
// directory, for tests of database outages.
func (c *Cluster) Restart(ctx context.Context) error {
	port := c.Port()
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.startServer(ctx, port)
}

// CreateDatabase creates database name, copied from template when template
// is not empty. The template must have no open connections.
func (c *Cluster) CreateDatabase(ctx context.Context, name, template string) error {
	return CreateDatabase(ctx, c.URL("postgres"), name, template)
}

// CreateDatabase runs CREATE DATABASE name [TEMPLATE template] on the server
// at url (any database of it).
func CreateDatabase(ctx context.Context, url, name, template string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("postgres: create database %s: %w", name, err)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
