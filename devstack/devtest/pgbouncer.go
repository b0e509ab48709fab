package devtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PgBouncer starts a real PgBouncer (Debian package pgbouncer) on a free
// port of 127.0.0.1 in front of the database of upstream (a URL from
// Postgres) and returns the URL to reach that database through it, with
// the same user. mode is "transaction" or "session" (pool_mode);
// poolSize is default_pool_size, the server connections per database and
// user (small values make consecutive transactions of one client land on
// other server connections). Clients are trusted; PgBouncer logs in to
// PostgreSQL with the upstream URL's password, if any. A schema-per-test
// URL (search_path in the query, see Postgres) becomes a database alias
// whose server connections set that search_path. PgBouncer is stopped when
// the test ends and killed with the test process (parent-death signal); as
// root it runs as the postgres user (it refuses to run as root). A missing
// pgbouncer fails the test with the install command.
func PgBouncer(t testing.TB, upstream, mode string, poolSize int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			t.Fatalf("devtest: pgbouncer not found (apt-get install -y pgbouncer, or scripts/deps): %v", err)
		}
		bin = "/usr/sbin/pgbouncer"
	}
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("devtest: pgbouncer: upstream URL: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	username := u.User.Username()
	password, _ := u.User.Password()
	q := u.Query()
	alias := dbname
	server := fmt.Sprintf("host=%s port=%s dbname=%s user=%s", host, port, dbname, username)
	if password != "" {
		server += " password=" + quoteConf(password)
	}
	if sp := q.Get("search_path"); sp != "" {
		alias = sp
		server += " connect_query=" + quoteConf("SET search_path TO "+pgx.Identifier{sp}.Sanitize())
		q.Del("search_path")
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("devtest: pgbouncer refuses to run as root and there is no postgres user to run it as: %v", err)
		}
		uid, _ := strconv.ParseUint(pu.Uid, 10, 32)
		gid, _ := strconv.ParseUint(pu.Gid, 10, 32)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// Its files in t.TempDir() must be reachable (x on the parents).
		for d := filepath.Dir(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, fi.Mode().Perm()|0o001)
			}
		}
	}
	users := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("%q %q\n", username, password)), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 {
		lport, err := freePort()
		if err != nil {
			t.Fatalf("devtest: pgbouncer: %v", err)
		}
		conf := strings.Join([]string{
			"[databases]",
			fmt.Sprintf("%s = %s", alias, server),
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			fmt.Sprintf("listen_port = %d", lport),
			"unix_socket_dir =",
			"auth_type = trust",
			"auth_file = " + users,
			"pool_mode = " + mode,
			fmt.Sprintf("default_pool_size = %d", poolSize),
			"max_client_conn = 200",
			// pgx and other drivers send it; PgBouncer does not track it.
			"ignore_startup_parameters = extra_float_digits",
			// After a failed server login (no leader behind HAProxy during a
			// failover) PgBouncer waits this long before the next attempt,
			// failing clients meanwhile; the default is 15 s.
			"server_login_retry = 1",
			"logfile =",
			"pidfile =",
			"",
		}, "\n")
		path := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		var logs lockedBuffer
		cmd := exec.Command(bin, path)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
		if err := cmd.Start(); err != nil {
			t.Fatalf("devtest: pgbouncer: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop := func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		out := *u
		out.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(lport))
		out.Path = "/" + alias
		out.RawQuery = q.Encode()
		ok := false
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				lastErr = fmt.Errorf("pgbouncer exited: %s", logs.String())
				deadline = time.Time{}
				continue
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			c, err := pgx.Connect(ctx, out.String())
			if err == nil {
				err = c.Ping(ctx)
				_ = c.Close(ctx)
			}
			cancel()
			if err == nil {
				ok = true
				break
			}
			lastErr = fmt.Errorf("%w (pgbouncer log: %s)", err, logs.String())
			time.Sleep(100 * time.Millisecond)
		}
		if ok {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("pgbouncer log:\n%s", logs.String())
				}
			})
			return out.String()
		}
		stop()
	}
	t.Fatalf("devtest: pgbouncer did not start: %v", lastErr)
	return ""
}

// quoteConf quotes a value for PgBouncer's [databases] connection string.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// lockedBuffer is a bytes.Buffer safe for a process's two output streams
// and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
