// Package registry is drover's device registry: who may send data, as which
// tenant, with which credential.
//
// The source of truth is the compacted Kafka topic devices.registry (one
// Avro [schemas.RegistryRecord] per device, key "tenant/device_id" from
// [identity.Key], and one per tenant, key "tenant"; a tombstone deletes).
// Every stage that needs the registry keeps a [View]: restored from the
// topic at start (ready once it has read up to the end offsets it saw when
// it started) and updated live, with O(1) lookups by tenant and device, by
// certificate fingerprint and by alternative id (a LoRaWAN DevEUI), safe for
// concurrent use and cheap enough to call for every message. Subscribers
// learn of every change after the view is ready ([View.Subscribe]), so a
// broker adapter can disconnect a revoked device within seconds.
//
// [Store] writes the registry (add, suspend, activate, revoke, rotate,
// delete, import; tenants with their CA certificate) through Kafka and
// waits until its own view has applied each write, so a caller reads what
// it wrote. A device secret is stored only as a salted PBKDF2-SHA-512 hash
// ([SecretHash]) in the form Mosquitto's dynamic security plugin stores, and
// is shown to the caller once.
//
// [Auth] answers the questions every MQTT door asks — may this client
// connect (client id, username and password, or a client certificate), may
// it publish to this topic, subscribe to this filter — from the view and a
// fixed set of service principals (the bridge, tooling). The rule is the
// same everywhere ([DeviceACL]): a device publishes only under
// devices/{its tenant}/{its id}/# (a WildFi device also under
// wildfi/{its id}/#) and subscribes only to its own commands.
//
// Sub-packages adapt this to brokers and operators: registry/dynsec keeps
// Mosquitto's dynamic security plugin in step, registry/emqx serves EMQX 5's
// HTTP authentication and authorization, registry/api is the provisioning
// API, registry/service the `drover registry` process and registry/command
// the CLI. This package knows no flags.
package registry
