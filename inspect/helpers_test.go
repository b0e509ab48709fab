package inspect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// stack is a Kafka cluster and schema registry for one test, with the
// schemas registered and a producer.
type stack struct {
	t       testing.TB
	cluster *kfake.Cluster
	brokers string
	regURL  string
	serde   *schemas.Serde
	prod    *kgo.Client
}

// newStack starts kfake with the given topics (3 partitions each) and the
// embedded registry with drover's schemas registered.
func newStack(t testing.TB, topicNames ...string) *stack {
	t.Helper()
	if len(topicNames) == 0 {
		topicNames = []string{topics.RawSensor, topics.RawGPS, topics.DLQ, topics.StateLatest}
	}
	c := devtest.Kafka(t, kfake.SeedTopics(3, topicNames...))
	_, url := devtest.Registry(t)
	serde, _ := devtest.Schemas(t, url)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &stack{t: t, cluster: c, brokers: strings.Join(c.ListenAddrs(), ","), regURL: url, serde: serde, prod: prod}
}

// produce writes records synchronously (Partition must be set).
func (s *stack) produce(recs ...*kgo.Record) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatalf("produce: %v", err)
	}
}

// record encodes v for topic into a record on partition p with key and
// timestamp ts.
func (s *stack) record(topic string, p int32, key string, ts time.Time, v any) *kgo.Record {
	s.t.Helper()
	b, err := s.serde.Encode(context.Background(), topic, v)
	if err != nil {
		s.t.Fatalf("encode: %v", err)
	}
	return &kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: b, Timestamp: ts}
}

// connArgs are the flags that point a command at the stack.
func (s *stack) connArgs() []string {
	return []string{"--kafka-brokers", s.brokers, "--schema-registry-url", s.regURL, "--timeout", "30s"}
}

// result is what one command run printed and returned.
type result struct {
	out, errOut string
	err         error
}

// execute runs cmd with args (connection flags appended) within a minute.
func execute(t testing.TB, cmd *cobra.Command, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// tail runs `drover tail args...` against the stack.
func (s *stack) tail(args ...string) result {
	s.t.Helper()
	return execute(s.t, TailCommand(&cli.Conn{}), append(args, s.connArgs()...)...)
}

// jsonLine is one record of tail's JSON output.
type jsonLine struct {
	Topic          string            `json:"topic"`
	Partition      int32             `json:"partition"`
	Offset         int64             `json:"offset"`
	Timestamp      time.Time         `json:"timestamp"`
	Key            *string           `json:"key"`
	Headers        map[string]string `json:"headers"`
	SchemaID       int               `json:"schema_id"`
	Value          map[string]any    `json:"value"`
	Error          string            `json:"error"`
	ValueBase64    []byte            `json:"value_base64"`
	ValueHex       string            `json:"value_hex"`
	Tombstone      bool              `json:"tombstone"`
	PayloadExcerpt string            `json:"payload_excerpt"`
}

// parseLines parses JSON lines, failing the test on any bad line.
func parseLines(t testing.TB, out string) []jsonLine {
	t.Helper()
	var lines []jsonLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var l jsonLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output line is not JSON: %v\n%s", err, sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

func ptr[T any](v T) *T { return &v }

// sensor returns a reading.
func sensor(device, metric string, value float64, ts time.Time) schemas.SensorReading {
	return schemas.SensorReading{
		EventID: device + "-" + metric + "-" + ts.Format(time.RFC3339Nano), Tenant: "farm-1", DeviceID: device,
		TS: ts, IngestedAt: ts.Add(time.Second), Metric: metric, Value: value, Unit: ptr("C"),
		Source: "mqtt", Attrs: map[string]string{"site": "north"},
	}
}
