// Package bridge is drover's front door: it subscribes to MQTT (shared
// subscriptions, QoS 1, persistent session), routes every message by its
// topic to a decoder (package ingest/decode), validates the records against
// their Avro schemas and produces them to Kafka (raw.* topics), or produces a
// dead letter to dlq.events with the stage and reason of the rejection.
//
// Delivery: MQTT acknowledgements are manual. A message's PUBACK is sent
// only after Kafka acknowledged every record decoded from it (or its dead
// letter), so a crash at any point loses nothing; the broker redelivers what
// was not acknowledged and deterministic event ids make the duplicates
// recognisable. In-flight work is bounded by the MQTT v5 Receive Maximum the
// bridge announces, so a slow or absent Kafka stops the flow at the broker,
// which keeps the backlog in the bridge's session.
//
// The downlink consumes commands.devices and publishes each command to
// devices/{tenant}/{device_id}/commands with QoS 1, committing the Kafka
// offset only after the broker's PUBACK; expired commands become dead
// letters.
//
// Command builds `drover bridge`; Bridge and Config are the library form
// used by tests and `drover dev`. README.md in this folder documents the
// payloads, the routes file, the dead-letter reasons and the flags.
package bridge
