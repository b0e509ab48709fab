package devtest_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/devstack"
	"github.com/drover-iot/drover/devstack/devtest"
)

func TestMain(m *testing.M) { devtest.Main(m) }

func TestIntegrationMosquitto(t *testing.T) {
	url := devtest.Mosquitto(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- string(pr.Packet.Payload); return true, nil },
		},
	})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "t", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "devices/t/d/sensor", QoS: 1, Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "hi" {
			t.Fatalf("got %q", p)
		}
	case <-ctx.Done():
		t.Fatal("no message from mosquitto")
	}
}

func TestIntegrationPostgresPerTestDatabases(t *testing.T) {
	ctx := context.Background()
	urls := map[string]bool{}
	for _, name := range []string{"first", "second"} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			url := devtest.Postgres(t)
			t.Logf("database ready in %s", time.Since(start))
			urls[url] = true
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			// The same table in each test: databases are separate.
			if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if len(urls) != 2 {
		t.Fatalf("urls = %v", urls)
	}
	for url := range urls { // dropped at cleanup
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			conn.Close(ctx)
			t.Fatalf("database %s still exists after its test", url)
		}
	}
}

func TestIntegrationHelpers(t *testing.T) {
	ctx := context.Background()

	brokers := devtest.KafkaBrokers(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	_, regURL := devtest.Registry(t)
	rc, err := sr.NewClient(sr.URLs(regURL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.CreateSchema(ctx, "x-value", sr.Schema{Schema: `"string"`, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.CreateSchema(ctx, "x-value", sr.Schema{Schema: `"int"`, Type: sr.TypeAvro}); err == nil {
		t.Fatal("incompatible schema accepted")
	}

	s3c := devtest.S3Client(t, devtest.S3(t))
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(devstack.DefaultBucket), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationStack(t *testing.T) {
	s := devtest.Stack(t)
	e := s.Endpoints()
	for _, v := range []string{e.MQTTURL, e.KafkaBrokers, e.SchemaRegistryURL, e.S3Endpoint, e.DatabaseURL} {
		if v == "" {
			t.Fatalf("empty endpoint in %+v", e)
		}
	}
	conn, err := pgx.Connect(context.Background(), e.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
}
