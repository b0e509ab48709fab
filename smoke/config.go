package smoke

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/drover-iot/drover/devstack/devstage"
)

// Defaults of Config.
const (
	DefaultTimeout = 3 * time.Minute
	DefaultTenant  = "smoke"
	DefaultBucket  = "drover-media"
)

// ErrMissingEnv is returned (wrapped in an *EnvError) when the env file
// lacks a variable the smoke suite needs.
var ErrMissingEnv = errors.New("missing variable")

// EnvError names the env file and the variables that are missing or bad.
type EnvError struct {
	File    string
	Missing []string // variable names
	Err     error
}

func (e *EnvError) Error() string {
	if len(e.Missing) > 0 {
		return fmt.Sprintf("env file %s: %v: %s", e.File, e.Err, strings.Join(e.Missing, ", "))
	}
	return fmt.Sprintf("env file %s: %v", e.File, e.Err)
}

func (e *EnvError) Unwrap() error { return e.Err }

// Config says where the stack is and how long to wait for it.
type Config struct {
	MQTTURL           string // DROVER_MQTT_URL
	KafkaBrokers      []string
	SchemaRegistryURL string // DROVER_SCHEMA_REGISTRY_URL
	S3Endpoint        string // DROVER_S3_ENDPOINT
	S3Bucket          string // DROVER_S3_BUCKET (default DefaultBucket)
	S3Region          string // AWS_REGION (default us-east-1)
	S3AccessKey       string // AWS_ACCESS_KEY_ID
	S3SecretKey       string // AWS_SECRET_ACCESS_KEY
	DatabaseURL       string // DROVER_DATABASE_URL
	// HTTPURL is the HTTP door (DROVER_HTTP_URL, optional): a reading is
	// posted through it when set.
	HTTPURL string
	// CoAPURL is the CoAP door (DROVER_COAP_URL, coap://HOST:PORT,
	// optional): a reading is posted through it when set.
	CoAPURL string
	// LoRaWANToken is the HTTP door's LoRaWAN webhook token (read from the
	// file DROVER_DEV_LORAWAN_TOKEN_FILE, optional): a ChirpStack uplink is
	// posted to its webhook when set, with HTTPURL.
	LoRaWANToken string
	// MQTTUser and MQTTPassword authenticate the run's MQTT client:
	// drover dev's tooling principal (DROVER_DEV_MQTT_TOOLS_USERNAME and
	// the file DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE), "" for an open broker.
	MQTTUser, MQTTPassword string

	// Tenant is the tenant of the run's devices (default DefaultTenant).
	Tenant string
	// RunID makes the device ids unique (default: derived from the clock).
	RunID string
	// Timeout bounds the whole run (default DefaultTimeout).
	Timeout time.Duration
	// OfflineAfter is the stack's offline-rule threshold. The offline check
	// runs only when it is set (> 0) and at most MaxOfflineAfter: the
	// default rule (30 min) is too long for a smoke run.
	OfflineAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// MaxOfflineAfter is the longest offline threshold the smoke suite waits for.
const MaxOfflineAfter = 5 * time.Minute

// requiredEnv are the variables a smoke run cannot do without.
var requiredEnv = []string{
	"DROVER_MQTT_URL", "DROVER_KAFKA_BROKERS", "DROVER_SCHEMA_REGISTRY_URL",
	"DROVER_S3_ENDPOINT", "DROVER_DATABASE_URL",
}

// LoadEnvFile reads an env file as `drover dev` writes it (KEY=VALUE lines)
// into a Config. Every variable of requiredEnv must be present and
// non-empty; the error names the file and each missing one.
func LoadEnvFile(path string) (Config, error) {
	env, err := readEnvFile(path)
	if err != nil {
		return Config{}, &EnvError{File: path, Err: err}
	}
	return FromEnv(path, env)
}

func readEnvFile(path string) (map[string]string, error) { return devstage.ReadEnvFile(path) }

// FromEnv builds a Config from variables (named as in the env file); src
// names their origin in errors.
func FromEnv(src string, env map[string]string) (Config, error) {
	var missing []string
	for _, k := range requiredEnv {
		if strings.TrimSpace(env[k]) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Config{}, &EnvError{File: src, Missing: missing, Err: ErrMissingEnv}
	}
	c := Config{
		MQTTURL:           env["DROVER_MQTT_URL"],
		SchemaRegistryURL: env["DROVER_SCHEMA_REGISTRY_URL"],
		S3Endpoint:        env["DROVER_S3_ENDPOINT"],
		S3Bucket:          env["DROVER_S3_BUCKET"],
		S3Region:          env["AWS_REGION"],
		S3AccessKey:       env["AWS_ACCESS_KEY_ID"],
		S3SecretKey:       env["AWS_SECRET_ACCESS_KEY"],
		DatabaseURL:       env["DROVER_DATABASE_URL"],
		HTTPURL:           env["DROVER_HTTP_URL"],
		CoAPURL:           env["DROVER_COAP_URL"],
	}
	if f := env["DROVER_DEV_LORAWAN_TOKEN_FILE"]; f != "" {
		tok, err := os.ReadFile(f)
		if err != nil {
			return Config{}, &EnvError{File: src, Err: fmt.Errorf("DROVER_DEV_LORAWAN_TOKEN_FILE: %w", err)}
		}
		c.LoRaWANToken = strings.TrimSpace(string(tok))
	}
	if u, f := env["DROVER_DEV_MQTT_TOOLS_USERNAME"], env["DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE"]; u != "" && f != "" {
		pw, err := os.ReadFile(f)
		if err != nil {
			return Config{}, &EnvError{File: src, Err: fmt.Errorf("DROVER_DEV_MQTT_TOOLS_PASSWORD_FILE: %w", err)}
		}
		c.MQTTUser, c.MQTTPassword = u, strings.TrimSpace(string(pw))
	}
	for _, b := range strings.Split(env["DROVER_KAFKA_BROKERS"], ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, &EnvError{File: src, Err: err}
	}
	return c, nil
}

// Validate checks the assembled config once, naming the bad variable.
func (c Config) Validate() error {
	var errs []string
	checkURL := func(name, v string, schemes ...string) {
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			errs = append(errs, fmt.Sprintf("%s: %q is not a URL", name, v))
			return
		}
		for _, s := range schemes {
			if u.Scheme == s {
				return
			}
		}
		errs = append(errs, fmt.Sprintf("%s: scheme %q (want %s)", name, u.Scheme, strings.Join(schemes, ", ")))
	}
	checkURL("DROVER_MQTT_URL", c.MQTTURL, "tcp", "mqtt", "ssl", "mqtts", "tls", "ws", "wss")
	checkURL("DROVER_SCHEMA_REGISTRY_URL", c.SchemaRegistryURL, "http", "https")
	checkURL("DROVER_S3_ENDPOINT", c.S3Endpoint, "http", "https")
	checkURL("DROVER_DATABASE_URL", c.DatabaseURL, "postgres", "postgresql")
	if len(c.KafkaBrokers) == 0 {
		errs = append(errs, "DROVER_KAFKA_BROKERS: empty")
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Sprintf("timeout: %v is negative", c.Timeout))
	}
	if c.OfflineAfter < 0 || c.OfflineAfter > MaxOfflineAfter {
		errs = append(errs, fmt.Sprintf("offline-after: %v outside [0, %v]", c.OfflineAfter, MaxOfflineAfter))
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.S3Bucket == "" {
		c.S3Bucket = DefaultBucket
	}
	if c.S3Region == "" {
		c.S3Region = "us-east-1"
	}
	if c.Tenant == "" {
		c.Tenant = DefaultTenant
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RunID == "" {
		c.RunID = fmt.Sprintf("%x", c.Now().UnixNano()/1e6%0xffffffffff)
	}
	return c
}
