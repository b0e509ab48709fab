package routes

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/topics"
)

func TestBadRoutes(t *testing.T) {
	tests := []struct {
		name   string
		errSub []string
	}{
		{"unknown_field", []string{"unknown_field.bad.yaml:6", "route sensor", "colour", "unknown field"}},
		{"unknown_decoder", []string{":4", "route sensor", "decoder", `unknown decoder "csv"`}},
		{"wrong_topic_schema", []string{":5", "topic", `"raw.gps" carries io.drover.GPSFix`}},
		{"topic_without_schema", []string{"topic", `"raw.nothing" has no schema`}},
		{"wildcard", []string{":3", "match", "wildcards"}},
		{"no_device", []string{"match", "no {device}"}},
		{"duplicate_name", []string{":6", "route a", "name", "duplicate of route #1"}},
		{"missing_name", []string{"route #1", "name: missing"}},
		{"undefined_var", []string{"topic", "{type}"}},
		{"not_yaml", []string{"not_yaml.bad.yaml"}},
		{"empty_list", []string{"no routes given"}},
		{"empty", []string{"file is empty"}},
		{"ignore_with_topic", []string{"topic", "must be empty when ignore is true"}},
		{"unknown_top_level", []string{"rules"}},
		{"empty_alternative", []string{"empty alternative"}},
		{"bad_tenant", []string{"bad_tenant.bad.yaml:6", "route collars", "tenant", `tenant id "herd 7" has a character outside [A-Za-z0-9._:-] at byte 4`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tc.name+".bad.yaml"))
			if err == nil {
				t.Fatal("no error")
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *Error: %v", err, err)
			}
			for _, s := range tc.errSub {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestRouteMatching(t *testing.T) {
	def := Default()
	custom, err := Load("testdata/custom.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		routes  *Table
		topic   string
		route   string
		tenant  string
		device  string
		kafka   string
		source  string
		reason  decode.Reason
		ignored bool
		cleared bool // the malformed part of the identity is cleared, the other kept
	}{
		{name: "sensor", routes: def, topic: "devices/farm1/cow-7/sensor", route: "sensor", tenant: "farm1", device: "cow-7", kafka: topics.RawSensor, source: "sensor"},
		{name: "gps", routes: def, topic: "devices/farm1/cow-7/gps", route: "gps", tenant: "farm1", device: "cow-7", kafka: topics.RawGPS, source: "gps"},
		{name: "media", routes: def, topic: "devices/farm1/cam-1/media/video3d", route: "media", tenant: "farm1", device: "cam-1", kafka: topics.RawVideo3D, source: "media/video3d"},
		{name: "heartbeat", routes: def, topic: "devices/farm1/cow-7/heartbeat", route: "heartbeat", tenant: "farm1", device: "cow-7", kafka: topics.RawSensor, source: "heartbeat"},
		{name: "wildfi gnss", routes: def, topic: "wildfi/tag-3/gnss", route: "wildfi-gps", tenant: "default", device: "tag-3", kafka: topics.RawGPS, source: "wildfi/gnss"},
		{name: "wildfi imu", routes: def, topic: "wildfi/tag-3/imu", route: "wildfi-sensor", tenant: "default", device: "tag-3", kafka: topics.RawSensor, source: "wildfi/imu"},
		{name: "commands ignored", routes: def, topic: "devices/farm1/cow-7/commands", route: "commands", tenant: "farm1", device: "cow-7", ignored: true},
		{name: "events", routes: def, topic: "devices/farm1/cow-7/events", route: "events", tenant: "farm1", device: "cow-7", kafka: topics.RawSensor, source: "events"},
		{name: "unknown channel", routes: def, topic: "devices/farm1/cow-7/alarms", reason: decode.ReasonUnknownChannel, tenant: "farm1", device: "cow-7"},
		{name: "events extra segment", routes: def, topic: "devices/farm1/cow-7/events/tamper", reason: decode.ReasonUnknownChannel},
		{name: "unknown media kind", routes: def, topic: "devices/farm1/cow-7/media/audio", reason: decode.ReasonUnknownChannel},
		{name: "unknown wildfi type", routes: def, topic: "wildfi/tag-3/sonar", reason: decode.ReasonUnknownChannel, device: "tag-3", tenant: "default"},
		{name: "extra segment", routes: def, topic: "devices/farm1/cow-7/sensor/extra", reason: decode.ReasonUnknownChannel},
		{name: "unknown topic", routes: def, topic: "telemetry/cow-7", reason: decode.ReasonUnknownTopic},
		{name: "empty device", routes: def, topic: "devices/farm1//sensor", reason: decode.ReasonBadIdentity},
		{name: "long device", routes: def, topic: "devices/farm1/" + strings.Repeat("x", 200) + "/sensor", reason: decode.ReasonBadIdentity},
		{name: "device with bidi override", routes: def, topic: "devices/farm1/cow\u202e7/sensor", reason: decode.ReasonBadIdentity, tenant: "farm1", cleared: true},
		{name: "device with escape sequence", routes: def, topic: "devices/farm1/cow\x1b[31m/gps", reason: decode.ReasonBadIdentity, tenant: "farm1", cleared: true},
		{name: "device with NUL", routes: def, topic: "devices/farm1/cow\x00/gps", reason: decode.ReasonBadIdentity, tenant: "farm1", cleared: true},
		{name: "device invalid utf8", routes: def, topic: "devices/farm1/cow\xff/events", reason: decode.ReasonBadIdentity, tenant: "farm1", cleared: true},
		{name: "tenant with space", routes: def, topic: "devices/farm 1/cow-7/sensor", reason: decode.ReasonBadIdentity, device: "cow-7", cleared: true},
		{name: "tenant starts with dot", routes: def, topic: "devices/.farm/cow-7/media/image2d", reason: decode.ReasonBadIdentity, device: "cow-7", cleared: true},
		{name: "bad identity before unknown channel", routes: def, topic: "devices/farm1/cow\u202e/alarms", reason: decode.ReasonBadIdentity, tenant: "farm1", cleared: true},
		{name: "wildfi device with bidi", routes: def, topic: "wildfi/tag\u2066/imu", reason: decode.ReasonBadIdentity, tenant: "default", cleared: true},
		{name: "wildfi bad device before unknown type", routes: def, topic: "wildfi/tag:\u200f/sonar", reason: decode.ReasonBadIdentity, tenant: "default", cleared: true},
		{name: "wildfi empty device", routes: def, topic: "wildfi//gps", reason: decode.ReasonBadIdentity, tenant: "default", cleared: true},
		{name: "custom fixed tenant", routes: custom, topic: "wildfi/tag-1/gps", route: "w", tenant: "herd", device: "tag-1", kafka: topics.RawGPS, source: "w"},
		{name: "custom media", routes: custom, topic: "cams/t1/c1/video2d", route: "m", tenant: "t1", device: "c1", kafka: topics.RawVideo2D, source: "cam/video2d"},
		{name: "sparkplug node", routes: def, topic: "spBv1.0/plant1/NDATA/edge-1", route: "sparkplug-node", tenant: "plant1", device: "edge-1", kafka: topics.RawSensor, source: "sparkplug"},
		{name: "sparkplug device", routes: def, topic: "spBv1.0/plant1/DDEATH/edge-1/pump-2", route: "sparkplug-device", tenant: "plant1", device: "edge-1:pump-2", kafka: topics.RawSensor, source: "sparkplug"},
		{name: "sparkplug command ignored", routes: def, topic: "spBv1.0/plant1/NCMD/edge-1", route: "sparkplug-commands", tenant: "plant1", device: "edge-1", ignored: true},
		{name: "sparkplug state ignored", routes: def, topic: "spBv1.0/STATE/host-1", route: "sparkplug-state", tenant: "default", device: "host-1", ignored: true},
		{name: "sparkplug unknown type", routes: def, topic: "spBv1.0/plant1/NFOO/edge-1", reason: decode.ReasonUnknownTopic},
		{name: "custom unknown", routes: custom, topic: "devices/farm1/cow-7/sensor", reason: decode.ReasonUnknownTopic}, // the prefix devices/ comes from the table, and this one has none
		{name: "custom unknown channel", routes: custom, topic: "cams/t1/c1/audio/x", reason: decode.ReasonUnknownChannel, tenant: "t1", device: "c1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.routes.Route(tc.topic, "default")
			if tc.reason != "" {
				var de *decode.Error
				if !errors.As(err, &de) || de.Reason != tc.reason || de.Stage != decode.StageRoute {
					t.Fatalf("err = %v, want route/%s", err, tc.reason)
				}
				if (tc.device != "" || tc.cleared) && (m.Device != tc.device || m.Tenant != tc.tenant) {
					t.Errorf("identity %q/%q, want %q/%q", m.Tenant, m.Device, tc.tenant, tc.device)
				}
				if decode.Escape(de.Message) != de.Message {
					t.Errorf("message not escaped: %q", de.Message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Route.Name != tc.route || m.Tenant != tc.tenant || m.Device != tc.device || m.Route.Ignore != tc.ignored {
				t.Fatalf("match = %+v (route %s)", m, m.Route.Name)
			}
			if !tc.ignored && (m.Topic != tc.kafka || m.Source != tc.source) {
				t.Errorf("topic %s source %s, want %s %s", m.Topic, m.Source, tc.kafka, tc.source)
			}
		})
	}
}

func TestDefaultRoutesTopics(t *testing.T) {
	got := strings.Join(Default().Topics(), ",")
	want := "raw.gps,raw.image2d.meta,raw.image3d.meta,raw.sensor,raw.video2d.meta,raw.video3d.meta"
	if got != want {
		t.Errorf("Topics() = %s, want %s", got, want)
	}
}
