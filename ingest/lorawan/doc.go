// Package lorawan reads the webhooks of LoRaWAN network servers: ChirpStack
// v4's HTTP integration (POST ...?event=up|join|status, JSON encoding) and
// The Things Stack v3's webhooks (uplink message and join-accept JSON).
//
// A parsed [Event] names its device by DevEUI only: the door resolves it to
// a tenant and device id through the registry ([Resolve]: the device's
// alternative id of kind registry.AltDevEUI), never through the network
// server's application or tenant names. [Records] turns an uplink into
// raw.sensor readings (each numeric leaf of the decoded payload — ChirpStack
// "object", TTS "decoded_payload" — plus RSSI, SNR, frame counter and
// gateway count of its own) and raw.gps fixes (a decoded latitude and
// longitude), and a join or status event into readings too.
//
// The same frame can reach drover twice — through two network servers
// (roaming), two webhooks or a retried delivery — each copy with its own
// gateways' metadata and receive time. [Dedup] remembers the frames it saw
// (DevEUI, DevAddr, frame counter, port, payload) for a while, so a repeat
// becomes no record at all, and event ids derive from the frame, not from
// the webhook body, so a repeat that slips past (another replica, a
// restart) carries the same ids.
//
// Everything in this package is safe for concurrent use.
package lorawan
