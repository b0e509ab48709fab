package backfill

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/topics"
)

var day = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func TestIntegrationBackfillWindowEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	start, end := day.Add(10*time.Hour), day.Add(11*time.Hour)
	cases := []struct {
		name string
		at   time.Time
		in   bool
	}{
		{"before start", start.Add(-time.Millisecond), false},
		{"at start", start, true},
		{"inside", start.Add(30 * time.Minute), true},
		{"just before end", end.Add(-time.Millisecond), true},
		{"at end", end, false},
		{"after end", end.Add(time.Hour), false},
	}
	want := map[string]bool{}
	for i, c := range cases {
		key := fmt.Sprintf("image2d/farm/cow-%d/2026/11/22/%s.jpg", i, strings.ReplaceAll(c.name, " ", "-"))
		f.put(t, "media", key, c.at, nil)
		want[key] = c.in
	}
	sum := runJob(t, newJob(t, f, e, start, end))
	if sum.Listed != int64(len(cases)) || sum.Matched != 3 || sum.Skipped != 3 || sum.Published != 3 || sum.Errors != 0 {
		t.Fatalf("summary %+v, want listed 6, matched 3, skipped 3, published 3", sum)
	}
	recs := e.readAll(t, append(mediaTopics, topics.DLQ)...)
	seen := map[string]bool{}
	for _, g := range recs {
		if g.media == nil {
			t.Fatalf("unexpected dead letter %+v", g.dead)
		}
		seen[g.media.Key] = true
		m := g.media
		if g.rec.Topic != topics.RawImage2D || string(g.rec.Key) != m.Tenant+"/"+m.DeviceID || m.Tenant != "farm" || !m.Replayed ||
			m.Kind != "image2d" || m.ContentType != "image/jpeg" || m.Bucket != "media" || m.ETag == nil || *m.ETag == "" ||
			m.EventID != EventID("media", m.Key, *m.ETag) || g.headers[HeaderReplayed] != "true" {
			t.Errorf("record %s: %+v on %s key %s", m.Key, m, g.rec.Topic, g.rec.Key)
		}
	}
	for key, in := range want {
		if seen[key] != in {
			t.Errorf("%s: published %v, want %v", key, seen[key], in)
		}
	}
}

func TestIntegrationBackfillPaginationAndIdempotence(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	const n = 2500 // three ListObjectsV2 pages of 1000 in one prefix
	for i := range n {
		f.put(t, "media", fmt.Sprintf("video2d/farm/cam-1/2026/11/22/clip-%05d.mp4", i), day.Add(time.Duration(i)*time.Second), nil)
	}
	j := newJob(t, f, e, day, day.Add(24*time.Hour))
	j.StateDir = t.TempDir()
	sum := runJob(t, j)
	if sum.Listed != n || sum.Published != n || sum.Errors != 0 {
		t.Fatalf("first run %+v, want %d listed and published", sum, n)
	}
	first := e.readAll(t, topics.RawVideo2D)
	if len(first) != n {
		t.Fatalf("%d records, want %d", len(first), n)
	}
	// A second run of the finished job publishes the same records again:
	// same keys, ids and fields (ingested_at comes from the job's clock).
	j2 := newJob(t, f, e, day, day.Add(24*time.Hour))
	j2.StateDir = j.StateDir
	if sum := runJob(t, j2); sum.Published != n {
		t.Fatalf("second run %+v", sum)
	}
	both := e.readAll(t, topics.RawVideo2D)
	if len(both) != 2*n {
		t.Fatalf("%d records after two runs, want %d", len(both), 2*n)
	}
	for i := 0; i < len(both); i += 2 {
		a, b := both[i].media, both[i+1].media
		if mediaString(a) != mediaString(b) || string(both[i].rec.Key) != string(both[i+1].rec.Key) {
			t.Fatalf("runs differ:\n%s\n%s", mediaString(a), mediaString(b))
		}
	}
}

