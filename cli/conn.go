package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
)

// Default endpoints serve the embedded stack of `drover dev` on its default
// ports. `drover dev` writes the real ones (after port fallback) to its env
// file, which every other command reads when present.
const (
	DefaultKafkaBrokers      = "127.0.0.1:9092"
	DefaultSchemaRegistryURL = "http://127.0.0.1:8081"
	DefaultMQTTURL           = "tcp://127.0.0.1:1883"
	DefaultS3Endpoint        = "http://127.0.0.1:9000"
)

// Conn holds the connection settings shared by drover's commands. Each
// command registers only the flag groups it uses; the values come from flags,
// then DROVER_* environment variables, then the dev env file, then defaults.
type Conn struct {
	KafkaBrokers       []string
	KafkaTLS           bool
	KafkaTLSCA         string
	KafkaTLSCert       string
	KafkaTLSKey        string
	KafkaSASLMechanism string
	KafkaSASLUser      string
	KafkaSASLPassFile  string
	KafkaSASLTokenFile string

	SchemaRegistryURL      string
	SchemaRegistryUser     string
	SchemaRegistryPassFile string
	SchemaRegistryTLSCA    string
	SchemaRegistryTLSCert  string
	SchemaRegistryTLSKey   string

	MQTTURL string

	S3Endpoint  string
	S3Region    string
	S3PathStyle bool

	DatabaseURL string

	// Log is the process logger, set by the root command before any RunE.
	Log *slog.Logger

	// checking is set under --check-config: Kafka refuses to connect.
	checking bool
}

// Logger returns c.Log, or slog.Default() before the root command set it.
func (c *Conn) Logger() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

// AddKafkaFlags registers --kafka-brokers and the Kafka TLS/SASL flags.
func (c *Conn) AddKafkaFlags(fs *pflag.FlagSet) {
	if fs.Lookup("kafka-brokers") != nil {
		return
	}
	fs.StringSliceVar(&c.KafkaBrokers, "kafka-brokers", []string{DefaultKafkaBrokers}, "Kafka bootstrap brokers, comma separated")
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", false, "connect to Kafka over TLS")
	fs.StringVar(&c.KafkaTLSCA, "kafka-tls-ca", "", "PEM file of CAs to trust for Kafka TLS (implies --kafka-tls)")
	fs.StringVar(&c.KafkaTLSCert, "kafka-tls-cert", "", "PEM client certificate for Kafka mTLS (implies --kafka-tls)")
	fs.StringVar(&c.KafkaTLSKey, "kafka-tls-key", "", "PEM client key for Kafka mTLS")
	fs.StringVar(&c.KafkaSASLMechanism, "kafka-sasl-mechanism", "", "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM (empty = none)")
	fs.StringVar(&c.KafkaSASLUser, "kafka-sasl-user", "", "Kafka SASL user name (PLAIN, SCRAM)")
	fs.StringVar(&c.KafkaSASLPassFile, "kafka-sasl-password-file", "", "file holding the Kafka SASL password (PLAIN, SCRAM; a mounted secret)")
	fs.StringVar(&c.KafkaSASLTokenFile, "kafka-sasl-token-file", "", "file holding the OAUTHBEARER token, re-read when it changes")
}

// AddRegistryFlags registers --schema-registry-url and its credentials.
func (c *Conn) AddRegistryFlags(fs *pflag.FlagSet) {
	if fs.Lookup("schema-registry-url") != nil {
		return
	}
	fs.StringVar(&c.SchemaRegistryURL, "schema-registry-url", DefaultSchemaRegistryURL, "Confluent-compatible schema registry URL")
	fs.StringVar(&c.SchemaRegistryUser, "schema-registry-user", "", "schema registry basic-auth user")
	fs.StringVar(&c.SchemaRegistryPassFile, "schema-registry-password-file", "", "file holding the schema registry basic-auth password")
	fs.StringVar(&c.SchemaRegistryTLSCA, "schema-registry-tls-ca", "", "PEM file of CAs to trust for an https:// schema registry (default: system roots)")
	fs.StringVar(&c.SchemaRegistryTLSCert, "schema-registry-tls-cert", "", "PEM client certificate for schema registry mTLS")
	fs.StringVar(&c.SchemaRegistryTLSKey, "schema-registry-tls-key", "", "PEM client key for schema registry mTLS")
}

// AddMQTTFlags registers --mqtt-url.
func (c *Conn) AddMQTTFlags(fs *pflag.FlagSet) {
	if fs.Lookup("mqtt-url") != nil {
		return
	}
	fs.StringVar(&c.MQTTURL, "mqtt-url", DefaultMQTTURL, "MQTT broker URL (tcp://, ssl://, mqtts://, ws://)")
}

// AddS3Flags registers --s3-endpoint, --s3-region and --s3-path-style.
func (c *Conn) AddS3Flags(fs *pflag.FlagSet) {
	if fs.Lookup("s3-endpoint") != nil {
		return
	}
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", DefaultS3Endpoint, "S3 endpoint URL (empty = AWS)")
	fs.StringVar(&c.S3Region, "s3-region", "us-east-1", "S3 region")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", true, "use path-style S3 addressing (MinIO, SeaweedFS, embedded S3)")
}

