package devtest

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/drover-iot/drover/devstack"
)

// Logger is the logger the helpers give components: JSON on stderr at
// debug level when DROVER_TEST_LOG is set, else discarding.
func Logger() *slog.Logger {
	if os.Getenv("DROVER_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Kafka starts an in-memory kfake cluster with one broker on a free port
// (opts are applied after that, so they may override it) and closes it when
// the test ends.
func Kafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("devtest: start kafka: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// KafkaBrokers starts Kafka and returns its seed brokers.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	return Kafka(t).ListenAddrs()
}

// Registry starts the embedded schema registry (compatibility-enforcing,
// in memory) on a free port and returns it with its URL.
func Registry(t testing.TB) (*devstack.Registry, string) {
	t.Helper()
	reg, err := devstack.NewRegistry("", Logger())
	if err != nil {
		t.Fatalf("devtest: registry: %v", err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return reg, srv.URL
}

// MQTT starts the embedded MQTT broker (mochi-mqtt: v5 and 3.1.1, shared
// subscriptions) on a free port and returns its URL, tcp://127.0.0.1:PORT.
func MQTT(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("devtest: mqtt: %v", err)
	}
	srv, err := devstack.NewMQTT(l, Logger())
	if err != nil {
		l.Close()
		t.Fatalf("devtest: mqtt: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + l.Addr().String()
}

// S3 starts the embedded S3 server with objects under t.TempDir() and the
// bucket devstack.DefaultBucket, and returns its endpoint URL.
func S3(t testing.TB) string {
	t.Helper()
	srv, err := devstack.NewS3(t.TempDir(), nil, devstack.DefaultBucket)
	if err != nil {
		t.Fatalf("devtest: s3: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs.URL
}

// S3Client returns an aws-sdk-go-v2 S3 client for endpoint: path-style
// addressing, static credentials, region us-east-1, and checksums only
// where required (gofakes3 does not speak streaming checksums).
func S3Client(t testing.TB, endpoint string) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		Region:                     devstack.S3Region,
		Credentials:                credentials.NewStaticCredentialsProvider(devstack.S3AccessKeyID, devstack.S3SecretAccessKey, ""),
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Stack starts the whole dev stack on free ports with its data in
// t.TempDir(), and closes it when the test ends.
func Stack(t testing.TB) *devstack.Stack {
	t.Helper()
	s, err := devstack.Start(context.Background(), devstack.Config{DataDir: t.TempDir(), Logger: Logger()})
	if err != nil {
		t.Fatalf("devtest: start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(context.Background()); err != nil {
			t.Errorf("devtest: close stack: %v", err)
		}
	})
	return s
}
