// Package hatest starts the production database plane on loopback for
// tests: etcd, PostgreSQL nodes managed by Patroni (synchronous
// replication), HAProxy routing a read-write port to the leader and a
// read-only port to the replicas by Patroni's REST health checks, and
// PgBouncer in front of the read-write port. Everything is the Debian
// packages (etcd-server, patroni, haproxy, pgbouncer, postgresql-15) on
// free ports; a missing one fails the test with the install command.
package hatest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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

	"github.com/drover-iot/drover/devstack/devtest"
)

// Superuser credentials of the test cluster (loopback only).
const (
	superuser = "postgres"
	superpass = "drover-ha-test"
)

// Cluster is a running database plane.
type Cluster struct {
	t     testing.TB
	dir   string
	Nodes []*Node
	// RW and RO are HAProxy's read-write (leader) and read-only (replicas)
	// ports; Bouncer is PgBouncer in front of RW.
	RW, RO      int
	etcdURL     string
	bouncerMode string
	cred        *syscall.Credential
}

// Node is one Patroni-managed PostgreSQL.
type Node struct {
	Name          string
	PGPort, REST  int
	dataDir, conf string
	patroni       *proc
}

// Options shape a cluster.
type Options struct {
	Nodes int // default 2
	// PoolMode is PgBouncer's pool_mode (default transaction).
	PoolMode string
	// PoolSize is PgBouncer's default_pool_size (default 8).
	PoolSize int
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.out.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

func (c *Cluster) start(name string, cred *syscall.Credential, bin string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.Dir = c.dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "PATRONI") && !strings.HasPrefix(kv, "ETCD") {
			env = append(env, kv)
		}
	}
	p.cmd.Env = append(env, "HOME="+c.dir)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatalf("hatest: starting %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c.t.Cleanup(func() {
		// The whole process group: Patroni's PostgreSQL goes with it.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if c.t.Failed() {
			c.t.Logf("%s output (tail):\n%s", name, p.tail(6000))
		}
	})
	return p
}

func need(t testing.TB, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/lib/postgresql/15/bin"} {
		if p := filepath.Join(d, bin); fileExists(p) {
			return p
		}
	}
	t.Fatalf("hatest: %s not found (apt-get install -y %s, or scripts/deps)", bin, pkg)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// freePorts returns n distinct free loopback ports.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var out []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

