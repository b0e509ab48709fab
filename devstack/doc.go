// Package devstack runs drover's embedded stack in-process, for `drover dev`
// and for the tests of every package: Kafka (kfake, persisted under the data
// directory), a Confluent-compatible schema registry (srfake, made persistent
// and compatibility-enforcing), an MQTT broker (mochi-mqtt, v5 and 3.1.1,
// shared subscriptions), S3 (gofakes3, objects on disk) and a throwaway
// PostgreSQL cluster (package devstack/postgres).
//
// Start brings everything up; Endpoints tells clients where; WriteEnvFile
// hands the same to other processes as DROVER_* variables. Everything
// listens on 127.0.0.1. A wanted port that is taken is replaced by a free
// one, with a warning naming the service (see Config).
//
// Tests should use package devstack/devtest, which starts pieces on free
// ports and cleans up after the test.
package devstack
