package backfill

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/twmb/franz-go/pkg/kgo"
)

func benchN(def int) int { return devtest.EnvInt("DROVER_BENCH_N", def) }

// BenchmarkBackfillMedia measures, per iteration, objects/s from listing to
// records acknowledged by Kafka for DROVER_BENCH_N (default 100000)
// objects in gofakes3 (in-memory backend, real HTTP) and kfake, against
// the bare ListObjectsV2 pagination rate of the same bucket in the same
// run, and prints both and the ratio. Two job figures: "pruned" (default:
// the window's date partitions of 4 kinds × 25 devices, plus the slack
// day) and "no-prune" (one listing of the bucket). gofakes3 scans the
// whole bucket for every prefix listing (real stores index prefixes), so
// the pruned figure understates what S3, MinIO or SeaweedFS give; the
// no-prune one isolates drover's own cost (map, encode, produce, ack).
func BenchmarkBackfillMedia(b *testing.B) {
	n := benchN(100_000)
	f := newFakeS3(b, "media")
	e := newKafkaEnv(b)
	kinds := []string{"image2d", "image3d", "video2d", "video3d"}
	exts := map[string]string{"image2d": "jpg", "image3d": "ply", "video2d": "mp4", "video3d": "mkv"}
	const devices = 25
	for i := range n {
		k := kinds[i%4]
		dev := (i / 4) % devices
		f.put(b, "media", fmt.Sprintf("%s/farm/cam-%02d/2026/11/22/%08d.%s", k, dev, i, exts[k]), day.Add(time.Duration(i%86400)*time.Second), nil)
	}
	ctx := context.Background()
	run := func(noPrune bool) float64 {
		kc := e.client(b, kgo.ProducerLinger(5*time.Millisecond))
		defer kc.Close()
		j := &Job{S3: f.client, Kafka: kc, Serde: e.serde, Mapping: DefaultMapping(), Buckets: []string{"media"},
			Start: day, End: day.Add(24 * time.Hour), Concurrency: 4, NoPrune: noPrune}
		t := time.Now()
		sum, err := j.Run(ctx)
		took := time.Since(t)
		if err != nil || sum.Published != int64(n) {
			b.Fatalf("job: %v, summary %+v", err, sum)
		}
		return float64(n) / took.Seconds()
	}
	for b.Loop() {
		t0 := time.Now()
		listed := 0
		p := s3.NewListObjectsV2Paginator(f.client, &s3.ListObjectsV2Input{Bucket: aws.String("media")})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				b.Fatal(err)
			}
			listed += len(page.Contents)
		}
		if listed != n {
			b.Fatalf("listed %d, want %d", listed, n)
		}
		listRate := float64(listed) / time.Since(t0).Seconds()
		full := run(true)
		pruned := run(false)
		b.ReportMetric(listRate, "list-objects/s")
		b.ReportMetric(full, "noprune-objects/s")
		b.ReportMetric(pruned, "objects/s")
		b.ReportMetric(pruned/listRate, "ratio")
		b.ReportMetric(full/listRate, "noprune-ratio")
		fmt.Printf("backfill media, %d objects: bare ListObjectsV2 %.0f objects/s; job listed→acked %.0f objects/s (ratio %.2f) pruned, %.0f objects/s (ratio %.2f) with --no-prune\n",
			n, listRate, pruned, pruned/listRate, full, full/listRate)
	}
}
