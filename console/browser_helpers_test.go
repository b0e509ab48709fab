package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
)

var update = flag.Bool("update", false, "copy the page screenshots into console/screenshots/ (the README shows them)")

var droverBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "drover-console-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		if droverBin, err = devtest.BuildDrover(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a drover process the test started, with its output kept.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{} // closed when the process exited; then err is set
	err  error
}

func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startDrover runs the binary with args until the test ends (SIGTERM, then
// SIGKILL after 30 s).
func startDrover(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(droverBin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		// Its last words: the pipe is read to its end (unless a child it
		// left behind holds it open) before done says it exited.
		select {
		case <-read:
		case <-time.After(5 * time.Second):
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startDev runs drover dev on free ports and returns its env file.
func startDev(t *testing.T, extra ...string) (*proc, map[string]string) {
	t.Helper()
	dir, err := filepath.Abs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(dir, "dev.env")
	args := append([]string{"dev", "--data-dir", dir, "--dev-env", "", "--mqtt-port", "0", "--kafka-port", "0",
		"--registry-port", "0", "--s3-port", "0", "--console-port", "0"}, extra...)
	p := startDrover(t, []string{"DROVER_DATABASE_URL="}, args...)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("drover dev exited: %v\n%s", p.err, p.Log())
		default:
		}
		if env, err := cli.ReadEnvFile(envFile); err == nil {
			return p, env
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no env file after 3m\n%s", p.Log())
	return nil, nil
}

// browser is a headless Debian chromium driven by chromedp, recording
// every console error, uncaught exception and browser-log error (a failed
// load) of its pages.
type browser struct {
	ctx    context.Context
	mu     sync.Mutex
	errors []string
	shots  string
}

func newBrowser(t *testing.T, shots string) *browser {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (apt-get install -y chromium; make test installs it through scripts/deps): %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	b := &browser{ctx: ctx, shots: shots}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s: %s %s", m.Type, m.Text, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// takeErrors returns and forgets the errors seen so far.
func (b *browser) takeErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errors
	b.errors = nil
	return e
}

// do runs steps with a deadline.
func (b *browser) do(t *testing.T, timeout time.Duration, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action that returns a value.
func value[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// visit loads url, waits for the CSS selector sel to be visible and checks
// the page logged no error.
func (b *browser) visit(t *testing.T, url, sel string, timeout time.Duration) {
	t.Helper()
	b.takeErrors()
	b.do(t, timeout, "loading "+url+" until "+sel, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel)))
	time.Sleep(700 * time.Millisecond) // let late renders and requests report
	if errs := b.takeErrors(); len(errs) > 0 {
		t.Fatalf("%s: console errors:\n%s", url, strings.Join(errs, "\n"))
	}
}

// screenshot saves the whole page as name.png in the shots directory.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	png := value(t, b, "screenshot "+name, chromedp.FullScreenshot(100)) // 100: PNG
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// attr reads an attribute of the first element matching the CSS selector.
func (b *browser) attr(t *testing.T, sel, name string) string {
	t.Helper()
	r := value(t, b, "reading "+name+" of "+sel, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if !r.Exists {
		t.Fatalf("%s has no attribute %s", sel, name)
	}
	return r.Value
}

// text reads the text of the first element matching the CSS selector.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	return value(t, b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// count counts the elements matching the CSS selector now.
func (b *browser) count(t *testing.T, sel string) int {
	t.Helper()
	n := value(t, b, "counting "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	return n
}

// publish sends one QoS 1 message over MQTT with paho.golang, as drover
// dev's tooling principal (its broker enforces the device registry).
func publish(t *testing.T, env map[string]string, topic string, payload []byte) {
	t.Helper()
	u, err := url.Parse(env["DROVER_MQTT_URL"])
	if err != nil {
		t.Fatal(err)
	}
	user, pwFile := env["DROVER_DEV_MQTT_TOOLS_USERNAME"], env["DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE"]
	if user == "" || pwFile == "" {
		t.Fatalf("env file lacks DROVER_DEV_MQTT_TOOLS_USERNAME or _PASSWORD_FILE: %v", env)
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30,
		CleanStartOnInitialConnection: true, ConnectTimeout: 10 * time.Second,
		ConnectUsername: user, ConnectPassword: bytes.TrimSpace(pw),
		ClientConfig: paho.ClientConfig{ClientID: fmt.Sprintf("console-test-%d", time.Now().UnixNano())}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cm.Disconnect(context.Background()) }()
	if err := cm.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// getJSON fetches a console API path (with an optional token) into v and
// returns the status code.
func getJSON(t *testing.T, method, u, token string, body []byte, v any) int {
	t.Helper()
	cmd := []string{"-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, u}
	if token != "" {
		cmd = append(cmd, "-H", "Authorization: Bearer "+token)
	}
	if body != nil {
		cmd = append(cmd, "-H", "Content-Type: application/json", "--data-binary", string(body))
	}
	// curl: a second, independent client of the console's API.
	out, err := exec.Command("curl", cmd...).Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v", method, u, err)
	}
	i := bytes.LastIndexByte(out, '\n')
	var code int
	fmt.Sscan(string(out[i+1:]), &code)
	if v != nil && code/100 == 2 {
		if err := json.Unmarshal(out[:i], v); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, u, err, out)
		}
	}
	return code
}
