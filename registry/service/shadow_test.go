package service_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/admin"
	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/registry/api"
	"github.com/drover-iot/drover/registry/registrytest"
	"github.com/drover-iot/drover/registry/service"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func do(t *testing.T, method, u, tok, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestIntegrationServiceShadow: the registry service's API writes desired
// state (PUT .../desired: a "desired" command on commands.devices, as
// `drover state set` writes it; write token only) and shows the device
// shadow with desired, version, reported metrics and the pending delta
// (GET .../state, read from state.latest).
func TestIntegrationServiceShadow(t *testing.T) {
	e := registrytest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := schemas.Register(ctx, e.SR, []string{topics.Commands, topics.StateLatest}); err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(e.Producer).CreateTopics(ctx, 3, 1, nil, topics.Commands, topics.StateLatest); err != nil {
		t.Fatal(err)
	}
	srv := admin.New("127.0.0.1:0", devtest.Logger())
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	const readTok = "reader-token-0123456789"
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- service.Run(sctx, service.Config{
			Kafka: []kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, Serde: e.Serde, Admin: srv, Log: devtest.Logger(),
			APITokens: map[string]api.Scope{token: api.Write, readTok: api.Read},
		})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("service: %v", err)
		}
	})
	base := "http://" + srv.Addr() + "/v1/tenants"
	deadline := time.Now().Add(30 * time.Second)
	for status(t, "http://"+srv.Addr()+"/readyz", "") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not 200 within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	post(t, base, `{"tenant":"farm1"}`, http.StatusCreated)
	post(t, base+"/farm1/devices", `{"device_id":"cow-1"}`, http.StatusCreated)

	for _, tc := range []struct {
		name, method, path, tok, body string
		want                          int
		wantIn                        string
	}{
		{"read token may not write", "PUT", "/farm1/devices/cow-1/desired", readTok, `{"mode":"eco"}`, 403, "forbidden"},
		{"no token", "PUT", "/farm1/devices/cow-1/desired", "", `{"mode":"eco"}`, 401, "unauthorized"},
		{"not an object", "PUT", "/farm1/devices/cow-1/desired", token, `["mode"]`, 400, "desired state"},
		{"no keys", "PUT", "/farm1/devices/cow-1/desired", token, `{}`, 400, "no keys"},
		{"empty key", "PUT", "/farm1/devices/cow-1/desired", token, `{"":"x"}`, 400, "empty key"},
		{"unregistered device", "PUT", "/farm1/devices/cow-2/desired", token, `{"mode":"eco"}`, 404, "not registered"},
		{"no state yet", "GET", "/farm1/devices/cow-1/state", readTok, "", 404, "no state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(t, tc.method, base+tc.path, tc.tok, tc.body)
			if code != tc.want || !strings.Contains(string(body), tc.wantIn) {
				t.Errorf("%s %s: HTTP %d %s, want %d with %q", tc.method, tc.path, code, body, tc.want, tc.wantIn)
			}
		})
	}

	code, body := do(t, "PUT", base+"/farm1/devices/cow-1/desired", token, `{"report_interval":60,"mode":"eco"}`)
	if code != http.StatusAccepted {
		t.Fatalf("PUT desired: HTTP %d %s", code, body)
	}
	var ack struct{ ID string }
	_ = json.Unmarshal(body, &ack)
	// The update is a desired-state command on commands.devices.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...), kgo.ConsumeTopics(topics.Commands), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fs := cl.PollFetches(ctx)
	var got []schemas.DeviceCommand
	fs.EachRecord(func(r *kgo.Record) {
		var c schemas.DeviceCommand
		if _, err := e.Serde.Decode(ctx, r.Value, &c); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != "farm1/cow-1" {
			t.Errorf("record key %q, want farm1/cow-1", r.Key)
		}
		got = append(got, c)
	})
	if len(got) != 1 || got[0].Name != control.DesiredCommand || got[0].CommandID != ack.ID || got[0].Tenant != "farm1" || got[0].DeviceID != "cow-1" {
		t.Fatalf("commands.devices = %+v, want one desired command %s", got, ack.ID)
	}
	if d, err := control.ParseDesired(got[0].Payload); err != nil || d["report_interval"] != "60" || d["mode"] != "eco" {
		t.Errorf("payload %s: %v %v", got[0].Payload, d, err)
	}

	// The shadow as the state processor writes it.
	now := time.Now().UTC().Truncate(time.Millisecond)
	ds := schemas.DeviceState{Tenant: "farm1", DeviceID: "cow-1", TS: now, IngestedAt: now, LastSeen: now, UpdatedAt: now, Online: true,
		Metrics: map[string]float64{"report_interval": 60, "temp": 38.5}, Desired: map[string]string{"report_interval": "60", "mode": "eco"}, Version: 1}
	v, err := e.Serde.Encode(ctx, topics.StateLatest, &ds)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Producer.ProduceSync(ctx, &kgo.Record{Topic: topics.StateLatest, Key: []byte("farm1/cow-1"), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	code, body = do(t, "GET", base+"/farm1/devices/cow-1/state", readTok, "")
	var view struct {
		Desired map[string]string  `json:"desired"`
		Version int64              `json:"version"`
		Delta   map[string]string  `json:"delta"`
		Metrics map[string]float64 `json:"metrics"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &view) != nil {
		t.Fatalf("GET state: HTTP %d %s", code, body)
	}
	if view.Version != 1 || view.Desired["mode"] != "eco" || len(view.Delta) != 1 || view.Delta["mode"] != "eco" || view.Metrics["temp"] != 38.5 {
		t.Errorf("GET state = %s, want desired, version 1, delta {mode: eco} and the reported metrics", body)
	}
}
