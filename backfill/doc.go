// Package backfill turns S3 media objects into raw.{kind}.meta records: the
// bounded backfill job (`drover backfill media`), which lists a time window
// of objects and publishes their metadata with replayed=true, and the live
// media stage (`drover media`), which maps S3 ObjectCreated notifications
// from media.object.events to the same records with replayed=false.
//
// Both paths share one Mapping (key layout, extension → kind, per-bucket
// rules) and one record builder, so a live record and its replay have the
// same Kafka key (device id), the same event_id (from bucket, key and ETag)
// and the same fields. Objects that cannot be mapped are never guessed:
// they become dead letters on dlq.events with a reason.
//
// The DLQ tools, consumer replay and the scheduler live in the
// subpackages dlq, replay and schedule.
package backfill
