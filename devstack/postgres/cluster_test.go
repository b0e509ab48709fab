package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func startCluster(t *testing.T) *Cluster {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	c, err := Start(ctx, Options{DataDir: filepath.Join(t.TempDir(), "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initdb + start took %s", time.Since(start))
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return c
}

func queryInt(t *testing.T, url, q string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntegrationPostgresLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	c := startCluster(t)

	if got := queryInt(t, c.URL("postgres"), "SELECT 1"); got != 1 {
		t.Fatalf("SELECT 1 = %d", got)
	}

	// A template with a table, copied into a new database.
	if err := c.CreateDatabase(ctx, "tmpl", ""); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL("tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	start := time.Now()
	if err := c.CreateDatabase(ctx, "copy", "tmpl"); err != nil {
		t.Fatal(err)
	}
	t.Logf("CREATE DATABASE ... TEMPLATE took %s", time.Since(start))
	if got := queryInt(t, c.URL("copy"), "SELECT count(*) FROM t"); got != 2 {
		t.Fatalf("rows copied from template = %d, want 2", got)
	}

	// Restart keeps port and data.
	port, pid := c.Port(), c.PID()
	start = time.Now()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(start))
	if c.Port() != port {
		t.Fatalf("port after restart = %d, want %d", c.Port(), port)
	}
	if c.PID() == pid {
		t.Fatal("same postmaster pid after restart")
	}
	if got := queryInt(t, c.URL("copy"), "SELECT count(*) FROM t"); got != 2 {
		t.Fatalf("rows after restart = %d, want 2", got)
	}

	// Stop leaves no process behind: the postmaster and its process group.
	pid = c.PID()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c.PID() != 0 {
		t.Fatal("PID not 0 after Stop")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("postmaster %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process group %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestPostgresStartErrors(t *testing.T) {
	notEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(notEmpty, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
		is      error
	}{
		{name: "no data dir", opts: Options{}, wantErr: "data dir is required"},
		{
			name:    "missing binaries",
			opts:    Options{DataDir: t.TempDir(), BinDir: t.TempDir()},
			wantErr: "apt-get install -y postgresql",
			is:      ErrBinaryNotFound,
		},
		{name: "foreign data dir", opts: Options{DataDir: notEmpty}, wantErr: "not empty and holds no cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v is not %v", err, tt.is)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}
