// Package schemas holds drover's Avro schemas and everything needed to use
// them on the wire.
//
// The schemas live in avsc/*.avsc (namespace io.drover) and are embedded in
// the binary. Every topic drover writes has exactly one schema, registered in
// a Confluent-compatible schema registry under the subject "<topic>-value"
// (see [Subject]); the four raw media metadata topics share [MediaObject] and
// the governance, data-act, security, resilience and compliance topics share
// [Envelope]. [ForTopic], [Source] and [Topics] expose the table.
//
// The Go types in types.go mirror the records field by field (avro struct
// tags; time.Time for timestamp-millis, pointers for nullable fields).
//
// [Serde] encodes and decodes the Confluent wire format (magic byte 0, a
// 4-byte big-endian schema id, then the Avro body). It caches schema ids and
// writer schemas, so after warm-up the hot path makes no registry requests,
// and it resolves data written with an older schema version into the current
// Go types (Avro schema resolution). [SensorReading] and [GPSFix], one per
// reading on the ingest path, are encoded by hand-written code that writes
// hamba/avro's bytes (fastavro.go; a differential test and fuzz test hold
// it to them), whenever the topic's schema has exactly their embedded
// shape; every other value and schema goes through hamba/avro.
//
// [Register] and [Check] keep the registry in step with the embedded
// schemas. Both check BACKWARD compatibility client side before anything is
// written, because the embedded registry of `drover dev` (srfake) does not;
// an incompatible change is reported with the subject and the field that
// breaks it. [Command] is the `drover schemas` command tree.
package schemas
