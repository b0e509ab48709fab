package groupkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/cli"
	"github.com/drover-iot/drover/devstack/devtest"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TestIntegrationKafkaHasherMatchesFranzGo produces keyed records with
// franz-go's default partitioner and checks that KafkaHasher, goka's way
// (int32 of Sum32, abs, modulo) and Partition all pick the same partition.
func TestIntegrationKafkaHasherMatchesFranzGo(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test; -short")
	}
	const parts = 24
	kc := devtest.Kafka(t, kfake.SeedTopics(parts, "t"))
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 500; i++ {
		key := fmt.Sprintf("device-%d-%s", i, strings.Repeat("x", i%7))
		r := &kgo.Record{Key: []byte(key), Value: []byte("v")}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		h := KafkaHasher()()
		h.Write([]byte(key))
		g := int32(h.Sum32())
		if g < 0 {
			g = -g
		}
		if g%parts != r.Partition || Partition(key, parts) != r.Partition {
			t.Fatalf("key %q: franz-go partition %d, hasher %d, Partition %d", key, r.Partition, g%parts, Partition(key, parts))
		}
	}
}

func TestAvroCodec(t *testing.T) {
	_, url := devtest.Registry(t)
	serde, _ := devtest.Schemas(t, url, topics.RawSensor)
	c := AvroCodec[schemas.SensorReading]{Serde: serde, Topic: topics.RawSensor}
	in := &schemas.SensorReading{EventID: "e", DeviceID: "d", TS: time.UnixMilli(1000).UTC(), IngestedAt: time.UnixMilli(2000).UTC(), Metric: "m", Value: 1.5, Attrs: map[string]string{}}
	b, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(*schemas.SensorReading); !ok || got.Value != 1.5 || got.DeviceID != "d" {
		t.Fatalf("round trip: %#v", v)
	}
	tests := []struct {
		name string
		in   []byte
		err  string
	}{
		{name: "not wire format", in: []byte("hello"), err: "not confluent wire format"},
		{name: "unknown schema id", in: append(schemas.Header(4242), 1, 2, 3), err: "4242"},
		{name: "truncated body", in: b[:8], err: "undecodable raw.sensor value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := c.Decode(tc.in)
			if err != nil {
				t.Fatalf("bad value must not be a codec error (it would stop the processor): %v", err)
			}
			bad, ok := v.(*BadRecord)
			if !ok || !strings.Contains(bad.Error(), tc.err) {
				t.Fatalf("got %#v, want a *BadRecord containing %q", v, tc.err)
			}
		})
	}
}

func TestAvroCodecRegistryDown(t *testing.T) {
	reg, err := sr.NewClient(sr.URLs("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := AvroCodec[schemas.SensorReading]{Serde: serde, Topic: topics.RawSensor}
	// A transient failure is an error, so goka stops and the record is
	// retried after a restart instead of being skipped.
	if _, err := c.Decode(append(schemas.Header(1), 0)); err == nil {
		t.Fatal("registry down: want an error")
	}
}

func TestJSONCodec(t *testing.T) {
	type st struct{ A int }
	c := JSONCodec[st]{}
	b, err := c.Encode(&st{A: 3})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Decode(b)
	if err != nil || v.(*st).A != 3 {
		t.Fatalf("round trip: %v %v", v, err)
	}
	if _, err := c.Decode([]byte("{")); err == nil {
		t.Fatal("bad JSON: want an error")
	}
}

func TestFromConn(t *testing.T) {
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		conn cli.Conn
		err  string
	}{
		{name: "plain", conn: cli.Conn{KafkaBrokers: []string{"a:9092", " b:9092 "}}},
		{name: "no brokers", conn: cli.Conn{KafkaBrokers: []string{" "}}, err: "--kafka-brokers"},
		{name: "scram-sha-512", conn: cli.Conn{KafkaBrokers: []string{"a:9092", " b:9092 "}, KafkaSASLMechanism: "SCRAM-SHA-512", KafkaSASLUser: "u", KafkaSASLPassFile: pw}},
		{name: "misspelt mechanism", conn: cli.Conn{KafkaBrokers: []string{"a:9092"}, KafkaSASLMechanism: "SCRAM_SHA_512", KafkaSASLUser: "u", KafkaSASLPassFile: pw}, err: "--kafka-sasl-mechanism ($DROVER_KAFKA_SASL_MECHANISM)"},
		{name: "missing password file", conn: cli.Conn{KafkaBrokers: []string{"a:9092"}, KafkaSASLMechanism: "PLAIN", KafkaSASLUser: "u", KafkaSASLPassFile: "/nonexistent"}, err: "--kafka-sasl-password-file"},
		{name: "missing ca", conn: cli.Conn{KafkaBrokers: []string{"a:9092"}, KafkaTLSCA: "/nonexistent"}, err: "--kafka-tls-ca"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := FromConn(&tc.conn)
			if tc.err != "" {
				var ue *cli.UsageError
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.As(err, &ue) {
					t.Fatalf("error %v, want a usage error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(k.Brokers, ",") != "a:9092,b:9092" || k.Config.Version != ProtocolVersion {
				t.Fatalf("kafka %+v", k)
			}
			if c := k.SaramaConfig("x"); c == k.Config || c.ClientID != "x" {
				t.Fatal("SaramaConfig must return a copy with the client id")
			}
		})
	}
}

func TestLimiter(t *testing.T) {
	var l Limiter
	base := time.Unix(1000, 0)
	steps := []struct {
		name       string
		at         time.Duration
		ok         bool
		suppressed int64
	}{
		{name: "first passes", at: 0, ok: true},
		{name: "within the interval", at: 100 * time.Millisecond},
		{name: "still within", at: 999 * time.Millisecond},
		{name: "next interval reports two held back", at: time.Second, ok: true, suppressed: 2},
		{name: "again within", at: 1500 * time.Millisecond},
	}
	for _, s := range steps {
		ok, n := l.Allow(base.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Fatalf("%s: Allow = %v, %d; want %v, %d", s.name, ok, n, s.ok, s.suppressed)
		}
	}
}
