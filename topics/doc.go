// Package topics owns drover's Kafka topics: their names (constants used by
// every stage), the catalogue of the DEAL-IoT reference stack (catalogue.yaml,
// embedded; see Default, Load and Parse), and the reconciler that compares a
// cluster with the catalogue (Diff) and makes it match (Apply).
//
// The reconciler only ever adds: it creates missing topics, raises partition
// counts and sets the configs the catalogue names. It never deletes a topic,
// removes partitions or changes replication (a partition reassignment); those
// differences are reported as drift. Topics the catalogue does not know are
// listed as unmanaged and left alone.
//
// Most topics carry Avro in the Confluent wire format (format avro, the
// default; SchemaTopics lists them). The processor groups' goka tables and
// loops are in the catalogue too, so production creates them with the
// right partitions, replication and compaction, but are marked format goka
// (Topic.Internal): their values use the group's own codec and have no
// registered schema.
//
// Replication in the catalogue is the production value; WithReplicationCap
// adapts it (and min.insync.replicas) to a smaller cluster, e.g. 1 for the
// single-broker dev stack.
//
// The Kafka ACLs of drover's stages are data too (acls.yaml, embedded; see
// DefaultACLs, LoadACLs and ParseACLs): one principal per stage with the
// topics it reads and writes, its groups and cluster operations, topic
// globs expanded against the catalogue into LITERAL ACLs. DiffACLs reports
// missing and extra ACLs, ApplyACLs creates the missing ones; neither ever
// deletes an ACL.
//
// Command returns the `drover topics` command (list, diff, apply, describe,
// acls).
package topics
