package devstack_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

// TestIntegrationDevWaitsForStages: `drover dev` writes its env file only
// once every stage with a Ready check reports ready, so a script waiting
// for the file cannot publish before the bridge subscribed.
func TestIntegrationDevWaitsForStages(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	var ready atomic.Bool
	started := make(chan struct{})
	slow := devstack.Stage{
		Name: "slow",
		Run: func(ctx context.Context, _ devstack.Endpoints, _ *slog.Logger) error {
			close(started) // stages start once the stack is up and provisioned
			<-ctx.Done()
			return nil
		},
		Ready: func(context.Context) error {
			if !ready.Load() {
				return errors.New("not yet")
			}
			return nil
		},
	}
	dir := t.TempDir()
	envFile := filepath.Join(dir, "dev.env")
	cmd := devstack.Command(&cli.Conn{Log: devtest.Logger()}, slow)
	cmd.SetArgs([]string{"--data-dir", filepath.Join(dir, "data"), "--env-file", envFile,
		"--mqtt-port", "0", "--kafka-port", "0", "--registry-port", "0", "--s3-port", "0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("drover dev: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("drover dev did not stop")
		}
	}()

	// Wait until the stage runs (the stack is up and provisioned: seconds,
	// or much longer on a loaded machine), give waitStages ample time, and
	// the env file must still not be there while the stage is not ready.
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("drover dev stopped before running the stage: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the stage did not start within 2 minutes")
	}
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(envFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("env file written while a stage was not ready (stat: %v)", err)
	}
	ready.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(envFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("env file not written within 10s of the stage becoming ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
