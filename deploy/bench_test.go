package deploy

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// BenchmarkValidateOverlays measures one whole validation pass — kustomize
// build of every overlay plus strict decoding of every object — against the
// same-run baseline of the kustomize builds alone, and reports both and their
// ratio (the cost of strict decoding on top of rendering). DROVER_BENCH_N
// (default 5) sets how many passes one measurement averages.
func BenchmarkValidateOverlays(b *testing.B) {
	n := 5
	if s := os.Getenv("DROVER_BENCH_N"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("DROVER_BENCH_N=%q: want a positive integer", s)
		}
		n = v
	}
	fs := filesys.MakeFsOnDisk()
	build := func(decode bool) (time.Duration, int) {
		objects := 0
		start := time.Now()
		for range n {
			for _, dir := range overlays {
				m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
				if err != nil {
					b.Fatalf("%s: %v", dir, err)
				}
				for _, r := range m.Resources() {
					objects++
					if !decode {
						continue
					}
					doc, err := r.AsYAML()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := decodeStrict(doc); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		return time.Since(start) / time.Duration(n), objects / n
	}
	for i := 0; i < b.N; i++ {
		base, _ := build(false)
		full, objects := build(true)
		ratio := float64(full) / float64(base)
		b.ReportMetric(float64(full.Milliseconds()), "ms/validation")
		b.ReportMetric(float64(base.Milliseconds()), "ms/build-baseline")
		b.ReportMetric(ratio, "ratio")
		fmt.Printf("deploy: validate %d overlays (%d objects) %v per pass, kustomize build alone %v (baseline), ratio %.2f, averaged over %d passes\n",
			len(overlays), objects, full.Round(time.Millisecond), base.Round(time.Millisecond), ratio, n)
	}
}
