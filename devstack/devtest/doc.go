// Package devtest is the shared test helper of the project: each function
// starts what a test needs (Kafka, schema registry, MQTT broker, Mosquitto,
// S3, PostgreSQL, or the whole dev stack) on free ports and registers
// t.Cleanup to stop it. Nothing is skipped: a missing binary (mosquitto,
// PostgreSQL) fails the test with the command that installs it.
//
// Packages that use Postgres should stop the shared cluster on exit:
//
//	func TestMain(m *testing.M) { devtest.Main(m) }
//
// Set DROVER_TEST_LOG=1 to see the components' logs on stderr.
package devtest
