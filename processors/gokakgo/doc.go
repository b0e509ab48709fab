// Package gokakgo runs goka on franz-go: it implements the sarama
// interfaces goka consumes — the consumer group with its sessions and
// claims (sarama.ConsumerGroup, ConsumerGroupSession, ConsumerGroupClaim),
// the partition consumer goka recovers tables and runs views with
// (sarama.Consumer, PartitionConsumer) — and goka's TopicManager, on kgo
// clients. With groupkit's franz-go producer, a goka processor built with
// these builders runs no sarama client code: one Kafka client, one
// configuration, one set of SASL mechanisms, one metrics plugin for every
// drover stage. sarama's package is still linked, for its types: goka's
// interfaces are written in them.
//
// # Consumer group: sessions are eager rebalances
//
// goka expects sarama's model: Consume joins the group and runs one
// session (Setup, one ConsumeClaim per claimed partition, Cleanup, a final
// commit) and returns when the session ends, at a rebalance or when the
// context ends; goka then calls Consume again. kgo keeps the membership
// itself and reports the assignment through callbacks. The group uses
// kgo's RangeBalancer, an eager balancer like sarama's default: every
// rebalance first revokes everything. So:
//
//   - OnPartitionsAssigned hands the assignment (member id, generation) to
//     the waiting Consume, which starts a session with it: Setup (goka
//     recovers the group table there), then one ConsumeClaim goroutine per
//     partition and a poll loop feeding their channels.
//   - OnPartitionsRevoked (and OnPartitionsLost) end the session and wait
//     for it: the session context is cancelled, the poll loop stops, the
//     claims' channels close, every ConsumeClaim returns, Cleanup runs
//     (goka stops its partition processors; groupkit.WriteBehind flushes
//     the table there and only then releases its marks), and the marked
//     offsets are committed synchronously — inside the revoke callback, so
//     before the partitions can go to another member. Only then does kgo
//     rejoin. A lost assignment (session timed out, fenced) skips that
//     commit: it would be rejected.
//   - A revocation that races with a Consume picking up an assignment is
//     caught by an epoch counter: an assignment from before a revocation
//     never starts a session.
//   - Records polled but not yet handed to goka when a session ends are
//     dropped: they are not marked, so their offsets are not committed, and
//     whoever owns the partition next fetches them again from the committed
//     offset. Polling happens only inside a session, so records are never
//     polled while goka is between sessions.
//
// # Offsets
//
// goka marks an input offset (MarkOffset, offset of the next record) once
// every emit and table write of its callback is acknowledged. Marks are
// kept per partition (only forward; ResetOffset may go back) and
// committed by the session every CommitInterval (1 s, sarama's default),
// on Commit, and at the end of the session. kgo's own auto-commit is off:
// kgo would commit what it polled, not what goka finished, which would
// break the write-behind rule that a committed offset is never ahead of
// the changelog. A group without a committed offset starts at the oldest
// record, as drover's sarama configuration did.
//
// # Claims without a copy per record
//
// The poll loop turns each fetched partition batch into one
// []sarama.ConsumerMessage allocated for the whole batch and queues it for
// the partition's own pump goroutine, which sends pointers into it to
// goka's channel (so one slow partition does not hold up the others); keys
// and values are the fetch buffers' own slices (not copied), and headers
// are converted only when a record has any.
//
// drover's goka (third_party/goka, see its DROVER.md) skips the pump: a
// claim also offers MessageBatches, the same queued batches, and goka's
// ConsumeClaim hands each batch to the partition processor in one channel
// send instead of one send per record through the pump and ConsumeClaim.
// The pump starts feeding Messages only when a handler calls Messages
// (upstream goka, or any other sarama handler); a handler reads one or
// the other, never both.
//
// # Partition consumers (tables, views)
//
// One kgo client per goka consumer serves every ConsumePartition with
// kgo's direct partition consumption (AddConsumePartitions,
// RemoveConsumePartitions): one poll loop queues batches for each partition
// consumer's pump. The client's MetadataMinAge is 100 ms: goka adds a
// table's partitions one by one, each add asks for a metadata update, and
// kgo's default spacing of 5 s held every partition but the first back by
// that long. AsyncClose removes the partition from the client
// and closes the channels once the loop no longer sends to them; records
// of a partition that was removed and added again are never delivered out
// of order (a consumer drops any offset below the next one it expects).
// HighWaterMarks reports the high watermark of the last fetch.
//
// # Topic manager
//
// TopicManager implements goka.TopicManager with kadm: tables and streams
// are created when missing (partitions, replication and the configuration
// goka asks for), an existing topic's partition count is what goka checks,
// and GetOffset answers sarama's OffsetOldest/OffsetNewest with the
// partition's start and end offsets.
package gokakgo
