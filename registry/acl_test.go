package registry

import "testing"

func TestMatchTopic(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"devices/farm1/cow-1/#", "devices/farm1/cow-1/sensor", true},
		{"devices/farm1/cow-1/#", "devices/farm1/cow-1", true},
		{"devices/farm1/cow-1/#", "devices/farm1/cow-10/sensor", false},
		{"devices/farm1/cow-1/#", "devices/farm2/cow-1/sensor", false},
		{"devices/+/+/commands/#", "devices/a/b/commands", true},
		{"devices/+/+/commands/#", "devices/a/b/c/commands", false},
		{"#", "$SYS/broker/load", false},
		{"+/broker", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/b", "a/b", true},
	} {
		if got := MatchTopic(tc.filter, tc.topic); got != tc.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		pattern, filter string
		want            bool
	}{
		{"devices/f/d/commands/#", "devices/f/d/commands", true},
		{"devices/f/d/commands/#", "devices/f/d/commands/#", true},
		{"devices/f/d/commands/#", "devices/f/d/commands/+/x", true},
		{"devices/f/d/commands/#", "devices/f/+/commands", false},
		{"devices/f/d/commands/#", "devices/f/d/#", false},
		{"devices/f/d/commands/#", "devices/#", false},
		{"devices/f/d/commands/#", "#", false},
		{"devices/f/d/commands/#", "devices/f/d/sensor", false},
		{"devices/#", "devices/+/+/sensor", true},
		{"devices/+/+/x", "devices/a/+/x", true},
		{"devices/+/+/x", "devices/a/#", false},
		{"#", "$SYS/#", false},
		{"#", "a/b", true},
		{"a/b", "a/b/c", false},
	} {
		if got := Covers(tc.pattern, tc.filter); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.pattern, tc.filter, got, tc.want)
		}
	}
}

func TestDeviceACL(t *testing.T) {
	cow := DeviceACL(&Device{Tenant: "farm1", ID: "cow-1"})
	wf := DeviceACL(&Device{Tenant: "farm1", ID: "wf-1", Type: TypeWildFi})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"devices/farm1/cow-1/sensor", true},
		{"devices/farm1/cow-1/media/image2d", true},
		{"devices/farm2/cow-1/sensor", false}, // another tenant
		{"devices/farm1/cow-2/sensor", false}, // another device
		{"wildfi/cow-1/gps", false},           // not a WildFi device
		{"devices/farm1/cow-1+/x", false},     // wildcard in a topic name
	} {
		if got := cow.CanPublish(tc.name); got != tc.ok {
			t.Errorf("cow publish %q = %v, want %v", tc.name, got, tc.ok)
		}
	}
	if !wf.CanPublish("wildfi/wf-1/imu") || wf.CanPublish("wildfi/wf-2/imu") {
		t.Error("WildFi publish rule")
	}
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"devices/farm1/cow-1/commands", true},
		{"devices/farm1/cow-1/commands/#", true},
		{"$share/g/devices/farm1/cow-1/commands", true},
		{"devices/farm1/cow-1/#", false},
		{"devices/farm1/+/commands", false},
		{"devices/farm2/cow-1/commands", false},
		{"#", false},
		{"devices/farm1/cow-1/commands/a#", false}, // malformed
	} {
		if got := cow.CanSubscribe(tc.filter); got != tc.ok {
			t.Errorf("cow subscribe %q = %v, want %v", tc.filter, got, tc.ok)
		}
	}
	b := BridgeACL()
	if !b.CanSubscribe("$share/ingestors/devices/#") || !b.CanSubscribe("wildfi/#") || b.CanSubscribe("#") || !b.CanPublish("devices/f/d/commands") || b.CanPublish("devices/f/d/sensor") {
		t.Error("bridge ACL")
	}
}
