package state

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// desired feeds a "desired" command for farm/device into commands.devices.
func (g *testGroup) desired(device, payload string) {
	g.tt.Consume(topics.Commands, "farm/"+device, &schemas.DeviceCommand{
		CommandID: "d-" + payload, Tenant: "farm", DeviceID: device, Name: DesiredCommand, Payload: payload,
		CreatedAt: t0, TS: t0, IngestedAt: t0,
	})
}

func TestDesiredMergeDeltaClear(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	const dev = "farm/cow-1"
	g.tt.Consume(topics.RawSensor, dev, &schemas.SensorReading{EventID: "e1", Tenant: "farm", DeviceID: "cow-1", TS: t0, IngestedAt: t0,
		Metric: "interval", Value: 60, Source: "test", Attrs: map[string]string{"firmware": "1.0"}})
	if ds := g.last(t); len(ds.Desired) != 0 || ds.Version != 0 || len(Delta(ds)) != 0 {
		t.Fatalf("before any desired state: desired %v version %d", ds.Desired, ds.Version)
	}

	// Merge: two keys, one of them a number.
	g.desired("cow-1", `{"interval":30,"firmware":"1.1"}`)
	ds := g.last(t)
	if want := map[string]string{"interval": "30", "firmware": "1.1"}; !maps.Equal(ds.Desired, want) || ds.Version != 1 {
		t.Fatalf("after set: desired %v version %d, want %v version 1", ds.Desired, ds.Version, want)
	}
	if d := Delta(ds); !maps.Equal(d, map[string]string{"interval": "30", "firmware": "1.1"}) {
		t.Fatalf("delta %v, want both keys pending", d)
	}
	// A second update merges (adds a key, keeps the others).
	g.desired("cow-1", `{"mode":"eco"}`)
	ds = g.last(t)
	if len(ds.Desired) != 3 || ds.Version != 2 || ds.Desired["interval"] != "30" {
		t.Fatalf("after merge: desired %v version %d", ds.Desired, ds.Version)
	}
	// The same values again change nothing: no new version, no new state.
	g.desired("cow-1", `{"mode":"eco","interval":30}`)
	if all := g.states(t); len(all) != 0 {
		t.Fatalf("unchanged desired state emitted %d states (version %d)", len(all), all[len(all)-1].Version)
	}

	// Reported matches: the numeric key clears (30 = 30.0), the others stay.
	g.sensor("farm/cow-1", "interval", t0.Add(time.Second), 30.0)
	ds = g.last(t)
	if d := Delta(ds); !maps.Equal(d, map[string]string{"firmware": "1.1", "mode": "eco"}) {
		t.Fatalf("delta after interval reported %v", d)
	}
	g.tt.Consume(topics.RawSensor, dev, &schemas.SensorReading{EventID: "e3", Tenant: "farm", DeviceID: "cow-1", TS: t0.Add(2 * time.Second),
		IngestedAt: t0.Add(2 * time.Second), Metric: "mode", Value: 1, Source: "test", Attrs: map[string]string{"firmware": "1.1"}})
	ds = g.last(t)
	if d := Delta(ds); !maps.Equal(d, map[string]string{"mode": "eco"}) {
		t.Fatalf("delta after firmware reported %v, want only mode (reported 1, desired eco)", d)
	}
	// A reported value drifting away makes the key pending again.
	g.sensor("farm/cow-1", "interval", t0.Add(3*time.Second), 45)
	if d := Delta(g.last(t)); d["interval"] != "30" {
		t.Fatalf("delta after drift %v, want interval pending", d)
	}
	// An empty value (or null) removes a key.
	g.desired("cow-1", `{"mode":"","interval":null}`)
	ds = g.last(t)
	if !maps.Equal(ds.Desired, map[string]string{"firmware": "1.1"}) || ds.Version != 3 || len(Delta(ds)) != 0 {
		t.Fatalf("after removal: desired %v version %d delta %v", ds.Desired, ds.Version, Delta(ds))
	}
	v := ViewOf(ds)
	if v.Version != 3 || v.Desired["firmware"] != "1.1" || v.Delta == nil || len(v.Delta) != 0 {
		t.Fatalf("view: %+v", v)
	}
}

