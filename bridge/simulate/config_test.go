package simulate

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/cli"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{MQTTURL: "tcp://127.0.0.1:1883"}
	tests := []struct {
		name   string
		mutate func(*Config)
		errSub string
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "everything set", mutate: func(c *Config) {
			*c = Config{MQTTURL: "ssl://user:pw@broker:8883", Tenant: "farm-7.north", DevicePrefix: "cow", Devices: 1000, Rate: 250,
				Duration: 5, Count: 10, InvalidRatio: 1, SenMLRatio: 0.5, WildFiRatio: 0.5, MediaRatio: 0.1, Bucket: "media.bucket"}
		}},
		{name: "negative devices", mutate: func(c *Config) { c.Devices = -3 }, errSub: "--devices: must be between 1 and"},
		{name: "too many devices", mutate: func(c *Config) { c.Devices = MaxDevices + 1 }, errSub: "--devices"},
		{name: "negative rate", mutate: func(c *Config) { c.Rate = -1 }, errSub: "--rate"},
		{name: "NaN rate", mutate: func(c *Config) { c.Rate = math.NaN() }, errSub: "--rate"},
		{name: "ratio above 1", mutate: func(c *Config) { c.InvalidRatio = 1.5 }, errSub: "--invalid-ratio: must be between 0 and 1, got 1.5"},
		{name: "negative ratio", mutate: func(c *Config) { c.InvalidRatio = -0.1 }, errSub: "--invalid-ratio"},
		{name: "tenant with slash", mutate: func(c *Config) { c.Tenant = "farm/7" }, errSub: `--tenant: "farm/7"`},
		{name: "tenant with wildcard", mutate: func(c *Config) { c.Tenant = "farm+" }, errSub: "--tenant"},
		{name: "tenant with space", mutate: func(c *Config) { c.Tenant = "my farm" }, errSub: "--tenant"},
		{name: "tenant too long", mutate: func(c *Config) { c.Tenant = strings.Repeat("a", 65) }, errSub: "--tenant"},
		{name: "device prefix with hash", mutate: func(c *Config) { c.DevicePrefix = "cow#" }, errSub: "--device-prefix"},
		{name: "negative duration", mutate: func(c *Config) { c.Duration = -1 }, errSub: "--duration"},
		{name: "negative count", mutate: func(c *Config) { c.Count = -1 }, errSub: "--count"},
		{name: "kinds above 1", mutate: func(c *Config) { c.SenMLRatio, c.WildFiRatio = 0.7, 0.4 }, errSub: "--senml-ratio plus --wildfi-ratio"},
		{name: "media ratio above 1", mutate: func(c *Config) { c.MediaRatio = 2 }, errSub: "--media-ratio"},
		{name: "silent share above 1", mutate: func(c *Config) { c.MaxSilentShare = 1.1 }, errSub: "--max-silent-share"},
		{name: "bad bucket", mutate: func(c *Config) { c.Bucket = "Media_Bucket" }, errSub: "--s3-bucket"},
		{name: "bad pasture", mutate: func(c *Config) { c.Pasture = &Polygon{Outer: []Point{{0, 0}, {1, 1}}} }, errSub: "--pasture"},
		{name: "no broker", mutate: func(c *Config) { c.MQTTURL = "" }, errSub: "--mqtt-url: required"},
		{name: "http broker", mutate: func(c *Config) { c.MQTTURL = "http://broker:1883" }, errSub: `--mqtt-url: "http://broker:1883": unsupported scheme`},
		{name: "broker without host", mutate: func(c *Config) { c.MQTTURL = "tcp://" }, errSub: "no host"},
		{name: "in-flight too large", mutate: func(c *Config) { c.InFlight = 70000 }, errSub: "--in-flight"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if tc.errSub == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("error = %v, want a *ConfigError containing %q", err, tc.errSub)
			}
		})
	}
}

// TestCommandBadFlags runs `drover simulate` with bad flags: each fails
// with a usage error (exit code 2) naming the flag, before any connection.
func TestCommandBadFlags(t *testing.T) {
	dir := t.TempDir()
	notPolygon := filepath.Join(dir, "point.geojson")
	if err := os.WriteFile(notPolygon, []byte(`{"type":"Point","coordinates":[0,0]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		errSub string
	}{
		{name: "negative devices", args: []string{"--devices", "-5"}, errSub: "--devices: must be at least 1, got -5"},
		{name: "ratio above 1", args: []string{"--invalid-ratio", "1.2"}, errSub: "--invalid-ratio: must be between 0 and 1"},
		{name: "tenant chars", args: []string{"--tenant", "acme/west"}, errSub: `--tenant: "acme/west"`},
		{name: "tenant wildcard", args: []string{"--tenant", "#"}, errSub: "--tenant"},
		{name: "zero rate", args: []string{"--rate", "0"}, errSub: "--rate"},
		{name: "not a number", args: []string{"--rate", "fast"}, errSub: `invalid argument "fast" for "--rate"`},
		{name: "negative media ratio", args: []string{"--media-ratio", "-1"}, errSub: "--media-ratio: must not be negative"},
		{name: "negative duration", args: []string{"--duration", "-1m"}, errSub: "--duration"},
		{name: "missing pasture", args: []string{"--pasture", filepath.Join(dir, "nope.geojson")}, errSub: "--pasture: open"},
		{name: "pasture not a polygon", args: []string{"--pasture", notPolygon}, errSub: `--pasture: ` + notPolygon},
		{name: "broker scheme", args: []string{"--mqtt-url", "http://127.0.0.1:1"}, errSub: "--mqtt-url"},
		{name: "missing password file", args: []string{"--mqtt-password-file", filepath.Join(dir, "pw")}, errSub: "--mqtt-password-file"},
		{name: "seed zero", args: []string{"--seed", "0"}, errSub: "--seed"},
		{name: "bucket", args: []string{"--s3-bucket", "NO"}, errSub: "--s3-bucket"},
		{name: "stray argument", args: []string{"now"}, errSub: "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DROVER_DEV_ENV", "")
			root := cli.NewRoot("test")
			root.Cmd.AddCommand(Command(root.Conn))
			var out bytes.Buffer
			root.Cmd.SetOut(&out)
			root.Cmd.SetErr(&out)
			root.Cmd.SetArgs(append([]string{"simulate", "--log-level", "error", "--admin-addr", ""}, tc.args...))
			err := root.Cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.errSub)
			}
			if code := cli.ExitCode(err); code != 2 && tc.name != "stray argument" {
				t.Fatalf("exit code %d for %v, want 2", code, err)
			}
		})
	}
}

// TestReadmeListsEveryFlag keeps README.md's flag table in step with the
// command.
func TestReadmeListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmd := Command(&cli.Conn{})
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !bytes.Contains(readme, []byte("`--"+f.Name+"`")) {
			t.Errorf("README.md does not document --%s", f.Name)
		}
	})
}
