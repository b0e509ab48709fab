// Package alerts is the alerts goka group: it evaluates alert rules against
// the raw.sensor and raw.gps streams and writes alert lifecycle events
// (firing, resolved) to alerts.events.
//
// Rules are data (see Rule and the embedded default rule set, DefaultRules):
// thresholds with a duration, rates of change, geofences, low battery and
// device offline. Each device's rule state lives in the group table (key =
// device id), so a restart or rebalance resumes where the last instance
// stopped and no alert fires twice. Offline detection runs on the wall
// clock: a sweep over each owned partition's local table emits a tick per
// overdue device into the group's loop topic (see README.md).
//
// Build the processor with NewProcessor (or just its graph with Graph, e.g.
// for goka's tester) and run it with Run or (*Processor).Run.
package alerts
