package devstack

import (
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/drover-iot/drover/devstack/devstage"
)

// Default ports of the embedded services, used by DefaultConfig.
const (
	DefaultMQTTPort     = 1883
	DefaultMQTTWSPort   = 8083 // MQTT over WebSockets, EMQX's and Mosquitto's usual port
	DefaultKafkaPort    = 9092
	DefaultRegistryPort = 8081
	DefaultS3Port       = 9000
)

// Defaults for the data directory, the S3 bucket and the database.
const (
	DefaultDataDir = ".drover"
	// DefaultBucket is created at start.
	DefaultBucket = "drover-media"
	// DatabaseName is the database created in the throwaway PostgreSQL.
	DatabaseName = "drover"
	// S3AccessKeyID, S3SecretAccessKey and S3Region are what WriteEnvFile
	// hands out for the embedded S3; it accepts any credentials.
	S3AccessKeyID     = devstage.S3AccessKeyID
	S3SecretAccessKey = devstage.S3SecretAccessKey
	S3Region          = devstage.S3Region
)

// Config configures Start. The zero value is usable: data in ".drover",
// every service on a free port, a throwaway PostgreSQL.
type Config struct {
	// DataDir holds all state: kafka/, registry.json, s3/, postgres/.
	// Default ".drover".
	DataDir string

	// Ports of the services on 127.0.0.1. 0 means any free port;
	// DefaultConfig sets the well-known ports (1883, 8083, 9092, 8081,
	// 9000). MQTTWSPort is MQTT over WebSockets on the same broker.
	//
	// A port that is taken (the machine's own Mosquitto on 1883, say) is
	// replaced by a free one and a warning names the service, the wanted and
	// the chosen port; this holds for ports set explicitly too, because a
	// dev stack that starts beats one that does not, and Endpoints and the
	// env file always carry the real ports. Set StrictPorts to fail instead.
	MQTTPort, MQTTWSPort, KafkaPort, RegistryPort, S3Port int
	// StrictPorts makes Start fail when a wanted port is taken.
	StrictPorts bool
	// ListenHost is the address Kafka, the registry, MQTT and S3 listen on
	// (and `drover dev` the stages' admin servers); default "127.0.0.1",
	// so nothing is reachable from other machines. "0.0.0.0" opens them to
	// the network: the embedded services have no authentication (only the
	// bridge's MQTT client ids are reserved). The throwaway PostgreSQL
	// trusts every local connection, so it listens on 127.0.0.1 whatever
	// this says.
	ListenHost string

	// DatabaseURL points at an external PostgreSQL; when set, no throwaway
	// cluster is started and Endpoints().DatabaseURL is this URL.
	DatabaseURL string
	// PostgresPort is the throwaway cluster's port; 0 (default) = free port.
	PostgresPort int
	// NoPostgres starts no database at all (Endpoints().DatabaseURL is "").
	NoPostgres bool

	// OnObjectCreated, if set, is called after the embedded S3 stored an
	// object (PUT object, copy, or completed multipart upload), with the
	// object's size, its ETag (hex MD5, unquoted), content type and user
	// metadata (x-amz-meta-* keys, as stored). It is called synchronously
	// before the S3 response completes, from the request's goroutine, so it
	// must be safe for concurrent use and should return quickly.
	OnObjectCreated func(bucket, key string, size int64, etag string, contentType string, meta map[string]string)

	// KafkaOpts are extra kfake options (after the stack's own: one broker,
	// DataDir, the port, the logger). Also used by RestartKafka.
	KafkaOpts []kfake.Opt

	// Logger receives the stack's logs (JSON in `drover dev`); nil discards.
	Logger *slog.Logger
}

// DefaultConfig is the configuration of `drover dev`: the well-known ports
// and data in ".drover".
func DefaultConfig() Config {
	return Config{
		DataDir:      DefaultDataDir,
		MQTTPort:     DefaultMQTTPort,
		MQTTWSPort:   DefaultMQTTWSPort,
		KafkaPort:    DefaultKafkaPort,
		RegistryPort: DefaultRegistryPort,
		S3Port:       DefaultS3Port,
	}
}
