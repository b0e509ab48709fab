package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/drover-iot/drover/devstack/devstage"
	"github.com/drover-iot/drover/devstack/postgres"
)

// Stack is the running embedded stack. The component fields are exposed
// for tests; RestartKafka replaces Kafka, so do not read Kafka concurrently
// with RestartKafka. Endpoints, Close and RestartKafka are safe for
// concurrent use.
type Stack struct {
	Kafka    *kfake.Cluster
	Registry *Registry
	MQTT     *mqtt.Server
	S3       *S3
	// Postgres is nil with Config.DatabaseURL or Config.NoPostgres.
	Postgres *postgres.Cluster

	cfg     Config
	log     *slog.Logger
	dataDir string

	gate *RegistryGate // EnforceRegistry switches the broker to the registry

	mu        sync.Mutex
	stops     []context.CancelFunc // background work to stop at Close
	kafkaPort int
	servers   []*http.Server
	endpoints Endpoints
	closed    bool
}

// Start starts every service of the stack under cfg.DataDir and returns
// once all accept connections. On error, whatever was started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.ListenHost == "" {
		cfg.ListenHost = loopback
	}
	if err := checkListenHost(cfg.ListenHost); err != nil {
		return nil, fmt.Errorf("devstack: ListenHost: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("devstack: data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: data dir: %w", err)
	}
	s := &Stack{cfg: cfg, log: log, dataDir: dir}
	s.endpoints.DataDir = dir
	defer func() {
		if err != nil {
			_ = s.Close(context.WithoutCancel(ctx))
		}
	}()
	started := time.Now()

	// PostgreSQL takes about a second; start it while the rest comes up.
	type pgResult struct {
		c   *postgres.Cluster
		err error
	}
	pgDone := make(chan pgResult, 1)
	if cfg.DatabaseURL == "" && !cfg.NoPostgres {
		port, err := freePortFor(log, "postgres", cfg.PostgresPort, cfg.StrictPorts)
		if err != nil {
			return nil, fmt.Errorf("devstack: %w", err)
		}
		go func() {
			c, err := startPostgres(ctx, filepath.Join(dir, "postgres"), port, log)
			pgDone <- pgResult{c, err}
		}()
	} else {
		pgDone <- pgResult{}
	}
	otherErr := s.startServices(ctx)
	pg := <-pgDone
	s.Postgres = pg.c
	if err := errors.Join(otherErr, pg.err); err != nil {
		return nil, err
	}

	s.endpoints.DatabaseURL = cfg.DatabaseURL
	if s.Postgres != nil {
		s.endpoints.DatabaseURL = s.Postgres.URL(DatabaseName)
	}
	e := s.Endpoints()
	log.Info("dev stack started", "data_dir", dir, "took", time.Since(started).Round(time.Millisecond).String(),
		"mqtt", e.MQTTURL, "kafka", e.KafkaBrokers, "schema_registry", e.SchemaRegistryURL,
		"s3", e.S3Endpoint, "database", e.DatabaseURL)
	return s, nil
}

// startServices starts Kafka, the registry, MQTT and S3 on cfg.ListenHost.
func (s *Stack) startServices(ctx context.Context) error {
	cfg, log, host := s.cfg, s.log, s.cfg.ListenHost

	l, err := listen(log, "kafka", host, cfg.KafkaPort, cfg.StrictPorts)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.kafkaPort = portOf(l)
	if s.Kafka, err = s.newKafka(l); err != nil {
		l.Close()
		return err
	}
	s.endpoints.KafkaBrokers = strings.Join(s.Kafka.ListenAddrs(), ",")

	if s.Registry, err = NewRegistry(filepath.Join(s.dataDir, "registry.json"), log.With("component", "schema-registry")); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if l, err = listen(log, "schema-registry", host, cfg.RegistryPort, cfg.StrictPorts); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.serve(l, s.Registry)
	s.endpoints.SchemaRegistryURL = "http://" + hostPort(host, l)

	if err := s.startMQTT(); err != nil {
		return err
	}

	if s.S3, err = NewS3(filepath.Join(s.dataDir, "s3"), cfg.OnObjectCreated, DefaultBucket); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if l, err = listen(log, "s3", host, cfg.S3Port, cfg.StrictPorts); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	s.serve(l, s.S3)
	s.endpoints.S3Endpoint = "http://" + hostPort(host, l)
	s.endpoints.S3Bucket = DefaultBucket
	return nil
}

