package devstack

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/drover-iot/drover/cli"
)

// Endpoints are where clients reach the stack's services.
type Endpoints struct {
	MQTTURL           string // tcp://127.0.0.1:PORT
	KafkaBrokers      string // 127.0.0.1:PORT (comma-separated if several)
	SchemaRegistryURL string // http://127.0.0.1:PORT
	S3Endpoint        string // http://127.0.0.1:PORT (path-style addressing)
	S3Bucket          string // the default bucket, DefaultBucket
	DatabaseURL       string // postgres://...; "" without a database
	// MQTTUsername and MQTTPasswordFile are the credentials of the bridge
	// principal, the only one that may use client ids starting with
	// BridgePrincipal ("" when the broker reserves none).
	MQTTUsername     string
	MQTTPasswordFile string
	// Admin maps each running `drover dev` stage to the base URL of its
	// admin server (/healthz, /readyz, /metrics); set by `drover dev`.
	Admin map[string]string
}

// Env returns the endpoints as environment variables, in a fixed order:
// DROVER_MQTT_URL, DROVER_KAFKA_BROKERS, DROVER_SCHEMA_REGISTRY_URL,
// DROVER_S3_ENDPOINT, DROVER_S3_BUCKET, DROVER_REPLICATION_CAP, DROVER_DATABASE_URL (left out when
// empty), DROVER_MQTT_USERNAME and DROVER_MQTT_PASSWORD_FILE (the bridge's
// credentials, so `drover bridge` may use its reserved client id; left out
// when empty), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, then per
// stage in Admin (sorted by name) DROVER_DEV_<STAGE>_HEALTHZ and
// DROVER_DEV_<STAGE>_READYZ, its health URLs.
func (e Endpoints) Env() [][2]string {
	env := [][2]string{
		{"DROVER_MQTT_URL", e.MQTTURL},
		{"DROVER_KAFKA_BROKERS", e.KafkaBrokers},
		{"DROVER_SCHEMA_REGISTRY_URL", e.SchemaRegistryURL},
		{"DROVER_S3_ENDPOINT", e.S3Endpoint},
		{"DROVER_S3_BUCKET", e.S3Bucket},
		// The embedded Kafka has one broker: cap the catalogue's replication.
		{"DROVER_REPLICATION_CAP", "1"},
	}
	if e.DatabaseURL != "" {
		env = append(env, [2]string{"DROVER_DATABASE_URL", e.DatabaseURL})
	}
	if e.MQTTUsername != "" {
		env = append(env, [2]string{"DROVER_MQTT_USERNAME", e.MQTTUsername},
			[2]string{"DROVER_MQTT_PASSWORD_FILE", e.MQTTPasswordFile})
	}
	env = append(env,
		[2]string{"AWS_ACCESS_KEY_ID", S3AccessKeyID},
		[2]string{"AWS_SECRET_ACCESS_KEY", S3SecretAccessKey},
		[2]string{"AWS_REGION", S3Region},
	)
	for _, name := range slices.Sorted(maps.Keys(e.Admin)) {
		key := "DROVER_DEV_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
		env = append(env, [2]string{key + "_HEALTHZ", e.Admin[name] + "/healthz"},
			[2]string{key + "_READYZ", e.Admin[name] + "/readyz"})
	}
	return env
}

// WriteEnvFile writes Env as KEY=VALUE lines (after one comment line) to
// path, atomically: a temporary file in the same directory renamed over
// path. The file can be sourced by a shell or used as a compose env_file.
func (e Endpoints) WriteEnvFile(path string) error {
	var b bytes.Buffer
	b.WriteString("# drover dev: endpoints of the embedded stack\n")
	for _, kv := range e.Env() {
		fmt.Fprintf(&b, "%s=%s\n", kv[0], kv[1])
	}
	if err := writeFileAtomic(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	return nil
}

// ReadEnvFile reads KEY=VALUE lines as written by WriteEnvFile, with the
// parser every drover command uses for --dev-env (cli.ParseEnv): blank
// lines and # comments skipped, an "export " prefix allowed, a value in
// matching quotes unquoted; errors name the file and line.
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	env, err := cli.ParseEnv(data, path)
	if err != nil {
		return nil, fmt.Errorf("read env file %w", err)
	}
	return env, nil
}