// Start starts etcd, the Patroni nodes (the first bootstraps, the others
// replicate from it), HAProxy and PgBouncer, and waits until the leader
// writes and every replica streams synchronously or asynchronously.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.PoolMode == "" {
		o.PoolMode = "transaction"
	}
	if o.PoolSize == 0 {
		o.PoolSize = 8
	}
	etcdBin := need(t, "etcd", "etcd-server")
	patroniBin := need(t, "patroni", "patroni")
	haproxyBin := need(t, "haproxy", "haproxy")
	need(t, "pg_ctl", "postgresql-15")
	dir, err := os.MkdirTemp("", "drover-hatest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c := &Cluster{t: t, dir: dir, bouncerMode: o.PoolMode}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("hatest: PostgreSQL refuses root and there is no postgres user (apt-get install -y postgresql): %v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			t.Fatal(err)
		}
		for d := filepath.Dir(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
			if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
				_ = os.Chmod(d, fi.Mode().Perm()|0o001)
			}
		}
	}
	ports := freePorts(t, 4+2*o.Nodes)
	etcdClient, etcdPeer := ports[0], ports[1]
	c.RW, c.RO = ports[2], ports[3]
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	c.start("etcd", c.cred, etcdBin,
		"--name", "hatest", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("hatest=http://127.0.0.1:%d", etcdPeer),
		"--enable-v2=true")
	waitFor(t, 30*time.Second, "etcd", func() error {
		resp, err := http.Get(c.etcdURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	for i := range o.Nodes {
		n := &Node{Name: fmt.Sprintf("node%d", i), PGPort: ports[4+2*i], REST: ports[5+2*i]}
		n.dataDir = filepath.Join(dir, n.Name, "data")
		n.conf = filepath.Join(dir, n.Name+".yml")
		if err := os.MkdirAll(filepath.Join(dir, n.Name), 0o700); err != nil {
			t.Fatal(err)
		}
		if c.cred != nil {
			_ = os.Chown(filepath.Join(dir, n.Name), int(c.cred.Uid), int(c.cred.Gid))
		}
		if err := os.WriteFile(n.conf, []byte(c.patroniConf(n, etcdClient)), 0o644); err != nil {
			t.Fatal(err)
		}
		n.patroni = c.start("patroni "+n.Name, c.cred, patroniBin, n.conf)
		c.Nodes = append(c.Nodes, n)
		if i == 0 {
			// The others clone the first once it leads.
			waitFor(t, 90*time.Second, "the first node to lead", func() error {
				_, err := c.Leader()
				return err
			})
		}
	}
	waitFor(t, 120*time.Second, "every replica streaming", func() error {
		st, err := c.status()
		if err != nil {
			return err
		}
		streaming, sync := 0, 0
		for _, m := range st.Members {
			if m.Role != "leader" && (m.State == "streaming" || m.State == "running") && m.Lag != nil {
				streaming++
			}
			if m.Role == "sync_standby" {
				sync++
			}
		}
		// Synchronous mode: a commit waits for the sync standby, and only
		// it may be promoted or take over in a switchover.
		if streaming < o.Nodes-1 || sync == 0 {
			return fmt.Errorf("members %+v", st.Members)
		}
		return nil
	})
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(c.haproxyConf()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.start("haproxy", nil, haproxyBin, "-f", filepath.Join(dir, "haproxy.cfg"), "-db")
	// HAProxy starts with every server up until its checks say otherwise:
	// wait until both ports route by role, several times in a row.
	time.Sleep(time.Second)
	waitFor(t, 30*time.Second, "HAProxy routing by role", func() error {
		for range 4 {
			if r, err := c.inRecovery(c.RWURL("postgres")); err != nil || r {
				return fmt.Errorf("read-write port: in recovery %t, %v", r, err)
			}
			if r, err := c.inRecovery(c.ROURL("postgres")); err != nil || !r {
				return fmt.Errorf("read-only port: in recovery %t, %v", r, err)
			}
		}
		return nil
	})
	return c
}

func (c *Cluster) patroniConf(n *Node, etcdPort int) string {
	return fmt.Sprintf(`scope: drover-hatest
namespace: /hatest/
name: %[1]s
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:%[2]d
  connect_address: 127.0.0.1:%[2]d
etcd3:
  hosts: 127.0.0.1:%[3]d
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    master_start_timeout: 0
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 8
        max_replication_slots: 8
        wal_log_hints: "on"
        max_connections: 100
        fsync: "off"
        full_page_writes: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 md5
    - host all all 127.0.0.1/32 md5
postgresql:
  listen: 127.0.0.1:%[4]d
  connect_address: 127.0.0.1:%[4]d
  data_dir: %[5]s
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: %[6]s
  authentication:
    replication:
      username: replicator
      password: replicator-pw
    superuser:
      username: %[7]s
      password: %[8]s
    rewind:
      username: %[7]s
      password: %[8]s
  parameters:
    unix_socket_directories: %[9]s
tags:
  nofailover: false
  noloadbalance: false
`, n.Name, n.REST, etcdPort, n.PGPort, n.dataDir, filepath.Join(c.dir, n.Name, "pgpass"), superuser, superpass, filepath.Join(c.dir, n.Name))
}

func (c *Cluster) haproxyConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 200
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen rw
    bind 127.0.0.1:%d
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
`, c.RW)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check port %d\n", n.Name, n.PGPort, n.REST)
	}
	fmt.Fprintf(&b, `listen ro
    bind 127.0.0.1:%d
    balance roundrobin
    option httpchk GET /replica
    http-check expect status 200
    default-server inter 300ms fall 2 rise 1 on-marked-down shutdown-sessions
`, c.RO)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check port %d\n", n.Name, n.PGPort, n.REST)
	}
	return b.String()
}

// RWURL and ROURL are superuser URLs of database db through HAProxy's
// read-write and read-only ports.
func (c *Cluster) RWURL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", superuser, superpass, c.RW, db)
}

func (c *Cluster) ROURL(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", superuser, superpass, c.RO, db)
}

// Bouncer starts PgBouncer in front of the read-write port for database db
// and returns its URL.
func (c *Cluster) Bouncer(t testing.TB, db string, poolSize int) string {
	return devtest.PgBouncer(t, c.RWURL(db), c.bouncerMode, poolSize)
}

// CreateDatabase creates db through the read-write port.
func (c *Cluster) CreateDatabase(db string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.RWURL("postgres"))
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) ping(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// Member is one node as Patroni's /cluster reports it.
type Member struct {
	Name  string `json:"name"`
	Role  string `json:"role"`
	State string `json:"state"`
	Lag   any    `json:"lag"`
}

type clusterStatus struct {
	Members []Member `json:"members"`
}

func (c *Cluster) status() (clusterStatus, error) {
	var st clusterStatus
	var last error
	for _, n := range c.Nodes {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/cluster", n.REST))
		if err != nil {
			last = err
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil {
			return st, nil
		}
		last = err
	}
	return st, fmt.Errorf("no Patroni REST API answers: %w", last)
}

// Members returns the cluster's members as Patroni reports them.
func (c *Cluster) Members() ([]Member, error) {
	st, err := c.status()
	return st.Members, err
}

// Leader returns the node that leads and runs.
func (c *Cluster) Leader() (*Node, error) {
	st, err := c.status()
	if err != nil {
		return nil, err
	}
	for _, m := range st.Members {
		if m.Role == "leader" && m.State == "running" {
			for _, n := range c.Nodes {
				if n.Name == m.Name {
					return n, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no running leader: %+v", st.Members)
}

// PostmasterPID reads the PID of n's PostgreSQL from its postmaster.pid.
func (n *Node) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// KillPostgres sends SIGKILL to n's postmaster (its backends die with it,
// as after a crash) and returns when it was sent.
func (c *Cluster) KillPostgres(n *Node) time.Time {
	c.t.Helper()
	pid, err := n.PostmasterPID()
	if err != nil {
		c.t.Fatalf("hatest: postmaster of %s: %v", n.Name, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("hatest: kill -9 %d (%s): %v", pid, n.Name, err)
	}
	return time.Now()
}

// Switchover asks Patroni to hand leadership from the current leader to
// candidate (planned: the leader stops cleanly, the candidate promotes).
func (c *Cluster) Switchover(leader, candidate *Node) error {
	body, _ := json.Marshal(map[string]string{"leader": leader.Name, "candidate": candidate.Name})
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Post(fmt.Sprintf("http://127.0.0.1:%d/switchover", leader.REST), "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("switchover: %d %s", resp.StatusCode, msg.String())
	}
	return nil
}

// WaitLeader waits until a node other than not (nil: any) leads and the
// read-write port reaches it.
func (c *Cluster) WaitLeader(not *Node, timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	waitFor(c.t, timeout, "a new leader behind the read-write port", func() error {
		n, err := c.Leader()
		if err != nil {
			return err
		}
		if not != nil && n == not {
			return errors.New("the old leader still leads")
		}
		if err := c.ping(c.RWURL("postgres")); err != nil {
			return err
		}
		leader = n
		return nil
	})
	return leader
}

func waitFor(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("hatest: timed out after %s waiting for %s: %v", timeout, what, err)
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// WaitSyncStandby waits until n streams from the leader as its synchronous
// standby (after a failover the old leader rejoins as a replica first;
// Patroni makes it the sync standby a loop later).
func (c *Cluster) WaitSyncStandby(n *Node, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, n.Name+" as the synchronous standby", func() error {
		ms, err := c.Members()
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == n.Name && m.Role == "sync_standby" && m.Lag != nil && (m.State == "streaming" || m.State == "running") {
				return nil
			}
		}
		return fmt.Errorf("members %+v", ms)
	})
}

func (c *Cluster) inRecovery(url string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	var r bool
	err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r)
	return r, err
}
