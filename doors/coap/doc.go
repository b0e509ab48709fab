// Package coap is drover's CoAP door (RFC 7252): devices POST readings to
// /devices/{tenant}/{device}/{channel} over UDP, or over DTLS with a
// pre-shared key per device, as confirmable requests. The door answers 2.04
// Changed only after the ingest core reports that Kafka acknowledged the
// records (or their dead letter), 4.xx with the dead-letter reason as a
// JSON body when the payload is refused, and 5.03 Service Unavailable with
// Max-Age (the retry delay) when the core is overloaded or Kafka stalls.
//
// CoAP comes from github.com/plgd-dev/go-coap/v3, DTLS from
// github.com/pion/dtls/v3 (which go-coap uses): the maintained Go CoAP
// stack, with confirmable-message handling, deduplication of
// retransmissions, block-wise transfer and DTLS 1.2 with PSK cipher suites.
//
// With DTLS, the client's PSK identity is the device's key
// "tenant/device"; the door asks its KeyStore for the key (the registry's)
// and refuses a request whose path names another device (4.03). Plain UDP
// carries no identity: it is off unless Config.Insecure allows it (drover
// dev), and then the path's identity is only checked against the registry.
//
// A Server is safe for concurrent use.
package coap
