// Package ingest is the ingest contract below every door (MQTT bridge,
// HTTP, CoAP, LoRaWAN webhooks, Sparkplug B): the [Message] a door hands
// over, and the [Outcome] every door answers with, so that a refused
// payload gets the same dead-letter reason, whatever door it came through.
//
// A door calls its core's Ingest(ctx, Message) and answers its client from
// [Classify] of the result: nil only once Kafka acknowledged the records
// or their dead letter; a *decode.Error when the payload was refused (its
// dead letter written); registry.ErrUnknownDevice or ErrDeviceInactive for
// identity; [ErrUnavailable] when the door should tell the client to retry.
//
// The MQTT bridge, which acknowledges asynchronously (a PUBACK in the
// Kafka produce callback, never blocking a worker), routes its topic
// itself and calls [Core.Prepare] (registry check, decode, validate,
// encode; Sparkplug B through the core's session), produces the records
// and writes refusals with [Core.DeadLetter]: the same path as Ingest's,
// short of producing.
//
// The packages below this one read the payload families that are not
// plain JSON on a device topic: sparkplug (Sparkplug B protobuf) and
// lorawan (network servers' webhooks).
package ingest
