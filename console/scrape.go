package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// StageStatus is one stage as the console sees it through its admin
// endpoints.
type StageStatus struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
	// Up: /readyz answered (200 or 503). Ready: it answered 200.
	Up    bool `json:"up"`
	Ready bool `json:"ready"`
	// Failed are the readiness checks that fail, by name.
	Failed map[string]string `json:"failed,omitempty"`
	Error  string            `json:"error,omitempty"`
	// Metrics are the stage's drover_* and process_* samples summed over
	// their labels (counters, gauges; histograms and summaries by count).
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Rates are the per-second increase of its counters since the previous
	// snapshot.
	Rates map[string]float64 `json:"rates,omitempty"`
}

// probeTimeout bounds each request to a stage.
const probeTimeout = 3 * time.Second

// probeStages asks every target's /readyz and /metrics, concurrently.
func (s *Server) probeStages(ctx context.Context, targets []Target) []StageStatus {
	out := make([]StageStatus, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.probeStage(ctx, t.Name, strings.TrimRight(t.URL(), "/"))
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) probeStage(ctx context.Context, name, base string) StageStatus {
	st := StageStatus{Name: name, URL: base}
	if base == "" {
		st.Error = "address not known yet"
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	body, code, err := s.get(ctx, base+"/readyz")
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Up, st.Ready = true, code == http.StatusOK
	var rz struct {
		Failed map[string]string `json:"failed"`
	}
	if json.Unmarshal(body, &rz) == nil && len(rz.Failed) > 0 {
		st.Failed = rz.Failed
	}
	body, code, err = s.get(ctx, base+"/metrics")
	switch {
	case err != nil:
		st.Error = "metrics: " + err.Error()
	case code != http.StatusOK:
		st.Error = fmt.Sprintf("metrics: HTTP %d", code)
	default:
		if st.Metrics, err = sumMetrics(body); err != nil {
			st.Error = "metrics: " + err.Error()
		}
	}
	return st
}

func (s *Server) get(ctx context.Context, url string) ([]byte, int, error) {
	s.metrics.stages.Inc()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return b, resp.StatusCode, err
}

// sumMetrics parses the Prometheus text format and sums every drover_* and
// process_* family over its labels.
func sumMetrics(text []byte) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(text)))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, "drover_") && !strings.HasPrefix(name, "process_") {
			continue
		}
		for _, m := range f.GetMetric() {
			out[name] += sampleValue(f.GetType(), m)
		}
	}
	return out, nil
}

func sampleValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	case dto.MetricType_SUMMARY:
		return float64(m.GetSummary().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}
