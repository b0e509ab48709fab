package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// series returns the names of the series of s's registry that start with
// prefix, with their client label.
func series(t *testing.T, s *Server, prefix string) map[string]bool {
	t.Helper()
	mfs, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "client" {
					out[mf.GetName()+"{client="+l.GetValue()+"}"] = true
				}
			}
		}
	}
	return out
}

func pinged(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestKafkaMetrics: one naming scheme, drover_<stage>_kafka_*{client=role};
// a client built from another's Opts() counts into the owner's series and
// does not remove them when it closes; the owner's close does.
func TestKafkaMetrics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New("", nil)
	km := s.KafkaMetrics("media")
	owner := pinged(t, c, km("media"))
	const connects = "drover_media_kafka_connects_total{client=media}"
	if got := series(t, s, "drover_media_kafka_"); !got[connects] {
		t.Fatalf("after a ping, want %s among %v", connects, got)
	}
	child := pinged(t, c, owner.Opts()...)
	child.Close()
	if got := series(t, s, "drover_media_kafka_"); !got[connects] {
		t.Fatalf("a child client's close removed the owner's series: %v", got)
	}
	other := pinged(t, c, km("notifier"))
	defer other.Close()
	owner.Close()
	got := series(t, s, "drover_media_kafka_")
	if got[connects] {
		t.Fatalf("the owner closed, its series stayed: %v", got)
	}
	if !got["drover_media_kafka_connects_total{client=notifier}"] {
		t.Fatalf("the second role's series are missing: %v", got)
	}
}

// TestKafkaRunMetrics: the clients of one role, one after another, feed one
// set of series that outlives them.
func TestKafkaRunMetrics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := New("", nil)
	km := s.KafkaRunMetrics("schedule")
	for range 2 {
		pinged(t, c, km("redrive")).Close()
	}
	mfs, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "drover_schedule_kafka_connects_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	if n < 2 {
		t.Fatalf("drover_schedule_kafka_connects_total = %v after two runs, want ≥ 2 (kept across runs)", n)
	}
}
