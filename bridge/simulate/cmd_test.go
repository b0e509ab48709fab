package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
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

// TestIntegrationCommand runs `drover simulate --count` against the
// embedded broker and S3 and checks the final summary line.
func TestIntegrationCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	t.Setenv("DROVER_DEV_ENV", "")
	broker, endpoint := devtest.MQTT(t), devtest.S3(t)
	sub := subscribe(t, broker)
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(Command(root.Conn))
	var out lockedBuffer
	root.Cmd.SetOut(&out)
	root.Cmd.SetErr(&out)
	root.Cmd.SetArgs([]string{"simulate", "--log-level", "error", "--admin-addr", "127.0.0.1:0",
		"--mqtt-url", broker, "--s3-endpoint", endpoint, "--count", "300", "--rate", "1000",
		"--devices", "25", "--invalid-ratio", "0.2", "--media-ratio", "0.02", "--tenant", "farm-9"})
	if err := root.Cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("simulate: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "simulate: sent 300 (") {
		t.Fatalf("output lacks the final summary:\n%s", out.String())
	}
	waitFor(t, "300 messages", 60*time.Second, func() bool { return sub.count() >= 300 })
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for _, m := range sub.msgs {
		if strings.HasPrefix(m.Topic, "devices/") && !strings.HasPrefix(m.Topic, "devices/farm-9/") {
			t.Fatalf("message for another tenant: %s", m.Topic)
		}
	}
}

// TestIntegrationDevStage runs the simulator the way `drover dev` does and
// stops it through the context.
func TestIntegrationDevStage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker, endpoint := devtest.MQTT(t), devtest.S3(t)
	reg := registrytest.New(t) // Kafka and the schema registry with devices.registry
	sub := subscribe(t, broker)
	stage := DevStage(Config{Rate: 100})
	if stage.Name != "simulator" {
		t.Fatalf("stage name %q", stage.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	dataDir := t.TempDir()
	go func() {
		done <- stage.Run(ctx, devstack.Endpoints{MQTTURL: broker, S3Endpoint: endpoint, S3Bucket: devstack.DefaultBucket,
			KafkaBrokers: strings.Join(reg.Brokers, ","), SchemaRegistryURL: reg.RegistryURL, DataDir: dataDir}, devtest.Logger())
	}()
	waitFor(t, "traffic from the dev stage", 60*time.Second, func() bool { return sub.count() >= 30 })
	// The stage registered its herd and connects each device as itself.
	if err := stage.Ready(ctx); err != nil {
		t.Fatalf("stage not ready while publishing: %v", err)
	}
	env := stage.Env()
	if len(env) != 1 || env[0][0] != "DROVER_SECRETS_FILE" {
		t.Fatalf("stage env %v, want DROVER_SECRETS_FILE", env)
	}
	secrets, err := ReadSecrets(env[0][1], DefaultTenant)
	if err != nil || len(secrets) != DevDevices {
		t.Fatalf("secrets file: %d secrets, %v; want %d", len(secrets), err, DevDevices)
	}
	waitFor(t, "the registered herd", 30*time.Second, func() bool {
		d, ok := reg.View.Device(DefaultTenant, "collar-0001")
		w, wok := reg.View.Device(DefaultTenant, "wildfi-0010")
		return ok && d.Active() && d.Secret.Verify([]byte(secrets["collar-0001"])) && wok && w.Type == registry.TypeWildFi
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stage: %v", err)
		}
	case <-time.After(DrainTimeout + 10*time.Second):
		t.Fatal("dev stage did not stop")
	}
}

func TestFixturesCommand(t *testing.T) {
	t.Setenv("DROVER_DEV_ENV", "")
	run := func(args ...string) (string, error) {
		root := cli.NewRoot("test")
		root.Cmd.AddCommand(Command(root.Conn))
		var out lockedBuffer
		root.Cmd.SetOut(&out)
		root.Cmd.SetErr(&out)
		root.Cmd.SetArgs(append([]string{"simulate", "fixtures", "--log-level", "error"}, args...))
		err := root.Cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	out, err := run("--tenant", "farm3", "--device", "cow-9")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(FixturesAt(epoch, "farm3", "cow-9")) {
		t.Fatalf("%d lines, want one per fixture", len(lines))
	}
	classes := map[Class]bool{}
	for _, l := range lines {
		var f fixtureJSON
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if f.Size != len(f.Payload) || (f.Valid == (f.Class != "")) {
			t.Fatalf("inconsistent fixture line %.200s", l)
		}
		if strings.HasPrefix(f.Topic, "devices/") && !strings.HasPrefix(f.Topic, "devices/farm3/") {
			t.Fatalf("fixture topic %s ignores --tenant", f.Topic)
		}
		classes[f.Class] = true
	}
	for _, c := range Classes() {
		if !classes[c] {
			t.Errorf("class %s missing from the output", c)
		}
	}
	if _, err := run("--tenant", "a/b"); err == nil || !strings.Contains(err.Error(), "--tenant") || cli.ExitCode(err) != 2 {
		t.Fatalf("bad tenant: %v", err)
	}
}
