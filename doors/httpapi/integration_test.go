package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/doors/httpapi"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/ingesttest"
	"github.com/drover-iot/drover/topics"
)

func start(t *testing.T, e *ingesttest.Env) string {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{Addr: "127.0.0.1:0"}, e.View, e.Core)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	addr, err := s.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String()
}

func post(t *testing.T, url, secret, ctype, body string) (int, httpapi.Answer) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a httpapi.Answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, a
}

// TestIntegrationHTTPDoor: the HTTP door on the embedded stack, through
// Go's HTTP client over TCP: a reading lands on raw.sensor; every bad input
// of the shared table gets the MQTT reason, and a dead letter unless the
// door refuses it itself (size, identity); a batch is answered per item.
func TestIntegrationHTTPDoor(t *testing.T) {
	e := ingesttest.New(t)
	secrets := e.Devices(t)
	secret := secrets[ingesttest.Registered]
	base := start(t, e)
	url := func(dev, ch string) string {
		if dev == "" {
			dev = ingesttest.Registered
		}
		return base + "/v1/devices/" + ingesttest.Tenant + "/" + dev + "/" + ch
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if code, a := post(t, url("", "sensor"), secret, "", `{"metric":"t","value":1,"ts":`+ts+`}`); code != 202 {
		t.Fatalf("valid: %d %+v", code, a)
	}
	if got := e.Consume(t, topics.RawSensor, 1, 10*time.Second); len(got) != 1 {
		t.Fatalf("raw.sensor: %d records", len(got))
	}

	letters := 0
	for _, tc := range ingesttest.BadInputs() {
		sec := secret
		if s, ok := secrets[tc.Device]; ok {
			sec = s
		}
		code, a := post(t, url(tc.Device, tc.Channel), sec, "application/json", tc.Payload)
		if a.Reason != string(tc.Reason) {
			t.Errorf("%s: %d %+v, want reason %s", tc.Name, code, a, tc.Reason)
		}
		want := 400
		switch tc.Reason {
		case "payload_too_large":
			want = 413
		case ingest.ReasonUnknownDevice:
			want = 401
		case ingest.ReasonDeviceRevoked:
			want = 403
		}
		if code != want {
			t.Errorf("%s: status %d, want %d", tc.Name, code, want)
		}
		if !tc.DoorMayRefuse {
			letters++
		}
	}
	dls := e.DeadLetters(t, e.Consume(t, topics.DLQ, letters+1, 5*time.Second))
	if len(dls) != letters {
		t.Fatalf("%d dead letters, want %d", len(dls), letters)
	}
	for _, dl := range dls {
		if dl.Headers[ingest.HeaderDoor] != httpapi.Door {
			t.Errorf("dead letter %+v: door %q", dl, dl.Headers[ingest.HeaderDoor])
		}
	}

	body := `{"metric":"a","value":1,"ts":` + ts + "}\n{nope\n" + `{"metric":"b","value":2,"ts":` + ts + "}\n"
	code, a := post(t, url("", "sensor"), secret, httpapi.NDJSON, body)
	if code != 207 || len(a.Items) != 3 || a.Items[0].Status != 202 || a.Items[1].Reason != "not_json" || a.Items[2].Status != 202 {
		t.Fatalf("batch: %d %+v", code, a)
	}
	if got := e.Consume(t, topics.RawSensor, 3, 10*time.Second); len(got) != 3 {
		t.Fatalf("raw.sensor after the batch: %d records, want 3", len(got))
	}
}
