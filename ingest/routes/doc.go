// Package routes is the routing table of every door: which topic pattern
// (devices/{tenant}/{device}/sensor, wildfi/{device}/{kind}, ...) goes to
// which decoder and Kafka topic. It is the only place that knows topic
// prefixes: the MQTT bridge's subscriptions and sharding, the doors'
// device channels, dead-letter re-drive and the broker ACL patterns are
// all derived from a [Table], so a new route is one entry in routes.yaml.
package routes
