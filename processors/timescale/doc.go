// Package timescale is drover's database sink: a franz-go consumer group that
// writes every record of raw.sensor, raw.gps, raw.*.meta, features.events,
// alerts.events, state.latest and dlq.events into TimescaleDB (or plain
// PostgreSQL), exactly once per natural key.
//
// Each batch is written in one transaction: the rows are copied (COPY) into
// temporary staging tables created in that transaction (ON COMMIT DROP, so
// nothing is kept on a server connection: PgBouncer's transaction pooling
// works), then moved into the target tables
// with INSERT ... SELECT ... ON CONFLICT on the tables' natural keys (DO
// NOTHING for events, a guarded upsert for alerts and device_state); as a
// fast path, insert-only tables first try a COPY straight into the table
// and, when a key exists, write the batch again with that table staged. A record
// that meets its key holding other content becomes a dead letter in the
// same transaction (conflict.go). Kafka
// offsets are committed only after that transaction commits, so a crash
// anywhere replays at most the last batch, and the natural keys make the
// replay write nothing twice.
//
// The schema is created by ordered, versioned, embedded migrations
// (migrations/*.sql, applied under a table lock and recorded in
// schema_migrations). The sink takes no lock a read-only role can take or
// block for long (locks.go). They render one of two paths: TimescaleDB
// (hypertables, compression, retention and continuous aggregates) when the
// extension is usable, or plain PostgreSQL (daily range partitions created
// ahead and dropped by retention, BRIN indexes, rollup tables the sink keeps
// up to date incrementally). Both paths expose the same tables and rollup
// names; see README.md for the analysts' guide.
package timescale
