// Package bench holds drover's end-to-end latency benchmark and the harness
// behind it.
//
// BenchmarkEndToEnd starts the embedded stack in-process (mochi MQTT broker,
// kfake Kafka, the schema registry, a throwaway PostgreSQL), runs the real
// bridge (bridge.DevStage) and the real sink (timescale.New, tuned for
// latency), publishes JSON sensor readings over MQTT with QoS 1 at a steady,
// paced rate from many devices, each payload carrying its publish time in
// nanoseconds, and measures for every message the time from publish until
// its row is visible in sensor_readings to another database session.
// Afterwards it steps the rate up to find the maximum sustainable rate on
// the machine.
//
// Visibility is observed from outside the sink: the harness adds an AFTER
// INSERT ... FOR EACH STATEMENT trigger (with a transition table) to
// sensor_readings that sends the benchmark sequence numbers of the inserted
// rows with pg_notify. PostgreSQL delivers a notification only after its
// transaction committed, so the moment a LISTENing session receives it is
// the moment the rows are visible, plus the delivery delay, which the
// harness measures with probe notifications and reports as the measurement
// error.
//
// The same harness runs a baseline: a bare MQTT subscriber that parses the
// JSON and COPYs the rows straight into an identical table with the same
// batching settings (no Kafka, no Avro, no schema checks), measured the
// same way.
//
// The report generator, `go run ./bench/report`, runs every stage benchmark
// of the repository and writes BENCHMARKS.md.
package bench
