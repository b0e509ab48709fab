package gokakgo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// requestTimeout bounds each admin request of the topic manager.
const requestTimeout = 30 * time.Second

// TopicManagerBuilder returns goka's topic-manager builder on kadm
// (goka.WithTopicManagerBuilder and WithViewTopicManagerBuilder take it).
func TopicManagerBuilder(cfg Config, clientID string, tm *goka.TopicManagerConfig) func(brokers []string) (goka.TopicManager, error) {
	return func(brokers []string) (goka.TopicManager, error) {
		return NewTopicManager(cfg, brokers, clientID, tm)
	}
}

// TopicManager is goka.TopicManager on kadm.
type TopicManager struct {
	cl  *kgo.Client
	adm *kadm.Client
	tm  *goka.TopicManagerConfig
}

var _ goka.TopicManager = (*TopicManager)(nil)

// NewTopicManager connects an admin client; like goka's, it fails when no
// broker answers.
func NewTopicManager(cfg Config, brokers []string, clientID string, tm *goka.TopicManagerConfig) (*TopicManager, error) {
	if tm == nil {
		tm = goka.NewTopicManagerConfig()
	}
	cl, err := kgo.NewClient(cfg.baseOpts(brokers, clientID, "topics")...)
	if err != nil {
		return nil, fmt.Errorf("gokakgo: topic manager: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("gokakgo: topic manager: cannot reach %v: %w", brokers, err)
	}
	return &TopicManager{cl: cl, adm: kadm.NewClient(cl), tm: tm}, nil
}

var errTopicNotFound = errors.New("topic not found")

func partitions(parent context.Context, cl *kgo.Client, topic string) ([]int32, error) {
	ctx, cancel := context.WithTimeout(parent, requestTimeout)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return nil, err
	}
	d, ok := td[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return nil, errTopicNotFound
	}
	if d.Err != nil {
		return nil, d.Err
	}
	return d.Partitions.Numbers(), nil
}

// Partitions returns topic's partitions.
func (m *TopicManager) Partitions(topic string) ([]int32, error) {
	return partitions(context.Background(), m.cl, topic)
}

// GetOffset answers sarama.OffsetOldest and OffsetNewest with the start and
// end offset, any other time (ms) with the first offset at or after it.
func (m *TopicManager) GetOffset(topic string, partition int32, t int64) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var (
		offs kadm.ListedOffsets
		err  error
	)
	switch t {
	case sarama.OffsetOldest:
		offs, err = m.adm.ListStartOffsets(ctx, topic)
	case sarama.OffsetNewest:
		offs, err = m.adm.ListEndOffsets(ctx, topic)
	default:
		offs, err = m.adm.ListOffsetsAfterMilli(ctx, t, topic)
	}
	if err != nil {
		return 0, err
	}
	o, ok := offs.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("gokakgo: no offset for %s/%d", topic, partition)
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
}

// EnsureTableExists creates a compacted topic when missing.
func (m *TopicManager) EnsureTableExists(topic string, npar int) error {
	policy := m.tm.Table.CleanupPolicy
	if policy == "" {
		policy = "compact"
	}
	return m.ensure(topic, npar, m.tm.Table.Replication, map[string]string{"cleanup.policy": policy})
}

// EnsureStreamExists creates a stream topic (retention from the config)
// when missing.
func (m *TopicManager) EnsureStreamExists(topic string, npar int) error {
	policy := m.tm.Stream.CleanupPolicy
	if policy == "" {
		policy = "delete"
	}
	return m.ensure(topic, npar, m.tm.Stream.Replication, map[string]string{
		"cleanup.policy": policy, "retention.ms": strconv.FormatInt(m.tm.Stream.Retention.Milliseconds(), 10)})
}

// EnsureTopicExists creates topic when missing.
func (m *TopicManager) EnsureTopicExists(topic string, npar, rfactor int, config map[string]string) error {
	return m.ensure(topic, npar, rfactor, config)
}

// ensure creates topic when it is missing. An existing topic with another
// partition count is goka's "config mismatch" (ignored, warned about or an
// error as TopicManagerConfig.MismatchBehavior says), like goka's own.
func (m *TopicManager) ensure(topic string, npar, rfactor int, config map[string]string) error {
	ps, err := m.Partitions(topic)
	if err != nil && !errors.Is(err, errTopicNotFound) {
		return fmt.Errorf("error checking topic %s: %w", topic, err)
	}
	if len(ps) > 0 {
		if len(ps) != npar {
			msg := fmt.Sprintf("partition count mismatch for topic '%s'. Need %d, but existing topic has %d", topic, npar, len(ps))
			switch m.tm.MismatchBehavior {
			case goka.TMConfigMismatchBehaviorFail:
				return errors.New(msg)
			case goka.TMConfigMismatchBehaviorWarn:
				if m.tm.Logger != nil {
					m.tm.Logger.Printf("Warning: %s", msg)
				}
			}
		}
		return nil
	}
	if m.tm.NoCreate {
		return fmt.Errorf("topic %s does not exist and creating topics is disabled", topic)
	}
	cfg := map[string]*string{}
	for k, v := range config {
		cfg[k] = kadm.StringPtr(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := m.adm.CreateTopic(ctx, int32(npar), int16(rfactor), cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("error creating topic %s, npar=%d, rfactor=%d, config=%v: %w", topic, npar, rfactor, config, err)
	}
	// Wait until the metadata knows it, as goka's does.
	deadline := time.Now().Add(m.createTimeout())
	for {
		if _, err := m.Partitions(topic); err == nil {
			return nil
		} else if !errors.Is(err, errTopicNotFound) || time.Now().After(deadline) {
			return fmt.Errorf("waiting for topic %s to be created: %w", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (m *TopicManager) createTimeout() time.Duration {
	if m.tm.CreateTopicTimeout > 0 {
		return m.tm.CreateTopicTimeout
	}
	return 10 * time.Second
}

// Close closes the admin client.
func (m *TopicManager) Close() error {
	m.cl.Close()
	return nil
}
