// Package sparkplug reads Sparkplug B (Eclipse Sparkplug 3.0) messages:
// topics spBv1.0/{group}/{NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH}/{edge}[/{device}]
// with protobuf payloads (package spb, generated from the Tahu schema).
//
// Sparkplug is stateful: a BIRTH certificate names every metric and may
// give it a numeric alias that later DATA messages carry instead of the
// name; every message of an edge node after its NBIRTH carries a sequence
// number 0-255 that grows by one; a DEATH certificate says the node or
// device went away. A [Session] keeps that state per edge node and turns
// each message into resolved metrics ([Message]): names come from the
// birth certificate's aliases, a sequence gap is reported ([Gap]), deaths
// report the devices that went offline, and a DATA message before its
// BIRTH (or after its DEATH) is refused with [ReasonNoBirth] rather than
// guessed at, so the door writes it as a dead letter and may ask the edge
// node to rebirth ([RebirthRequest]).
//
// Identity: the Sparkplug group is the tenant; the edge node id is the
// device id of node messages, and "{edge}:{device}" that of device
// messages (Sparkplug device ids are only unique within their edge node).
// Both must be in the identity alphabet (package identity).
//
// A Session is safe for concurrent use, but the messages of one edge node
// must reach it in the order the broker delivered them: a door shards by
// group and edge node, not by device.
package sparkplug