// AddDatabaseFlags registers --database-url.
func (c *Conn) AddDatabaseFlags(fs *pflag.FlagSet) {
	if fs.Lookup("database-url") != nil {
		return
	}
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL/TimescaleDB URL, e.g. postgres://user@host:5432/drover")
}

// KafkaOpts returns the franz-go options for the configured brokers, TLS and
// SASL. A bad file or mechanism is a usage error naming the flag.
func (c *Conn) KafkaOpts() ([]kgo.Opt, error) {
	var brokers []string
	for _, b := range c.KafkaBrokers {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return nil, Usagef("%s: no broker given", FlagRef("kafka-brokers"))
	}
	// A broker that accepts connections but never answers must not hang a
	// command: bound the dial and the handshake (callers may override).
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DialTimeout(10 * time.Second)}
	cfg, err := c.KafkaTLSConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	mech, err := c.KafkaSASL()
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// Kafka returns a franz-go client for the configured cluster; extra options
// are appended (and so override the connection options).
func (c *Conn) Kafka(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.KafkaOpts()
	if err != nil {
		return nil, err
	}
	if c.checking {
		// --check-config never connects: a command that gets here has
		// validated what it validates before connecting.
		return nil, ErrConfigOK
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", strings.Join(c.KafkaBrokers, ","), err)
	}
	return cl, nil
}

// Admin returns a kadm client and a function that closes it.
func (c *Conn) Admin(extra ...kgo.Opt) (*kadm.Client, func(), error) {
	cl, err := c.Kafka(extra...)
	if err != nil {
		return nil, nil, err
	}
	adm := kadm.NewClient(cl)
	return adm, adm.Close, nil
}

// PingKafka checks within timeout that a broker answers, so an unreachable
// cluster is a one-line error naming the brokers rather than a hang.
func (c *Conn) PingKafka(ctx context.Context, cl *kgo.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return fmt.Errorf("kafka unreachable at %s (no answer within %s)", strings.Join(c.KafkaBrokers, ","), timeout)
		}
		return fmt.Errorf("kafka unreachable at %s: %w", strings.Join(c.KafkaBrokers, ","), err)
	}
	return nil
}

// Registry returns a schema registry client.
func (c *Conn) Registry() (*sr.Client, error) {
	if c.SchemaRegistryURL == "" {
		return nil, Usagef("--schema-registry-url: empty")
	}
	opts := []sr.ClientOpt{sr.URLs(c.SchemaRegistryURL)}
	if c.SchemaRegistryTLSCA != "" || c.SchemaRegistryTLSCert != "" || c.SchemaRegistryTLSKey != "" {
		cfg, err := tlsConfig("schema-registry-tls", c.SchemaRegistryTLSCA, c.SchemaRegistryTLSCert, c.SchemaRegistryTLSKey)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sr.DialTLSConfig(cfg))
	}
	if c.SchemaRegistryUser != "" {
		pass, err := readSecret("schema-registry-password-file", c.SchemaRegistryPassFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sr.BasicAuth(c.SchemaRegistryUser, pass))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, Usagef("--schema-registry-url %q: %w", c.SchemaRegistryURL, err)
	}
	return cl, nil
}

func readSecret(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", Usagef("%s: %w", FlagRef(flag), err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// TLSConfig builds a client TLS config from optional PEM files; flag prefixes
// the flag names in errors (e.g. "mqtt-tls" → --mqtt-tls-ca).
func TLSConfig(flag, caFile, certFile, keyFile string) (*tls.Config, error) {
	return tlsConfig(flag, caFile, certFile, keyFile)
}

func tlsConfig(flag, caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, Usagef("%s: %w", FlagRef(flag+"-ca"), err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, Usagef("%s %s: no PEM certificate found", FlagRef(flag+"-ca"), caFile)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, Usagef("--%s-cert and --%s-key go together", flag, flag)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, Usagef("%s/%s: %w", FlagRef(flag+"-cert"), FlagRef(flag+"-key"), err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// OffsetsAfter returns, for every partition of topics, the first offset
// whose record timestamp is at or after t (the end offset where there is
// none), like kadm's ListOffsetsAfterMilli. Kafka timestamps count
// milliseconds from the Unix epoch and negative requests are special
// (-1 latest, -2 earliest, ...), so a t before the epoch, where every
// record lies at or after t, is answered with the log start offsets rather
// than passed on: 1969-12-31T23:59:59.999Z must not mean "latest".
func OffsetsAfter(ctx context.Context, adm *kadm.Client, t time.Time, topics ...string) (kadm.ListedOffsets, error) {
	if t.Before(time.UnixMilli(0)) {
		return adm.ListStartOffsets(ctx, topics...)
	}
	return adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topics...)
}
