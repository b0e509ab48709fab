package topics_test

import (
	"slices"
	"testing"

	"github.com/lovoo/goka"

	"github.com/drover-iot/drover/backfill"
	"github.com/drover-iot/drover/bridge"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/processors/alerts"
	"github.com/drover-iot/drover/processors/features"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/processors/timescale"
	"github.com/drover-iot/drover/topics"
)

// TestACLsFollowTheStages keeps acls.yaml in step with the stages' own
// defaults: the topics they produce to and consume, their group names and
// the goka tables and loops of the processor groups.
func TestACLsFollowTheStages(t *testing.T) {
	cat, set, err := topics.DefaultCatalogueAndACLs()
	if err != nil {
		t.Fatal(err)
	}
	principal := func(user string) topics.Principal {
		p, ok := set.Lookup(user)
		if !ok {
			t.Fatalf("acls.yaml has no principal %s", user)
		}
		return p
	}
	covers := func(user, list string, have, need []string) {
		for _, n := range need {
			if !slices.Contains(have, n) {
				t.Errorf("%s: %s lacks %s, which the stage uses", user, list, n)
			}
		}
	}
	bridgeP := principal("drover-bridge")
	covers("drover-bridge", "write", bridgeP.Write, append(routes.Default().Topics(), topics.DLQ))
	covers("drover-bridge", "read", bridgeP.Read, []string{topics.Commands, topics.DevicesRegistry})
	covers("drover-bridge", "groups", bridgeP.Groups, []string{bridge.DefaultCommandsGroup})

	sink := principal("drover-sink")
	if !slices.Equal(slices.Sorted(slices.Values(sink.Read)), slices.Sorted(slices.Values(timescale.SinkTopics))) {
		t.Errorf("drover-sink reads %v, the sink consumes %v", sink.Read, timescale.SinkTopics)
	}
	covers("drover-sink", "groups", sink.Groups, []string{timescale.DefaultGroup})

	media := principal("drover-media")
	covers("drover-media", "groups", media.Groups, []string{backfill.DefaultMediaGroup})
	covers("drover-media", "read", media.Read, []string{topics.MediaEvents})
	covers("drover-media", "write", media.Write, []string{topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D, topics.DLQ})

	proc := principal("drover-process")
	groups := []goka.Group{features.Group, alerts.Group, state.Group, state.RelayGroup}
	var names []string
	for _, g := range groups {
		names = append(names, string(g))
	}
	if !slices.Equal(slices.Sorted(slices.Values(proc.Groups)), slices.Sorted(slices.Values(names))) {
		t.Errorf("drover-process groups %v, the processors run %v", proc.Groups, names)
	}
	var internal []string
	for _, g := range groups {
		// goka names a group's loop topic <group>-loop.
		for _, tp := range []string{string(goka.GroupTable(g)), string(g) + "-loop"} {
			if _, ok := cat.Lookup(tp); ok {
				internal = append(internal, tp)
			}
		}
	}
	for _, list := range []struct {
		name string
		have []string
	}{{"read", proc.Read}, {"write", proc.Write}, {"create", proc.Create}, {"describe_configs", proc.DescribeConfigs}} {
		covers("drover-process", list.name, list.have, internal)
	}
	covers("drover-process", "read", proc.Read, []string{topics.RawSensor, topics.RawGPS, topics.Alerts, topics.DevicesRegistry, topics.Commands})
	covers("drover-process", "write", proc.Write, []string{topics.Features, topics.Alerts, topics.StateLatest, topics.DLQ})
}