// startMQTT starts the broker with the bridge's client ids reserved to the
// bridge principal, whose password is kept in <data-dir>/mqtt-bridge.password
// (created on first start, mode 0600).
func (s *Stack) startMQTT() error {
	pwFile := filepath.Join(s.dataDir, "mqtt-bridge.password")
	pw, err := bridgePassword(pwFile)
	if err != nil {
		return fmt.Errorf("devstack: mqtt: %w", err)
	}
	l, err := listen(s.log, "mqtt", s.cfg.ListenHost, s.cfg.MQTTPort, s.cfg.StrictPorts)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	ws, err := listen(s.log, "mqtt-ws", s.cfg.ListenHost, s.cfg.MQTTWSPort, s.cfg.StrictPorts)
	if err != nil {
		l.Close()
		return fmt.Errorf("devstack: %w", err)
	}
	s.gate = &RegistryGate{}
	if s.MQTT, err = NewMQTT(l, s.log, ReserveClientIDs(BridgePrincipal, BridgePrincipal, pw), WithRegistryGate(s.gate), WithWebSocket(ws)); err != nil {
		l.Close()
		ws.Close()
		return fmt.Errorf("devstack: %w", err)
	}
	s.endpoints.MQTTURL = "tcp://" + hostPort(s.cfg.ListenHost, l)
	s.endpoints.MQTTWSURL = "ws://" + hostPort(s.cfg.ListenHost, ws) + MQTTWebSocketPath
	s.endpoints.MQTTUsername = BridgePrincipal
	s.endpoints.MQTTPasswordFile = pwFile
	return nil
}

// bridgePassword reads the bridge principal's password from path, creating
// it (32 random bytes, hex) on first use.
func bridgePassword(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return bytes.TrimSpace(b), nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	pw := []byte(hex.EncodeToString(raw))
	if err := devstage.WriteFileAtomic(path, append(pw, '\n'), 0o600); err != nil {
		return nil, err
	}
	return pw, nil
}

// startPostgres starts the throwaway cluster and creates the drover
// database on first start.
func startPostgres(ctx context.Context, dir string, port int, log *slog.Logger) (*postgres.Cluster, error) {
	c, err := postgres.Start(ctx, postgres.Options{DataDir: dir, Port: port, Logger: log.With("component", "postgres")})
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if err := c.CreateDatabase(ctx, DatabaseName, ""); err != nil && !strings.Contains(err.Error(), "SQLSTATE 42P04") {
		_ = c.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("devstack: %w", err)
	}
	return c, nil
}

// newKafka starts one kfake broker persisted under <data>/kafka, on l, or
// with l nil on a new listener at the stack's Kafka port (RestartKafka).
// Kafka advertises the address it listens on, so an unspecified listen host
// (0.0.0.0) is advertised as 127.0.0.1.
func (s *Stack) newKafka(l net.Listener) (*kfake.Cluster, error) {
	listenFn := func(network, _ string) (net.Listener, error) {
		if l != nil {
			return advertised(l, s.cfg.ListenHost), nil
		}
		nl, err := net.Listen(network, net.JoinHostPort(s.cfg.ListenHost, strconv.Itoa(s.kafkaPort)))
		if err != nil {
			return nil, err
		}
		return advertised(nl, s.cfg.ListenHost), nil
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DataDir(filepath.Join(s.dataDir, "kafka")),
		kfake.WithLogger(kafkaLogger{s.log.With("component", "kafka")}),
		kfake.ListenFn(listenFn),
	}
	c, err := kfake.NewCluster(append(opts, s.cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("devstack: kafka: %w", err)
	}
	return c, nil
}

// RestartKafka closes the Kafka broker (which saves its state) and starts a
// new one on the same port and data directory, for outage tests: records
// produced before are readable after. Clients reconnect on their own.
func (s *Stack) RestartKafka(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("devstack: stack closed")
	}
	s.Kafka.Close()
	var err error
	for {
		var c *kfake.Cluster
		if c, err = s.newKafka(nil); err == nil {
			s.Kafka = c
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
		select { // the old listener may linger for a moment
		case <-ctx.Done():
			return fmt.Errorf("devstack: restart kafka: %w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Stack) serve(l net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("devstack: http server", "addr", l.Addr().String(), "err", err)
		}
	}()
}

// Endpoints returns where the services listen.
func (s *Stack) Endpoints() Endpoints {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoints
}

// DataDir is the stack's absolute data directory.
func (s *Stack) DataDir() string { return s.dataDir }

// Close stops every service: HTTP servers (registry, S3) and the MQTT
// broker, then Kafka (which saves its state), then PostgreSQL (fast
// shutdown; no process is left behind). It returns all errors joined.
// Closing twice is a no-op.
func (s *Stack) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, stop := range s.stops {
		stop()
	}
	var errs []error
	for _, srv := range s.servers {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("devstack: stop http server: %w", err))
			_ = srv.Close()
		}
		cancel()
	}
	if s.MQTT != nil {
		if err := s.MQTT.Close(); err != nil {
			errs = append(errs, fmt.Errorf("devstack: stop mqtt: %w", err))
		}
	}
	if s.Kafka != nil {
		s.Kafka.Close()
	}
	if s.Postgres != nil {
		if err := s.Postgres.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("devstack: %w", err))
		}
	}
	return errors.Join(errs...)
}

// kafkaLogger adapts slog to kfake's logger: errors and warnings at their
// level, the rest at debug.
type kafkaLogger struct{ log *slog.Logger }

func (l kafkaLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl := slog.LevelDebug
	switch level {
	case kfake.LogLevelError:
		lvl = slog.LevelError
	case kfake.LogLevelWarn:
		lvl = slog.LevelWarn
	}
	ctx := context.Background()
	if l.log.Enabled(ctx, lvl) {
		l.log.Log(ctx, lvl, fmt.Sprintf(format, args...))
	}
}
