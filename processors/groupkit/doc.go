// Package groupkit is the goka plumbing shared by drover's processor groups
// (processors/features, processors/state, processors/alerts): goka's
// Kafka clients built from the command line's Kafka settings (TLS, SASL) —
// franz-go throughout, the consumers from processors/gokakgo and a franz-go
// producer, with sarama kept only as a fallback — a partition hasher that matches Kafka's
// default partitioner, goka codecs around the shared Avro serde and for
// group-table state (versioned raw Avro, or JSON) with an identity cache
// that saves goka's per-record state decode (CachedCodec), an in-memory
// table storage without goka's quadratic insert (MemoryBuilder), the dead
// letters a group writes for input it cannot decode (NewDeadLetter), an
// injectable clock, and the wall-clock tick that drives timers in groups
// that have none.
//
// # Partitioning
//
// goka partitions by its own hasher (FNV-1a by default) while the bridge
// and every franz-go producer use Kafka's default (murmur2). A group table
// written with FNV for input partitioned with murmur2 stores keys in the
// wrong partition and loses state on recovery; KafkaHasher makes goka agree
// with Kafka, and Options always installs it.
//
// # Ticks
//
// goka has no timers. Run runs a processor and, on a fixed interval, calls
// Processor.VisitAll with the clock's time: goka runs the group's visitor
// callback (TickVisitor) once for every key of the group table, on the
// partition's own goroutine, serialised with that partition's messages, so
// a tick can close windows or mark devices offline and emit the result even
// when no message arrives.
package groupkit
