// Package inspect holds drover's operator commands that read the cluster
// without changing it: `drover tail` (read topics from a position, decode
// Avro through the schema registry, filter, print as JSON lines or a table),
// `drover lag` (consumer group lag with the age of the oldest unconsumed
// record) and `drover devices` (the devices known to the compacted
// state.latest topic).
//
// Every command reads partitions directly (kgo ConsumePartitions with exact
// offsets), never through a consumer group, so inspecting a topic leaves no
// trace on the cluster. Bad flags are usage errors (exit 2) that name the
// flag; a record that does not decode is shown as raw bytes with the reason
// and never stops the command.
package inspect
