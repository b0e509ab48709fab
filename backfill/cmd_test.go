package backfill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/topics"
)

const childEnv = "DROVER_BACKFILL_TEST_CHILD_ARGS"

// TestMain doubles as the drover binary for the kill-and-resume test: with
// childEnv set it runs `drover backfill ...` with those arguments.
func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		os.Exit(runCLI(strings.Split(args, "\x1f")))
	}
	os.Exit(m.Run())
}

func runCLI(args []string) int {
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(BackfillCommand(root.Conn), MediaCommand(root.Conn))
	return root.Execute(append([]string{"--dev-env", ""}, args...))
}

// child runs the test binary as drover with args.
func child(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_PROFILE=", "AWS_CONFIG_FILE=/nonexistent", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent",
		"AWS_EC2_METADATA_DISABLED=true")
	return cmd
}

func TestBackfillMediaBadInput(t *testing.T) {
	f := newFakeS3(t, "media")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"backfill", "media", "--s3-endpoint", f.url, "--dry-run", "--state-dir", ""}
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "start missing", args: []string{"--window-end", "2026-11-23"}, wantErr: "--window-start: required"},
		{name: "unparsable", args: []string{"--window-start", "yesterday", "--window-end", "2026-11-23"}, wantErr: "--window-start: \"yesterday\" is not a time"},
		{name: "reversed", args: []string{"--window-start", "2026-11-23", "--window-end", "2026-11-22"}, wantErr: "must be before --window-end"},
		{name: "empty window", args: []string{"--window-start", "2026-11-23", "--window-end", "2026-11-23T00:00:00Z"}, wantErr: "must be before"},
		{name: "unknown bucket", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--bucket", "nope"}, wantErr: "--bucket nope: no such bucket"},
		{name: "negative rate", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--rate", "-1"}, wantErr: "--rate"},
		{name: "negative progress interval", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--progress-interval", "-5s"}, wantErr: "--progress-interval: -5s is negative"},
		{name: "zero concurrency", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--concurrency", "0"}, wantErr: "--concurrency: 0"},
		{name: "empty bucket", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--bucket", "media,"}, wantErr: "--bucket: empty bucket name"},
		{name: "unknown progress", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--progress", "fancy"}, wantErr: `--progress: unknown "fancy"`},
		{name: "key without secret", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--s3-access-key-id", "k"}, wantErr: "--s3-secret-access-key-file: required"},
		{name: "bad mapping", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--mapping", "testdata/bad-kind.yaml"}, wantErr: "extensions.foo: unknown media kind"},
		{name: "ok", args: []string{"--window-start", "2026-11-22", "--window-end", "2026-11-23", "--bucket", "media", "--s3-access-key-id", "k", "--s3-secret-access-key-file", secret}},
		{name: "relative window", args: []string{"--window", "previous-hour", "--bucket", "media"}},
		{name: "relative last", args: []string{"--window", "last:90m", "--bucket", "media"}},
		{name: "bad relative window", args: []string{"--window", "yesterday"}, wantErr: "--window: unknown window \"yesterday\""},
		{name: "both windows", args: []string{"--window", "previous-day", "--window-start", "2026-11-22"}, wantErr: "give either --window or --window-start/--window-end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := child(append(base, c.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("%v: %s", err, stderr.String())
				}
				return
			}
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), c.wantErr) {
				t.Fatalf("exit %v, stderr %q; want exit 2 and %q", err, stderr.String(), c.wantErr)
			}
		})
	}
}

// runChild runs drover args as a child process and returns its stdout; a
// non-zero exit fails the test with stderr.
func runChild(t *testing.T, args ...string) string {
	t.Helper()
	cmd := child(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("drover %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func TestBackfillMediaNoCredentials(t *testing.T) {
	// A non-loopback endpoint and no credentials anywhere: refused before
	// any work (nothing listens there; it is never contacted).
	cmd := child("backfill", "media", "--s3-endpoint", "http://s3.invalid:9000", "--window-start", "2026-11-22", "--window-end", "2026-11-23", "--dry-run")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "no S3 credentials") {
		t.Fatalf("exit %v, stderr %q", err, stderr.String())
	}
}

func TestIntegrationBackfillKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	// Prefixes of 2500 keys: three ListObjectsV2 pages each, so the kill
	// lands inside a prefix.
	const devices, per = 3, 2500
	for d := range devices {
		for i := range per {
			f.put(t, "media", fmt.Sprintf("image2d/farm/cow-%d/2026/11/22/%04d.jpg", d, i), day.Add(time.Duration(i)*time.Second), nil)
		}
	}
	state := t.TempDir()
	args := []string{"backfill", "media", "--s3-endpoint", f.url, "--kafka-brokers", strings.Join(e.brokers, ","),
		"--schema-registry-url", e.regURL, "--bucket", "media", "--window-start", "2026-11-22", "--window-end", "2026-11-23",
		"--state-dir", state, "--concurrency", "1", "--progress", "log", "--progress-interval", "200ms"}
	first := child(append(args, "--rate", "1500")...)
	var out1 syncBuffer
	first.Stdout, first.Stderr = &out1, &out1
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill -9 once the checkpoint holds a position inside a prefix.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ms, _ := filepath.Glob(filepath.Join(state, "backfill-media-*.json"))
		if len(ms) == 1 {
			b, _ := os.ReadFile(ms[0])
			if bytes.Contains(b, []byte(`"after":`)) {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = first.Process.Kill()
			t.Fatalf("no checkpoint progress; output:\n%s", out1.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	before := len(e.readAll(t, topics.RawImage2D))
	if before == 0 || before >= devices*per {
		t.Fatalf("%d records before the kill, want some but not all", before)
	}
	// What the checkpoint on disk covers at the kill: the resumed run
	// must publish exactly the rest.
	ms, _ := filepath.Glob(filepath.Join(state, "backfill-media-*.json"))
	b, err := os.ReadFile(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	var ck checkpointFile
	if err := json.Unmarshal(b, &ck); err != nil {
		t.Fatal(err)
	}
	covered := 0
	for unit, u := range ck.Units {
		if !strings.HasSuffix(unit, "/2026/11/22/") {
			continue // the slack day's partitions are empty
		}
		switch {
		case u.Done:
			covered += per
		case u.After != "":
			i, err := strconv.Atoi(strings.TrimSuffix(path.Base(u.After), ".jpg"))
			if err != nil {
				t.Fatalf("checkpoint key %q", u.After)
			}
			covered += i + 1
		}
	}
	if covered == 0 || covered > before {
		t.Fatalf("checkpoint covers %d objects, %d were published before the kill", covered, before)
	}

	second := child(args...)
	var out2, err2 bytes.Buffer
	second.Stdout, second.Stderr = &out2, &err2
	if err := second.Run(); err != nil {
		t.Fatalf("resumed run: %v\n%s", err, err2.String())
	}
	var sum Summary
	if err := json.Unmarshal(bytes.TrimSpace(out2.Bytes()), &sum); err != nil {
		t.Fatalf("summary %q: %v", out2.String(), err)
	}
	if sum.Resumed < 1 || sum.Published != int64(devices*per-covered) || sum.Errors != 0 {
		t.Fatalf("resumed summary %+v: want ≥1 resumed prefix and %d published (the checkpoint covered %d)", sum, devices*per-covered, covered)
	}
	recs := e.readAll(t, topics.RawImage2D)
	ids := map[string]int{}
	for _, g := range recs {
		ids[g.media.EventID]++
	}
	if len(ids) != devices*per {
		t.Fatalf("%d distinct objects published, want %d", len(ids), devices*per)
	}
	// Only what Kafka had acknowledged after the last checkpoint save is
	// published twice (same ids), nothing the checkpoint covered.
	dups := len(recs) - devices*per
	if dups != before-covered {
		t.Fatalf("%d records published twice, want %d (published before the kill %d − checkpointed %d)", dups, before-covered, before, covered)
	}
	t.Logf("killed after %d records (%d checkpointed); resumed run published %d; %d duplicates", before, covered, sum.Published, dups)
}

func TestIntegrationMediaCommandStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e := newKafkaEnv(t)
	// One notification document, as a MinIO webhook would send it,
	// produced to media.object.events like the /s3/events handler does.
	at := time.Now().UTC().Truncate(time.Second)
	key := "image2d/farm/cow-1/" + at.Format("2006/01/02") + "/x.jpg"
	evs, err := ParseS3Event(S3EventJSON("media", key, 10, "abc", "image/jpeg", nil, at), at)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.serde.Encode(context.Background(), topics.MediaEvents, &evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client(t).ProduceSync(context.Background(), &kgo.Record{Topic: topics.MediaEvents, Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cmd := child("media", "--kafka-brokers", strings.Join(e.brokers, ","), "--schema-registry-url", e.regURL,
		"--admin-addr", "127.0.0.1:0", "--group", "media-test")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("timed out waiting for %s; output:\n%s", what, out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the record", func() bool { return len(e.readAll(t, topics.RawImage2D)) == 1 })
	adm := kadm.NewClient(e.client(t))
	waitFor("the commit", func() bool {
		offs, err := adm.FetchOffsets(context.Background(), "media-test")
		if err != nil {
			return false
		}
		n := int64(0)
		offs.Each(func(o kadm.OffsetResponse) { n += o.At })
		return n == 1
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v; output:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "media stage stopped") {
		t.Fatalf("no stop log line:\n%s", out.String())
	}
	rec := e.readAll(t, topics.RawImage2D)[0]
	if rec.media.Replayed || rec.media.EventID != EventID("media", key, "abc") || !rec.media.TS.Equal(at) {
		t.Fatalf("record %s", mediaString(rec.media))
	}
}

// syncBuffer is a bytes.Buffer safe for the exec copy goroutine and the
// test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }
