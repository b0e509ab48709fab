// Package identity defines who a device is: a tenant id and a device id, the
// alphabet both must be written in, and the tenant-qualified key that joins
// them ("tenant/device") wherever one string must name a device: Kafka record
// keys, group-table keys, alert ids, registry keys.
//
// Every door takes identity from where the device connected (the MQTT topic,
// the URL, the certificate), never from the payload, and checks it with
// [Validate] before anything else; the registry checks it again. The alphabet
// is deliberately small (ASCII letters, digits and "._:-", 1 to 128 bytes,
// starting with a letter or digit): ids end up in MQTT topics, Kafka keys, SQL
// rows, file names and operators' terminals, and none of those should ever see
// a control character, a Unicode bidi override, a wildcard or a separator.
package identity
