package smoke

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// User properties the smoke run sets on every MQTT message; the bridge
// copies them to Kafka headers as mqtt.user.<name>.
const (
	PropRun     = "smoke-run"
	PropFixture = "smoke-fixture"
)

// message is one MQTT publish of the run.
type message struct {
	Name    string
	Topic   string
	Payload []byte
}

// dialMQTT connects to the broker, failing after wait.
func dialMQTT(ctx context.Context, rawURL, clientID, user, password string, wait time.Duration) (*autopaho.ConnectionManager, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("mqtt %s: %w", rawURL, err)
	}
	cc := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ConnectTimeout: 5 * time.Second,
		ClientConfig:   paho.ClientConfig{ClientID: clientID},
	}
	if user != "" {
		cc.ConnectUsername, cc.ConnectPassword = user, []byte(password)
	}
	cm, err := autopaho.NewConnection(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("mqtt %s: %w", rawURL, err)
	}
	actx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := cm.AwaitConnection(actx); err != nil {
		_ = cm.Disconnect(context.Background())
		return nil, fmt.Errorf("mqtt %s: not reachable within %v: %w", rawURL, wait, err)
	}
	return cm, nil
}

// publish sends msgs in order with QoS 1 and waits for each PUBACK.
func publish(ctx context.Context, cm *autopaho.ConnectionManager, run string, msgs []message) error {
	for _, m := range msgs {
		props := &paho.PublishProperties{User: paho.UserProperties{{Key: PropRun, Value: run}, {Key: PropFixture, Value: m.Name}}}
		resp, err := cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: m.Topic, Payload: m.Payload, Properties: props})
		if err != nil {
			return fmt.Errorf("publish %s to %s: %w", m.Name, m.Topic, err)
		}
		if resp != nil && resp.ReasonCode >= 0x80 {
			return fmt.Errorf("publish %s to %s: broker refused with reason code %#x", m.Name, m.Topic, resp.ReasonCode)
		}
	}
	return nil
}

func s3Client(ctx context.Context, c Config) (*s3.Client, error) {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.S3Region)}
	if c.S3AccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.S3AccessKey, c.S3SecretKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(c.S3Endpoint)
		o.UsePathStyle = true
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func putObject(ctx context.Context, cl *s3.Client, bucket, key, contentType string, body []byte) error {
	_, err := cl.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String(contentType),
	})
	if err != nil {
		return fmt.Errorf("s3 put s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}
