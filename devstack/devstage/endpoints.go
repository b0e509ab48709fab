package devstage

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/drover-iot/drover/cli"
)

// Endpoints are where clients reach the stack's services.
type Endpoints struct {
	MQTTURL           string // tcp://127.0.0.1:PORT
	MQTTWSURL         string // ws://127.0.0.1:PORT/mqtt: MQTT over WebSockets on the same broker
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
	// MQTTToolsUsername and MQTTToolsPasswordFile are the tooling
	// principal's, once the broker enforces the device registry
	// (EnforceRegistry); "" before.
	MQTTToolsUsername     string
	MQTTToolsPasswordFile string
	// Admin maps each running `drover dev` stage to the base URL of its
	// admin server (/healthz, /readyz, /metrics); set by `drover dev`.
	Admin map[string]string
	// Extra are env file lines the stages add (Stage.Env), after the rest.
	Extra [][2]string
	// DataDir is the stack's absolute data directory (not in Env).
	DataDir string
}

// Env returns the endpoints as environment variables, in a fixed order:
// DROVER_MQTT_URL, DROVER_MQTT_WS_URL (left out when empty), DROVER_KAFKA_BROKERS, DROVER_SCHEMA_REGISTRY_URL,
// DROVER_S3_ENDPOINT, DROVER_S3_BUCKET, DROVER_REPLICATION_CAP, DROVER_DATABASE_URL (left out when
// empty), DROVER_MQTT_USERNAME and DROVER_MQTT_PASSWORD_FILE (the bridge's
// credentials, so `drover bridge` may use its reserved client id; left out
// when empty), DROVER_DEV_MQTT_TOOLS_USERNAME and
// DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE (the tooling principal, once the
// broker enforces the registry), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, then per
// stage in Admin (sorted by name) DROVER_DEV_<STAGE>_HEALTHZ and
// DROVER_DEV_<STAGE>_READYZ, its health URLs, then Extra.
func (e Endpoints) Env() [][2]string {
	env := [][2]string{{"DROVER_MQTT_URL", e.MQTTURL}}
	if e.MQTTWSURL != "" {
		env = append(env, [2]string{"DROVER_MQTT_WS_URL", e.MQTTWSURL})
	}
	env = append(env, [][2]string{
		{"DROVER_KAFKA_BROKERS", e.KafkaBrokers},
		{"DROVER_SCHEMA_REGISTRY_URL", e.SchemaRegistryURL},
		{"DROVER_S3_ENDPOINT", e.S3Endpoint},
		{"DROVER_S3_BUCKET", e.S3Bucket},
		// The embedded Kafka has one broker: cap the catalogue's replication.
		{"DROVER_REPLICATION_CAP", "1"},
	}...)
	if e.DatabaseURL != "" {
		env = append(env, [2]string{"DROVER_DATABASE_URL", e.DatabaseURL})
	}
	if e.MQTTUsername != "" {
		env = append(env, [2]string{"DROVER_MQTT_USERNAME", e.MQTTUsername},
			[2]string{"DROVER_MQTT_PASSWORD_FILE", e.MQTTPasswordFile})
	}
	if e.MQTTToolsUsername != "" {
		env = append(env, [2]string{"DROVER_DEV_MQTT_TOOLS_USERNAME", e.MQTTToolsUsername},
			[2]string{"DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE", e.MQTTToolsPasswordFile})
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
	return append(env, e.Extra...)
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
	if err := WriteFileAtomic(path, b.Bytes(), 0o644); err != nil {
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

// BridgePrincipal is the bridge's MQTT user name on the embedded broker,
// and the prefix of every bridge client id: only this principal may use
// client ids with this prefix.
const BridgePrincipal = "drover-bridge"

// WriteFileAtomic writes data to a temporary file next to path and renames
// it over path, so readers see the old or the new content, never a part.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// S3AccessKeyID, S3SecretAccessKey and S3Region are what WriteEnvFile
// hands out for the embedded S3; it accepts any credentials.
const (
	S3AccessKeyID     = "drover"
	S3SecretAccessKey = "drover-secret"
	S3Region          = "us-east-1"
)
