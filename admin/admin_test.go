package admin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	s := New("127.0.0.1:0", nil)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_test_things_total", Help: "things"})
	s.Registry.MustRegister(c)
	c.Add(3)
	var kafkaUp atomic.Bool
	s.AddCheck("kafka", func(context.Context) error {
		if !kafkaUp.Load() {
			return errors.New("no broker answered")
		}
		return nil
	})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "no broker answered") {
		t.Fatalf("readyz not ready = %d %q", code, body)
	}
	kafkaUp.Store(true)
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("readyz ready = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "drover_test_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics = %d, body lacks counters", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestListenTakenPort(t *testing.T) {
	a := New("127.0.0.1:0", nil)
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	b := New(a.Addr(), nil)
	if err := b.Listen(); err == nil || !strings.Contains(err.Error(), a.Addr()) {
		t.Fatalf("err = %v, want it to name %s", err, a.Addr())
	}
}
