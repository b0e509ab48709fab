package dlq

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
)

func TestCommandUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"redrive without since", []string{"dlq", "redrive"}},
		{"redrive bad since", []string{"dlq", "redrive", "--since", "last tuesday"}},
		{"redrive bad routes", []string{"dlq", "redrive", "--since", "1h", "--routes", "/nonexistent/routes.yaml"}},
		{"stats bad since", []string{"dlq", "stats", "--since", "-5h"}},
		{"stats bad format", []string{"dlq", "stats", "--format", "xml"}},
		{"stats negative examples", []string{"dlq", "stats", "--examples", "-1"}},
		{"redrive unknown reason", []string{"dlq", "redrive", "--since", "1h", "--reason", "bogus"}},
		{"no subcommand", []string{"dlq"}},
		{"unknown subcommand", []string{"dlq", "purge"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := cli.NewRoot("test")
			root.Cmd.AddCommand(DLQCommand(root.Conn))
			if code := root.Execute(append([]string{"--dev-env", ""}, c.args...)); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
}

func TestPrintStats(t *testing.T) {
	s := Summary{Total: 3, ByStage: []Count{{Key: "decode", Count: 3}},
		ByReason: []Count{{Key: "decode/not_json", Count: 3, Examples: []string{"devices/f/c/sensor: not json"}}},
		BySource: []Count{{Key: "devices/+/+/sensor", Count: 3}}}
	var b bytes.Buffer
	if err := printStats(&b, s, "text", time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"3 dead letters since 2026-11-22T00:00:00Z", "by stage/reason:", "decode/not_json", "e.g. devices/f/c/sensor: not json", "devices/+/+/sensor"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestIntegrationStatsUnknownTopic(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	kc, _ := setup(t)
	brokers := kc.OptValue(kgo.SeedBrokers).([]string)
	root := cli.NewRoot("test")
	root.Cmd.AddCommand(DLQCommand(root.Conn))
	var out bytes.Buffer
	root.Cmd.SetOut(&out)
	root.Cmd.SetArgs([]string{"dlq", "stats", "--dev-env", "", "--kafka-brokers", strings.Join(brokers, ","), "--topic", "dlq.evnets"})
	err := root.Cmd.Execute()
	if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), `--topic: unknown topic "dlq.evnets"`) {
		t.Fatalf("err %v (exit %d), want exit 2 naming --topic", err, cli.ExitCode(err))
	}
}
