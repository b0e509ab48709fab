package appscmd

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/processors/apps"
)

func TestMain(m *testing.M) { devtest.Main(m) }

// TestIntegrationDescribe describes an example app against the embedded
// Kafka and a /metrics page served by a real Prometheus registry holding
// the apps' counters.
func TestIntegrationDescribe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as, err := apps.Example()
	if err != nil {
		t.Fatal(err)
	}
	a := as[1]
	cl, err := kgo.NewClient(kgo.SeedBrokers(devtest.KafkaBrokers(t)...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	reg := prometheus.NewRegistry()
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "drover_app_records_total", Help: "h"}, []string{"app", "outcome"})
	reg.MustRegister(vec)
	vec.WithLabelValues(a.Name, "in").Add(7)
	vec.WithLabelValues(a.Name, "out").Add(3)
	vec.WithLabelValues(a.Name, "filtered").Add(4)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	var out bytes.Buffer
	if err := describe(ctx, &out, adm, a, srv.URL); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"app vet-share (goka group app-vet-share)",
		"raw.sensor [tenant demo] [devices collar-*]",
		"shared with tenant vet, agreement AGR-demo-vet-1",
		"lag:          not running yet",
		"target:       apps.vet-share does not exist yet",
		"records:      in 7, out 3, filtered 4, skipped 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, a.Target); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: a.Target, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := describe(ctx, &out, adm, a, "http://127.0.0.1:1/metrics"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "target:       1 records in apps.vet-share") {
		t.Errorf("describe after a record:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "records:      unknown (") {
		t.Errorf("describe without metrics:\n%s", out.String())
	}
}

// TestShape: describe prints a join's and a window's settings, defaults
// included.
func TestShape(t *testing.T) {
	as, err := apps.Parse("t.yaml", []byte(`
apps:
  - name: j
    source: {topics: [raw.gps, raw.sensor]}
    query: SELECT * FROM *
    join: {right: raw.sensor, link: paddock, interpolate: [value]}
    target: apps.j
  - name: w
    source: {topics: [raw.sensor]}
    query: SELECT device_id, value FROM raw.sensor GROUP BY device, TUMBLE(1m)
    lateness: 5s
    target: apps.w
`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(append(shape(as[0]), shape(as[1])...), "\n")
	for _, want := range []string{"raw.gps (left) with raw.sensor (right), by registry label paddock; tolerance 30s, lateness 1m0s, buffer 64 per key",
		"interpolate:  value", "TUMBLE(1m0s) per device, lateness 5s"} {
		if !strings.Contains(got, want) {
			t.Errorf("describe lacks %q:\n%s", want, got)
		}
	}
}
