// Package chaos holds drover's chaos test (TestIntegrationChaos: `make
// test` runs it in its default size, `make chaos` in any size): the embedded
// infrastructure (devstack.Start) runs in the test process, the pipeline
// stages run as separate processes (two bridges, the processors, the
// sink), a publisher sends N messages (every tenth invalid) at a steady
// rate, and a seeded schedule meanwhile kills stages with SIGKILL and
// restarts them, and restarts Kafka and PostgreSQL. Afterwards the
// database must hold every valid message exactly once (count and content
// checksum), the dead letters and dlq.events every invalid one, the hourly
// rollup (refreshed every 2 s throughout) the count, minimum, maximum and sum
// of every device's valid readings per hour, and the fever alert of the load
// must have fired once. The processors also run two stream apps, each its
// own goka group: a filter of the run's readings (app_records must hold
// every valid reading exactly once, with its value) and a join of GPS
// fixes with readings of two devices that get about 240 readings spread
// over the load, whatever its size, and a fix after every fifth
// (app_records must hold every fix exactly once, with the reading nearest
// in time, computed from what was sent: the join's buffer holds every
// reading of a device, and a final reading per device, published once the
// database holds the load, moves its watermark past every fix).
//
// DROVER_CHAOS_N (default 3000) sizes the load, DROVER_CHAOS_SECONDS
// (default 30) its duration, DROVER_CHAOS_SEED (default: the clock) replays
// a schedule; the seed is logged first. DROVER_CHAOS_STAGES picks the
// stages the schedule kills (default all four), DROVER_CHAOS_RESTARTS the
// infrastructure it restarts (default "kafka,postgres", each once per
// started minute of the load; "none"). A stage that does not stop within
// 60 s of SIGTERM at the end is logged with its goroutine dump (a failure
// with DROVER_CHAOS_STRICT_STOP=1). With DROVER_TEST_DATABASE_URL (a
// TimescaleDB, say) the stack uses a fresh database (or schema) on that
// server instead of the embedded PostgreSQL, and restarts Kafka only.
package chaos
