package console

import "github.com/drover-iot/drover/topics"

// Node is a box of the pipeline drawing. Col and Row place it on a grid
// (the front end scales the grid); a later stage (registry, commands,
// stream apps) is one more node and its edges.
type Node struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"` // source, stage, topic, store
	Label string `json:"label"`
	// Stage names the Target whose health colours the node.
	Stage string `json:"stage,omitempty"`
	// Topics are the Kafka topics a topic node stands for.
	Topics []string `json:"topics,omitempty"`
	// Groups are the consumer groups of a stage node.
	Groups []string `json:"groups,omitempty"`
	Col    int      `json:"col"`
	Row    int      `json:"row"`
}

// Edge is an arrow of the drawing. Its rate comes from, in order: the
// consumer group's committed offsets on the From topics (Group set), the
// To topic node's end offsets (To is a topic), or a counter of the From
// (or To) stage (Metric set).
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Group  string `json:"group,omitempty"`
	Metric string `json:"metric,omitempty"`
}

// Topology is the pipeline drawing: the README's data flow.
type Topology struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// DefaultTopology is drover's data flow: devices → bridge → raw topics
// and dead letters → processors → derived topics → sink → database, with
// the media stage, the downlink and the device registry.
func DefaultTopology() Topology {
	media := []string{topics.RawImage2D, topics.RawImage3D, topics.RawVideo2D, topics.RawVideo3D}
	n := []Node{
		{ID: "devices", Kind: "source", Label: "devices (MQTT)", Col: 0, Row: 1},
		{ID: "s3", Kind: "source", Label: "S3 objects", Col: 0, Row: 4},
		{ID: "bridge", Kind: "stage", Label: "bridge", Stage: "bridge", Groups: []string{"drover-bridge-downlink"}, Col: 1, Row: 1},
		{ID: "media", Kind: "stage", Label: "media", Stage: "media", Groups: []string{"drover-media"}, Col: 1, Row: 4},
		{ID: "t-sensor", Kind: "topic", Label: topics.RawSensor, Topics: []string{topics.RawSensor}, Col: 2, Row: 0},
		{ID: "t-gps", Kind: "topic", Label: topics.RawGPS, Topics: []string{topics.RawGPS}, Col: 2, Row: 1},
		{ID: "t-media", Kind: "topic", Label: "raw.*.meta", Topics: media, Col: 2, Row: 2},
		{ID: "t-dlq", Kind: "topic", Label: topics.DLQ, Topics: []string{topics.DLQ}, Col: 2, Row: 3},
		{ID: "t-objects", Kind: "topic", Label: topics.MediaEvents, Topics: []string{topics.MediaEvents}, Col: 1, Row: 5},
		{ID: "t-commands", Kind: "topic", Label: topics.Commands, Topics: []string{topics.Commands}, Col: 0, Row: 2},
		// The device registry (drover devices, the registry API) that the
		// bridge checks every message against; read by a view, no group.
		{ID: "t-registry", Kind: "topic", Label: topics.DevicesRegistry, Topics: []string{topics.DevicesRegistry}, Col: 0, Row: 0},
		{ID: "features", Kind: "stage", Label: "features", Stage: "processors", Groups: []string{"features"}, Col: 3, Row: 0},
		{ID: "alerts", Kind: "stage", Label: "alerts", Stage: "processors", Groups: []string{"alerts"}, Col: 3, Row: 1},
		{ID: "state", Kind: "stage", Label: "state", Stage: "processors", Groups: []string{"state", "state-alerts"}, Col: 3, Row: 2},
		{ID: "t-features", Kind: "topic", Label: topics.Features, Topics: []string{topics.Features}, Col: 4, Row: 0},
		{ID: "t-alerts", Kind: "topic", Label: topics.Alerts, Topics: []string{topics.Alerts}, Col: 4, Row: 1},
		{ID: "t-state", Kind: "topic", Label: topics.StateLatest, Topics: []string{topics.StateLatest}, Col: 4, Row: 2},
		{ID: "sink", Kind: "stage", Label: "sink", Stage: "sink", Groups: []string{"drover-sink"}, Col: 5, Row: 1},
		{ID: "db", Kind: "store", Label: "TimescaleDB", Col: 6, Row: 1},
	}
	e := []Edge{
		{From: "devices", To: "bridge", Metric: "drover_bridge_messages_received_total"},
		{From: "bridge", To: "t-sensor"}, {From: "bridge", To: "t-gps"}, {From: "bridge", To: "t-media"}, {From: "bridge", To: "t-dlq"},
		{From: "t-commands", To: "bridge", Group: "drover-bridge-downlink"},
		{From: "t-registry", To: "bridge"},
		{From: "s3", To: "t-objects"},
		{From: "t-objects", To: "media", Group: "drover-media"}, {From: "media", To: "t-media"},
	}
	for _, p := range []struct{ id, out string }{{"features", "t-features"}, {"alerts", "t-alerts"}, {"state", "t-state"}} {
		e = append(e, Edge{From: "t-sensor", To: p.id, Group: p.id}, Edge{From: "t-gps", To: p.id, Group: p.id}, Edge{From: p.id, To: p.out})
	}
	e = append(e, Edge{From: "t-alerts", To: "state", Group: "state-alerts"})
	for _, t := range []string{"t-sensor", "t-gps", "t-media", "t-dlq", "t-features", "t-alerts", "t-state"} {
		e = append(e, Edge{From: t, To: "sink", Group: "drover-sink"})
	}
	e = append(e, Edge{From: "sink", To: "db", Metric: "drover_sink_rows_written_total"})
	return Topology{Nodes: n, Edges: e}
}
