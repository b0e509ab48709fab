// Package smoke is drover's end-to-end smoke suite: it drives a running
// stack (the embedded one of `drover dev`, or a deployment) from outside,
// through its public endpoints only. It publishes every fixture of the
// simulator's catalogue over MQTT (QoS 1, MQTT v5, with unique tenant and
// device ids per run), a temperature series that must raise and resolve a
// fever alert and close a features window, a heartbeat for the offline
// rule, and an object into S3; then it checks within a deadline that Kafka
// (raw.*, dlq.events, features.events, alerts.events, state.latest), the
// schema registry and the database hold exactly what they must; then it
// checks the control channel (one command round trip and one shadow delta,
// with a device of its own) and prints a checklist (✓/✗/– per check).
//
// Run is the entry point; Command is `drover smoke`. A Run is safe to
// repeat against the same stack: every run uses fresh device ids and only
// looks at records and rows of its own devices.
package smoke
