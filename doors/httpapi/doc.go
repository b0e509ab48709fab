// Package httpapi is drover's HTTP door: devices POST readings to
//
//	POST /v1/devices/{tenant}/{device}/{channel}
//
// with the same channels and payload forms as over MQTT, one payload per
// request, or a batch (a JSON array of payloads with ?batch=true, or NDJSON
// with Content-Type application/x-ndjson) answered item by item. LoRaWAN
// network servers post their webhooks to /v1/lorawan/chirpstack and
// /v1/lorawan/tts (package ingest/lorawan).
//
// Devices authenticate with "Authorization: Bearer <secret>" (the secret
// the registry keeps a hash of) or a client certificate whose fingerprint
// the registry lists for the device. The answer is 202 only after the
// ingest core reports that Kafka acknowledged the records or their dead
// letter; 400 with the dead-letter reason in a JSON body; 401 and 403 for
// identity; 413 over the size limit; 503 with Retry-After when the bound
// on requests in flight is reached or Kafka does not acknowledge in time —
// there is no queue in front of Kafka. The server speaks HTTP/1.1 and
// HTTP/2 (h2 over TLS, h2c in the clear) and drains in-flight requests on
// shutdown.
//
// A Server is safe for concurrent use.
package httpapi