func TestDesiredIgnoresOtherCommandsAndBadPayloads(t *testing.T) {
	serde, _ := newSerde(t)
	g := startTester(t, Config{}, serde)
	g.sensor("farm/cow-1", "temperature", t0, 38)
	g.states(t)
	g.tt.Consume(topics.Commands, "farm/cow-1", &schemas.DeviceCommand{CommandID: "c1", Tenant: "farm", DeviceID: "cow-1",
		Name: "reboot", Payload: `{"interval":5}`, CreatedAt: t0, TS: t0, IngestedAt: t0})
	for _, bad := range []string{`not json`, `[1,2]`, `{}`, `{"":"x"}`} {
		g.desired("cow-1", bad)
	}
	if all := g.states(t); len(all) != 0 {
		t.Fatalf("other command or bad payloads changed the shadow: %+v", all[len(all)-1])
	}
	if got := counterValue(t, g.p.m.bad.WithLabelValues(topics.Commands)); got != 4 {
		t.Fatalf("bad desired payloads counted %v, want 4", got)
	}
}

func TestIntegrationStateSetCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	c := newCluster(t, 2)
	_, stop := runState(t, c, Config{Clock: &fakeClock{now: t0}, TickInterval: -1})
	defer stop()
	c.produce(t, topics.RawSensor, "farm/cow-7", reading("cow-7", "temperature", t0, 39.1))
	eventually(t, "state", func() error { _, err := lookup(c, "farm/cow-7"); return err })

	run := func(args ...string) (string, error) {
		cmd := Command(&cli.Conn{})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append(args, "--kafka-brokers", strings.Join(c.brokers, ","), "--schema-registry-url", c.regURL))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := executeNoPre(cmd)
		return out.String(), err
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"set", "farm/cow-7"}}, {[]string{"set", "cow-7", "a=1"}}, {[]string{"set", "farm/cow-7", "novalue"}},
		{[]string{"set", "farm/cow-7", "a=1", "a=2"}}, {[]string{"set", "farm/cow-7", "a=1", "--timeout", "0s"}},
	} {
		if _, err := run(tc.args...); err == nil {
			t.Fatalf("%v: no error", tc.args)
		}
	}
	out, err := run("set", "farm/cow-7", "temperature=20", "mode=eco")
	if err != nil || !strings.HasPrefix(out, "d-") {
		t.Fatalf("state set: %q, %v", out, err)
	}
	var v View
	eventually(t, "desired state", func() error {
		out, err := run("get", "farm/cow-7")
		if err != nil {
			return err
		}
		v = View{}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return err
		}
		if v.Version != 1 {
			return errNotYet(out)
		}
		return nil
	})
	if !maps.Equal(v.Delta, map[string]string{"temperature": "20", "mode": "eco"}) {
		t.Fatalf("delta %v", v.Delta)
	}
	c.produce(t, topics.RawSensor, "farm/cow-7", reading("cow-7", "temperature", t0.Add(time.Second), 20))
	eventually(t, "delta cleared", func() error {
		out, err := run("get", "farm/cow-7")
		if err != nil {
			return err
		}
		v = View{}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return err
		}
		if _, pending := v.Delta["temperature"]; pending {
			return errNotYet(out)
		}
		return nil
	})
	if !maps.Equal(v.Delta, map[string]string{"mode": "eco"}) || v.Desired["temperature"] != "20" {
		t.Fatalf("after report: desired %v delta %v", v.Desired, v.Delta)
	}
}

type errNotYet string

func (e errNotYet) Error() string { return "not yet: " + string(e) }
