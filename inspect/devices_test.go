package inspect

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

func TestIntegrationDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	s := newStack(t)
	base := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	state := func(tenant, dev string, seen time.Time, online bool, battery float64, alerts int32) schemas.DeviceState {
		return schemas.DeviceState{Tenant: tenant, DeviceID: dev, TS: seen, IngestedAt: seen, Online: online, LastSeen: seen,
			Battery: ptr(battery), Firmware: ptr("1.2.3"), Metrics: map[string]float64{"temperature": 38.5}, ActiveAlerts: alerts, UpdatedAt: seen}
	}
	s.produce(
		s.record(topics.StateLatest, 0, "collar-1", base, state("farm-1", "collar-1", base, true, 90, 0)),
		s.record(topics.StateLatest, 1, "collar-2", base, state("farm-1", "collar-2", base, true, 80, 0)),
		// collar-1 later: went offline with an alert (last value wins).
		s.record(topics.StateLatest, 0, "collar-1", base.Add(time.Minute), state("farm-1", "collar-1", base.Add(time.Minute), false, 12.5, 2)),
		s.record(topics.StateLatest, 2, "trap-9", base, state("farm-2", "trap-9", base.Add(-2*time.Hour), true, 55, 1)),
		// gone-1 was written, then deleted by a tombstone.
		s.record(topics.StateLatest, 2, "gone-1", base, state("farm-2", "gone-1", base, true, 1, 0)),
		&kgo.Record{Topic: topics.StateLatest, Partition: 2, Key: []byte("gone-1")},
		// a record that does not decode is counted, not fatal.
		&kgo.Record{Topic: topics.StateLatest, Partition: 1, Key: []byte("junk"), Value: []byte("junk")},
	)
	now := base.Add(10 * time.Minute)
	run := func(args ...string) result {
		return execute(t, devicesCommand(&cli.Conn{}, func() time.Time { return now }), append(args, s.connArgs()...)...)
	}
	r := run("--format", "json")
	if r.err != nil {
		t.Fatalf("%v\n%s", r.err, r.errOut)
	}
	var devs []Device
	for _, line := range strings.Split(strings.TrimSpace(r.out), "\n") {
		var d Device
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		devs = append(devs, d)
	}
	if len(devs) != 3 {
		t.Fatalf("devices %+v, want collar-1, collar-2, trap-9", devs)
	}
	if d := devs[0]; d.DeviceID != "collar-1" || d.Online || *d.Battery != 12.5 || d.ActiveAlerts != 2 || !d.LastSeen.Equal(base.Add(time.Minute)) {
		t.Errorf("collar-1 %+v", d)
	}
	if devs[1].DeviceID != "collar-2" || devs[2].DeviceID != "trap-9" || devs[2].Tenant != "farm-2" {
		t.Errorf("order %+v", devs)
	}
	if !strings.Contains(r.errOut, "1 record(s) of state.latest did not decode") {
		t.Errorf("stderr %q", r.errOut)
	}

	for _, c := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"table", []string{"--format", "table"}, []string{"TENANT", "collar-1", "2026-11-23T05:01:00Z", "9m00s", "no", "12.5", "trap-9", "2h10m"}, nil},
		{"tenant", []string{"--format", "table", "--tenant", "farm-2"}, []string{"trap-9"}, []string{"collar-1"}},
		{"offline", []string{"--format", "table", "--status", "offline"}, []string{"collar-1"}, []string{"collar-2", "trap-9"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(c.args...)
			if r.err != nil {
				t.Fatal(r.err)
			}
			t.Logf("output:\n%s", r.out)
			for _, w := range c.want {
				if !strings.Contains(r.out, w) {
					t.Errorf("output lacks %q:\n%s", w, r.out)
				}
			}
			for _, w := range c.not {
				if strings.Contains(r.out, w) {
					t.Errorf("output has %q:\n%s", w, r.out)
				}
			}
		})
	}
	t.Run("unknown tenant", func(t *testing.T) {
		r := run("--tenant", "farm-1,frm-2")
		var ue *cli.UsageError
		if !errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), `--tenant: no device of tenant "frm-2" in state.latest (tenants: farm-1, farm-2)`) || r.out != "" {
			t.Errorf("error %v, output %q", r.err, r.out)
		}
	})
	t.Run("bad status", func(t *testing.T) {
		r := run("--status", "asleep")
		var ue *cli.UsageError
		if !errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), `--status: unknown status "asleep"`) {
			t.Errorf("error %v", r.err)
		}
	})
}
