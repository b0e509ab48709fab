package registry

import (
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLookup measures what a door pays per message: View.Admit (a
// lookup by tenant and device plus the status check) in a view of 100k
// devices, from one goroutine and from all of them at once.
func BenchmarkLookup(b *testing.B) {
	const n = 100_000
	v, err := NewView(nil, nil, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("cow-%06d", i)
		v.putDevice("farm1/"+ids[i], &Device{Tenant: "farm1", ID: ids[i], Status: StatusActive, Labels: map[string]string{"herd": "north"}, CreatedAt: now, UpdatedAt: now})
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpuTime()
		for i := 0; b.Loop(); i++ {
			if _, err := v.Admit("farm1", ids[i%n]); err != nil {
				b.Fatal(err)
			}
		}
		// The machine may be shared: CPU time per lookup moves less than
		// wall time.
		b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := v.Admit("farm1", ids[i%n]); err != nil {
					b.Error(err)
					return
				}
				i += 7
			}
		})
	})
	b.Run("unknown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := v.Device("farm2", "cow-000001"); ok {
				b.Fatal("found")
			}
		}
	})
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
