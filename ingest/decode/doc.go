// Package decode turns one MQTT payload into normalised drover records
// (schemas.SensorReading, schemas.GPSFix, schemas.MediaObject) or into an
// *Error that says, with a machine-readable Reason and a Stage, why the
// payload cannot be accepted.
//
// Decoders are pure functions of their Input: the same payload on the same
// topic received at the same time yields the same records with the same
// deterministic event ids, so a redelivered MQTT message produces
// recognisable duplicates. Identity (tenant and device) comes from the MQTT
// topic and is passed in; a payload that names another device is rejected
// with ReasonDeviceMismatch.
//
// Accepted forms (see bridge/README.md for examples): JSON sensor objects
// (one metric, or a "measurements" object), SenML packs (RFC 8428), GPS
// fixes, media object metadata, heartbeats, device events (one object or
// an array; metric "event.<name>"), and WildFi collar JSON.
// Validation (finite numbers, coordinate ranges, times in the years
// 0001-9999 and the ts window, printable metric names, the size limit, no
// two records of one message that the sink would store as one row) is
// applied by Decode after decoding. Payloads are refused rather than
// guessed at: a key given twice (duplicate_key), a number that overflows or
// underflows, a device id outside the identity alphabet (package identity)
// are dead letters, and every rejection message is printable (Escape).
//
// Everything in this package is safe for concurrent use.
package decode
