package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/topics"
)

// run executes `schemas ARGS...` against the registry at url and returns
// stdout and the exit code drover would use.
func run(t *testing.T, url string, args ...string) (string, int, error) {
	t.Helper()
	cmd := Command(&cli.Conn{})
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if url != "" {
		args = append(args, "--schema-registry-url", url)
	}
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(testCtx(t))
	return out.String(), cli.ExitCode(err), err
}

func TestCommand(t *testing.T) {
	reg, client := newRegistry(t)
	ctx := testCtx(t)
	tests := []struct {
		name     string
		setup    func(t *testing.T)
		args     []string
		registry bool
		code     int
		want     []string // substrings of the output
		wantErr  string
	}{
		{name: "list", args: []string{"list"}, want: []string{
			"TOPIC", "raw.sensor  ", "raw.sensor-value", "io.drover.SensorReading", "governance.data.products-value", "io.drover.Envelope"}},
		{name: "show", args: []string{"show", "raw.gps"}, want: []string{`"name": "GPSFix"`, `"namespace": "io.drover"`}},
		{name: "show unknown", args: []string{"show", "nope"}, code: 2, wantErr: `unknown topic "nope"`},
		{name: "show no topic", args: []string{"show"}, code: 1, wantErr: "accepts 1 arg"},
		{name: "check before register", args: []string{"check", "raw.sensor", "raw.gps"}, registry: true, code: 3,
			want:    []string{"raw.sensor-value", "missing", "run 'drover schemas register'"},
			wantErr: "check failed: 2 of 2 subjects need attention: raw.sensor-value missing, raw.gps-value missing"},
		{name: "register", args: []string{"register", "raw.sensor", "raw.gps"}, registry: true,
			want: []string{"SUBJECT", "raw.sensor-value", "raw.gps-value", "created"}},
		{name: "register again", args: []string{"register", "raw.sensor", "raw.gps"}, registry: true,
			want: []string{"raw.sensor-value  1   1        unchanged"}},
		{name: "check after register", args: []string{"check", "raw.sensor", "raw.gps"}, registry: true,
			want: []string{"raw.gps-value     identical"}},
		{name: "register all", args: []string{"register"}, registry: true, want: []string{"cra.product.lifecycle-value", "commands.devices-value"}},
		{name: "check all", args: []string{"check"}, registry: true, want: []string{"dlq.events-value"}},
		{name: "register unknown topic", args: []string{"register", "nope"}, registry: true, code: 2, wantErr: `unknown topic "nope"`},
		{name: "negative timeout", args: []string{"check", "--timeout", "-1s"}, registry: true, code: 2, wantErr: "--timeout: must be > 0, got -1s"},
		{name: "zero timeout", args: []string{"register", "--timeout", "0s"}, registry: true, code: 2, wantErr: "--timeout: must be > 0, got 0s"},
		{name: "incompatible registry schema", registry: true,
			setup: func(t *testing.T) {
				bad := strings.Replace(Source(topics.DLQ), `{"name": "payload", "type": "bytes"`, `{"name": "payload", "type": "long"`, 1)
				// Straight to the registry, as a registry without checks would take it.
				if _, err := client.RegisterSchema(ctx, "dlq.events-value", sr.Schema{Schema: bad}, -1, -1); err != nil {
					t.Fatal(err)
				}
			},
			args: []string{"check", "dlq.events"}, code: 3,
			want:    []string{`incompatible  2        `, `field "payload": type changed from long (registered) to bytes`},
			wantErr: "dlq.events-value incompatible"},
		{name: "register refuses incompatible", registry: true, args: []string{"register", "dlq.events"}, code: 3,
			wantErr: `check failed: subject dlq.events-value: schema is not backward compatible with version 2: field "payload"`},
		{name: "registry down", setup: func(*testing.T) { reg.Close() }, registry: true, args: []string{"check"}, code: 1,
			wantErr: "checking schemas at http://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			url := ""
			if tt.registry {
				url = reg.URL()
			}
			out, code, err := run(t, url, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d (err %v)", code, tt.code, err)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("err = %v\n%s", err, out)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestShowPrintsValidJSON(t *testing.T) {
	for _, topic := range Topics() {
		out, _, err := run(t, "", "show", topic)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid([]byte(out)) {
			t.Errorf("show %s: not JSON", topic)
		}
	}
}

func TestCommandHelp(t *testing.T) {
	for _, c := range Command(&cli.Conn{}).Commands() {
		if c.Long == "" || c.Example == "" || c.Short == "" {
			t.Errorf("%s: missing Short, Long or Example", c.Name())
		}
	}
}
