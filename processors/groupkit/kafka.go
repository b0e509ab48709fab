package groupkit

import (
	"crypto/tls"
	"fmt"
	"hash"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/processors/gokakgo"
)

// ProtocolVersion is the Kafka protocol version sarama speaks. goka's
// default (2.0) is older than what the embedded Kafka (kfake) and current
// brokers negotiate best with; it is set explicitly, as DESIGN.md asks.
var ProtocolVersion = sarama.V3_6_0_0

// Kafka holds what a goka group needs to reach the cluster. The zero value
// is not usable; build it with NewKafka or FromConn.
type Kafka struct {
	// Brokers are the bootstrap brokers.
	Brokers []string
	// Config is the sarama configuration template; every client gets a
	// copy.
	Config *sarama.Config
	// TableReplication is the replication factor of topics goka creates
	// (group tables and loop topics); default 1 (the embedded stack).
	TableReplication int
	// StorageDir keeps group-table snapshots in LevelDB below this
	// directory, so a restart only replays the table's tail; "" (default)
	// keeps them in memory and restores from Kafka on every start.
	StorageDir string
	// Storage, when set, builds the local copy of every table partition
	// instead of the default (MemoryBuilder, or LevelDB below StorageDir);
	// e.g. goka's storage.MemoryBuilder to compare restore times.
	Storage storage.Builder
	// Log receives goka's own log lines at debug level; nil discards them.
	Log *slog.Logger
	// KgoOpts connect franz-go clients to the same cluster (brokers, TLS,
	// SASL); set by NewKafka and FromConn.
	KgoOpts []kgo.Opt
	// SaramaProducer makes goka produce with its own sarama producer
	// instead of the default franz-go one (3x slower in the features
	// benchmark; kept as a fallback).
	SaramaProducer bool
	// SaramaConsumer makes goka consume (consumer group, table recovery,
	// views) and manage topics with sarama instead of franz-go
	// (processors/gokakgo). Not a flag: the benchmarks compare the two
	// paths with it.
	SaramaConsumer bool

	// ClientOpt, when set, adds an option to every franz-go client by
	// role (its client id plus -consumer, -tables, -topics, -producer):
	// the stage's kprom metrics (admin.Server.KafkaMetrics).
	ClientOpt func(role string) kgo.Opt

	saramaErr error // why sarama cannot connect (a SASL mechanism it lacks)
}

// SessionTimeout is how long the group coordinator keeps a silent member
// (e.g. one killed with SIGKILL) before it rebalances without it.
const SessionTimeout = 10 * time.Second

// RebalanceTimeout bounds how long a rebalance waits for members to rejoin
// and how long a member may take to hand its partitions back.
const RebalanceTimeout = 20 * time.Second

// NewKafka returns plain-text settings for brokers with drover's sarama
// defaults: protocol ProtocolVersion, streams read from the oldest offset
// when a group has no committed offset, acks from all in-sync replicas,
// no compression, and a producer that flushes every 10 ms or 512 KiB with
// 4096-message channels (goka writes the group table once per input
// record; sarama's default 64 KiB flushes made that write the bottleneck,
// 2.5x slower in the features benchmark).
func NewKafka(brokers []string) Kafka {
	c := goka.DefaultConfig()
	c.Version = ProtocolVersion
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Compression = sarama.CompressionNone
	c.Producer.Flush.Frequency = 10 * time.Millisecond
	c.Producer.Flush.Bytes = 512 << 10
	c.Producer.Flush.MaxMessages = 0
	c.ChannelBufferSize = 4096
	c.Consumer.Fetch.Default = 4 << 20
	c.Metadata.RefreshFrequency = time.Minute
	// A member killed with SIGKILL stays in the group until its session
	// times out, and a JoinGroup blocks until every known member rejoined
	// or left (at most the rebalance timeout). sarama applies
	// Net.ReadTimeout to that JoinGroup too, so it must outlast both, or a
	// restarted processor fails with "i/o timeout" while the coordinator
	// still waits for the dead one (seen in the chaos test with sarama's
	// defaults: session 30 s, rebalance 60 s, read 30 s).
	c.Consumer.Group.Session.Timeout = SessionTimeout
	c.Consumer.Group.Heartbeat.Interval = SessionTimeout / 5
	c.Consumer.Group.Rebalance.Timeout = RebalanceTimeout
	c.Net.ReadTimeout = RebalanceTimeout + 15*time.Second
	c.Consumer.MaxProcessingTime = 10 * time.Second
	return Kafka{Brokers: brokers, Config: c, TableReplication: 1, KgoOpts: []kgo.Opt{kgo.SeedBrokers(brokers...)}}
}