func TestIntegrationBackfillPrefixPruning(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	// Objects of many days; the window is one hour of Nov 22.
	for d := range 30 {
		at := time.Date(2026, 11, 1+d, 10, 0, 0, 0, time.UTC)
		for _, dev := range []string{"a", "b"} {
			f.put(t, "media", fmt.Sprintf("image2d/farm/%s/%s/x.jpg", dev, at.Format("2006/01/02")), at, nil)
		}
	}
	j := newJob(t, f, nil, day.Add(10*time.Hour), day.Add(11*time.Hour))
	sum := runJob(t, j)
	// Listed: days 21 (slack) and 22 for two devices = 4 objects of 60.
	if sum.Listed != 4 || sum.Matched != 2 || sum.Published != 2 {
		t.Fatalf("summary %+v, want 4 listed (two date partitions × two devices), 2 matched", sum)
	}
	if sum.Prefixes != 4 {
		t.Fatalf("planned %d prefixes, want 4", sum.Prefixes)
	}
	// --prefix narrows further; --no-prune lists everything.
	j = newJob(t, f, nil, day.Add(10*time.Hour), day.Add(11*time.Hour))
	j.Prefix = "image2d/farm/a/"
	if sum := runJob(t, j); sum.Listed != 2 || sum.Matched != 1 {
		t.Fatalf("with prefix: %+v", sum)
	}
	j = newJob(t, f, nil, day.Add(10*time.Hour), day.Add(11*time.Hour))
	j.NoPrune = true
	if sum := runJob(t, j); sum.Listed != 60 || sum.Matched != 2 {
		t.Fatalf("no prune: %+v", sum)
	}
}

func TestIntegrationBackfillUnmappable(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	at := day.Add(12 * time.Hour)
	// Layout gives all: mapped. Unknown kind: dead letter. Off-layout key
	// with metadata: mapped by HEAD. Off-layout without: dead letter.
	f.put(t, "media", "image3d/farm/cow-1/2026/11/22/scan.ply", at, nil)
	f.put(t, "media", "thermal/farm/cow-1/2026/11/22/x.jpg", at, nil)
	f.put(t, "media", "uploads/a.mp4", at, map[string]string{"X-Amz-Meta-Device-Id": "cam-9", "X-Amz-Meta-Tenant": "farm"})
	f.put(t, "media", "uploads/b.mp4", at, nil)
	f.put(t, "media", "uploads/c.xyz", at, map[string]string{"X-Amz-Meta-Device-Id": "cam-9", "X-Amz-Meta-Tenant": "farm"})
	j := newJob(t, f, e, day, day.Add(24*time.Hour))
	j.NoPrune = true
	sum := runJob(t, j)
	if sum.Matched != 5 || sum.Published != 2 || sum.Unmappable != 3 || sum.Errors != 0 {
		t.Fatalf("summary %+v, want 5 matched, 2 published, 3 unmappable", sum)
	}
	reasons := map[string]string{}
	for _, g := range e.readAll(t, append(mediaTopics, topics.DLQ)...) {
		if g.dead != nil {
			reasons[g.dead.Source] = g.dead.Reason
			if g.dead.Stage != StageBackfill || g.headers["drover.stage"] != StageBackfill || g.dead.Message == "" {
				t.Errorf("dead letter %+v headers %v", g.dead, g.headers)
			}
			continue
		}
		if g.media.Key == "uploads/a.mp4" && (g.media.DeviceID != "cam-9" || g.media.Kind != "video2d") {
			t.Errorf("metadata-mapped record %+v", g.media)
		}
	}
	want := map[string]string{
		"s3://media/thermal/farm/cow-1/2026/11/22/x.jpg": ReasonUnknownKind,
		"s3://media/uploads/b.mp4":                       ReasonNoTenant,
		"s3://media/uploads/c.xyz":                       ReasonNoKind,
	}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("dead letters %v, want %v", reasons, want)
	}
}

func TestIntegrationBackfillDryRunWritesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	f.put(t, "media", "image2d/farm/cow-1/2026/11/22/a.jpg", day.Add(time.Hour), nil)
	f.put(t, "media", "weird/a.jpg", day.Add(time.Hour), nil)
	j := newJob(t, f, nil, day, day.Add(24*time.Hour))
	j.StateDir = t.TempDir()
	j.NoPrune = true
	sum := runJob(t, j)
	if !sum.DryRun || sum.Published != 1 || sum.Unmappable != 1 {
		t.Fatalf("dry run summary %+v", sum)
	}
	if recs := e.readAll(t, append(mediaTopics, topics.DLQ)...); len(recs) != 0 {
		t.Fatalf("dry run wrote %d records", len(recs))
	}
	if ents, _ := os.ReadDir(j.StateDir); len(ents) != 0 {
		t.Fatalf("dry run wrote a checkpoint: %v", ents)
	}
}

func TestIntegrationBackfillResumesFromCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	e := newKafkaEnv(t)
	for i := range 1500 {
		f.put(t, "media", fmt.Sprintf("image2d/farm/cow-1/2026/11/22/%05d.jpg", i), day.Add(time.Hour), nil)
	}
	f.put(t, "media", "image2d/farm/cow-2/2026/11/22/0.jpg", day.Add(time.Hour), nil)
	dir := t.TempDir()
	j := newJob(t, f, e, day, day.Add(24*time.Hour))
	j.StateDir = dir
	// Pretend an earlier run got through cow-2 and the first 1000 keys of
	// cow-1 before dying.
	c, err := openCheckpoint(dir, j.identity())
	if err != nil {
		t.Fatal(err)
	}
	c.advance("media", "image2d/farm/cow-1/2026/11/22/", "image2d/farm/cow-1/2026/11/22/00999.jpg")
	c.finish("media", "image2d/farm/cow-2/2026/11/22/")
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	sum := runJob(t, j)
	if sum.Published != 500 || sum.Resumed != 2 {
		t.Fatalf("resumed run %+v, want 500 published and 2 resumed prefixes", sum)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "backfill-media-*.json"))
	if len(matches) != 1 {
		t.Fatalf("checkpoint files %v", matches)
	}
}

// TestIntegrationBackfillWideWindowCoversEverything is the issue's
// command: a window from year 1 to year 9999 must list every object, not
// the first centuries' partitions only. Objects sit in partitions from
// year 0001 to 9999; each window, down to a few hours, must find exactly
// its objects.
func TestIntegrationBackfillWideWindowCoversEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := newFakeS3(t, "media")
	times := []time.Time{
		time.Date(1, 1, 2, 3, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		time.Date(2431, 7, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 30, 12, 0, 0, 0, time.UTC),
	}
	for _, at := range times {
		f.put(t, "media", fmt.Sprintf("image2d/farm/cow-1/%s/x.jpg", at.Format("2006/01/02")), at, nil)
	}
	cases := []struct {
		start, end string
		want       int64
	}{
		{"0001-01-01", "9999-12-31", 5},
		{"0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", 5},
		{"1900-01-01", "2500-01-01", 3},
		{"2026-11-22T09:00:00Z", "2026-11-22T11:00:00Z", 1},
		{"9999-12-30", "9999-12-31", 1},
	}
	for _, c := range cases {
		t.Run(c.start+"/"+c.end, func(t *testing.T) {
			out := runChild(t, "backfill", "media", "--s3-endpoint", f.url, "--bucket", "media", "--dry-run", "--state-dir", "",
				"--window-start", c.start, "--window-end", c.end, "--progress", "none")
			var sum Summary
			if err := json.Unmarshal([]byte(out), &sum); err != nil {
				t.Fatalf("summary %q: %v", out, err)
			}
			if sum.Published != c.want || sum.Matched != c.want {
				t.Fatalf("summary %+v, want %d objects published", sum, c.want)
			}
		})
	}
}
