package console

import (
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DefaultAddr is where the console listens unless told otherwise: loopback
// only.
const DefaultAddr = "127.0.0.1:9480"

// DefaultRefresh is how often the pipeline snapshot is recomputed while a
// page is open.
const DefaultRefresh = 5 * time.Second

// Target is a stage whose /healthz, /readyz and /metrics the console reads.
// URL returns its base URL (http://host:port, no path); it is a function so
// that a stage whose port is chosen at start can be resolved late; "" means
// not known (yet).
type Target struct {
	Name string
	URL  func() string
}

// StaticTarget is a Target at a fixed base URL.
func StaticTarget(name, url string) Target {
	return Target{Name: name, URL: func() string { return url }}
}

// Config configures a Server. Kafka and Serde are required; the clients are
// the caller's to close.
type Config struct {
	// Kafka reads offsets, groups, configs and dead letters; it also
	// produces re-driven records.
	Kafka    *kgo.Client
	Registry *sr.Client
	Serde    *schemas.Serde
	// DB is a pool on a read-only role (see OpenDB); nil leaves the
	// devices and alerts pages without data and says so.
	DB *pgxpool.Pool
	// Stages are the stages to probe (bridge, processors, sink, media ...).
	Stages []Target
	// Catalogue is the topic catalogue drift is computed against (default
	// topics.Default()).
	Catalogue *topics.Catalogue
	// RoutesFile is the routes file re-drive uses, read at each re-drive
	// so a fixed file takes effect without a restart ("" = the bridge's
	// embedded routes).
	RoutesFile string
	// RedriveStateFile remembers re-driven dead letters ("" = none).
	RedriveStateFile string
	// TokenFile holds the operator token; it is read at every action, so a
	// rotated token takes effect at once. "" = read-only console.
	TokenFile string
	// RegistryTopic is the device registry's topic, which the Devices and
	// Registry pages read through a registry view while a page asks for it
	// (default topics.DevicesRegistry).
	RegistryTopic string
	// RegistryCheck is the re-drive's device registry check, as `drover
	// dlq redrive --registry`: enforce (a letter of an unregistered,
	// suspended or revoked device still fails), observe, off, or auto
	// (default) = enforce when RegistryTopic exists.
	RegistryCheck ingest.RegistryMode
	// Paddocks is a GeoJSON polygon (or a FeatureCollection of them) drawn
	// under the device map (default: the simulator's paddock).
	Paddocks []byte
	// Refresh is the pipeline snapshot interval (default DefaultRefresh).
	Refresh time.Duration
	// Registerer receives the console's own metrics (Kafka requests,
	// database queries, stage requests, snapshots, listening pages); nil
	// keeps them private.
	Registerer prometheus.Registerer
	// Version is shown in the page footer.
	Version string
	Log     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if c.Kafka == nil || c.Serde == nil {
		return errors.New("console: Kafka and Serde are required")
	}
	if c.Catalogue == nil {
		cat, err := topics.Default()
		if err != nil {
			return err
		}
		c.Catalogue = cat
	}
	if c.RegistryTopic == "" {
		c.RegistryTopic = topics.DevicesRegistry
	}
	if c.Refresh <= 0 {
		c.Refresh = DefaultRefresh
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
