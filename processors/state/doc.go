// Package state is the goka group that keeps the device shadow: one
// DeviceState per device on the compacted topic state.latest (key = device
// id) with last seen (event and ingest time), the last value of every
// metric, the last position, online/offline by wall clock, battery,
// firmware and the number of active alerts.
//
// Devices go offline when no live (non-replayed) record arrived for
// OfflineAfter of wall-clock time; a tick visitor (package groupkit) checks
// every device each TickInterval. Alert lifecycle events reach the group
// through a small relay group (alerts.events has fewer partitions than
// raw.*, and goka needs co-partitioned inputs): it forwards each alert,
// keyed by device, into the state group's loop topic.
//
// `drover state get DEVICE` and the process's GET /devices/{id} print the
// shadow as JSON.
package state