// FromConn builds the settings from the command line's Kafka flags
// (brokers, TLS, SASL), through the same cli.Conn code every other stage
// uses: franz-go gets its options from Conn.KafkaOpts, and goka's sarama
// consumers get the same TLS configuration and the same franz-go SASL
// mechanism (PLAIN natively; SCRAM and OAUTHBEARER through saramaSASL).
func FromConn(conn *cli.Conn) (Kafka, error) {
	kopts, err := conn.KafkaOpts()
	if err != nil {
		return Kafka{}, err
	}
	var brokers []string
	for _, b := range conn.KafkaBrokers {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	k := NewKafka(brokers)
	k.KgoOpts = kopts
	tlsCfg, err := conn.KafkaTLSConfig()
	if err != nil {
		return Kafka{}, err
	}
	if tlsCfg != nil {
		k.Config.Net.TLS.Enable = true
		k.Config.Net.TLS.Config = tlsCfg
	}
	mech, err := conn.KafkaSASL()
	if err != nil {
		return Kafka{}, err
	}
	if mech != nil {
		// AWS_MSK_IAM has no sarama implementation: only the sarama
		// fallbacks (SaramaConsumer, SaramaProducer) refuse it, when
		// they are built.
		k.saramaErr = saramaSASL(k.Config, conn, mech)
		if k.saramaErr != nil {
			k.Config.Net.SASL.Enable = false
		}
	}
	if err := k.Config.Validate(); err != nil {
		return Kafka{}, cli.Usagef("kafka settings: %w", err)
	}
	return k, nil
}

// SaramaConfig returns a copy of Config with clientID set, for groups that
// build their own goka options (processors/alerts).
func (k Kafka) SaramaConfig(clientID string) *sarama.Config { return k.copyConfig(clientID) }

func (k Kafka) copyConfig(clientID string) *sarama.Config {
	c := *k.Config
	if k.Config.Net.TLS.Config != nil {
		c.Net.TLS.Config = k.Config.Net.TLS.Config.Clone()
	} else {
		c.Net.TLS.Config = (*tls.Config)(nil)
	}
	c.ClientID = clientID
	return &c
}

func (k Kafka) topicManagerConfig() *goka.TopicManagerConfig {
	tm := goka.NewTopicManagerConfig()
	r := k.TableReplication
	if r <= 0 {
		r = 1
	}
	tm.Table.Replication = r
	tm.Stream.Replication = r
	tm.Stream.Retention = 24 * time.Hour
	return tm
}

// TableStorage returns the storage builder for group's table partitions:
// Storage if set, else LevelDB below StorageDir/group if StorageDir is set,
// else MemoryBuilder.
func (k Kafka) TableStorage(group string) storage.Builder {
	if k.Storage != nil {
		return k.Storage
	}
	if k.StorageDir == "" {
		return MemoryBuilder()
	}
	return storage.DefaultBuilder(filepath.Join(k.StorageDir, group))
}

// ProcessorOptions returns the goka options that connect a processor of
// group to the cluster: sarama builders with copies of Config, the Kafka
// hasher, storage, and a topic manager creating tables with
// TableReplication. Append test options (goka.WithTester) after these.
func (k Kafka) ProcessorOptions(group string) []goka.ProcessorOption {
	hasher := KafkaHasher()
	return []goka.ProcessorOption{
		goka.WithHasher(hasher),
		goka.WithClientID(group),
		goka.WithConsumerGroupBuilder(k.newConsumerGroup),
		goka.WithConsumerSaramaBuilder(k.newConsumer),
		goka.WithProducerBuilder(producerBuilder(k)),
		goka.WithTopicManagerBuilder(k.topicManagerBuilder(group + "-topic-manager")),
		goka.WithStorageBuilder(k.TableStorage(group)),
		goka.WithLogger(slogLogger{k.Log}),
		// goka's default of 10 hands records to each partition's
		// goroutine almost one by one.
		goka.WithPartitionChannelSize(partitionChannelSize),
	}
}

// newConsumerGroup is goka's consumer-group builder: franz-go through
// gokakgo, or sarama with a copy of Config when SaramaConsumer is set.
func (k Kafka) newConsumerGroup(brokers []string, group, clientID string) (sarama.ConsumerGroup, error) {
	if !k.SaramaConsumer {
		return gokakgo.NewConsumerGroup(k.kgoConfig(), brokers, group, clientID), nil
	}
	if k.saramaErr != nil {
		return nil, k.saramaErr
	}
	return sarama.NewConsumerGroup(brokers, group, k.copyConfig(clientID))
}

// newConsumer is goka's partition-consumer builder (table recovery,
// views): franz-go, or sarama with SaramaConsumer.
func (k Kafka) newConsumer(brokers []string, clientID string) (sarama.Consumer, error) {
	if !k.SaramaConsumer {
		return gokakgo.NewConsumer(k.kgoConfig(), brokers, clientID)
	}
	if k.saramaErr != nil {
		return nil, k.saramaErr
	}
	return sarama.NewConsumer(brokers, k.copyConfig(clientID))
}

// topicManagerBuilder builds goka's topic manager: kadm, or sarama's
// cluster admin with SaramaConsumer.
func (k Kafka) topicManagerBuilder(clientID string) goka.TopicManagerBuilder {
	return func(brokers []string) (goka.TopicManager, error) {
		if !k.SaramaConsumer {
			return gokakgo.NewTopicManager(k.kgoConfig(), brokers, clientID, k.topicManagerConfig())
		}
		if k.saramaErr != nil {
			return nil, k.saramaErr
		}
		return goka.NewTopicManager(brokers, k.copyConfig(clientID), k.topicManagerConfig())
	}
}

// kgoConfig is the adapter's configuration: the connection options of
// KgoOpts and drover's group timing (SessionTimeout, RebalanceTimeout).
func (k Kafka) kgoConfig() gokakgo.Config {
	c := gokakgo.Config{
		Opts:              k.KgoOpts,
		SessionTimeout:    SessionTimeout,
		RebalanceTimeout:  RebalanceTimeout,
		HeartbeatInterval: SessionTimeout / 5,
		CommitInterval:    time.Second,
		ChannelBufferSize: 4096,
		Log:               k.Log,
		ClientOpt:         k.ClientOpt,
	}
	if k.Config != nil {
		c.ChannelBufferSize = k.Config.ChannelBufferSize
		c.FetchMaxPartitionBytes = k.Config.Consumer.Fetch.Default
	}
	return c
}

// partitionChannelSize is the buffer between sarama's claim and goka's
// partition goroutine.
const partitionChannelSize = 2048

// ViewOptions returns the goka options that connect a view to the
// cluster, with the Kafka hasher and in-memory storage (MemoryBuilder).
func (k Kafka) ViewOptions(clientID string) []goka.ViewOption {
	return []goka.ViewOption{
		goka.WithViewHasher(KafkaHasher()),
		goka.WithViewClientID(clientID),
		goka.WithViewConsumerSaramaBuilder(k.newConsumer),
		goka.WithViewTopicManagerBuilder(k.topicManagerBuilder(clientID + "-topic-manager")),
		goka.WithViewStorageBuilder(MemoryBuilder()),
		goka.WithViewLogger(slogLogger{k.Log}),
	}
}

// ProducerBuilder returns the goka producer builder for the cluster: a
// franz-go producer, or goka's sarama one with SaramaProducer.
func (k Kafka) ProducerBuilder() goka.ProducerBuilder { return producerBuilder(k) }

func producerBuilder(k Kafka) goka.ProducerBuilder {
	return func(brokers []string, clientID string, hasher func() hash.Hash32) (goka.Producer, error) {
		if !k.SaramaProducer {
			// TLS and SASL from KgoOpts; the brokers goka was given win.
			opts := append(append([]kgo.Opt(nil), k.KgoOpts...), kgo.SeedBrokers(brokers...))
			if k.ClientOpt != nil {
				opts = append(opts, k.ClientOpt(clientID+"-producer"))
			}
			if k.Config != nil {
				opts = append(opts, kgo.ProducerBatchCompression(kgoCompression(k.Config.Producer.Compression)))
			}
			return newKgoProducer(opts, clientID, hasher)
		}
		if k.saramaErr != nil {
			return nil, k.saramaErr
		}
		c := k.copyConfig(clientID)
		c.Producer.Partitioner = sarama.NewCustomHashPartitioner(hasher)
		p, err := goka.NewProducer(brokers, c)
		if err != nil {
			return nil, fmt.Errorf("goka producer: %w", err)
		}
		return p, nil
	}
}

// slogLogger sends goka's chatty Printf logging to slog at debug level;
// errors reach the caller through Run's error.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) logger() *slog.Logger {
	if l.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.log
}
func (l slogLogger) Print(v ...interface{})   { l.logger().Debug(fmt.Sprint(v...), "lib", "goka") }
func (l slogLogger) Println(v ...interface{}) { l.logger().Debug(fmt.Sprint(v...), "lib", "goka") }
func (l slogLogger) Printf(f string, v ...interface{}) {
	l.logger().Debug(fmt.Sprintf(f, v...), "lib", "goka")
}
