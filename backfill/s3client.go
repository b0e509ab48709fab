package backfill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/spf13/pflag"

	"github.com/drover-iot/drover/cli"
)

// S3Credentials are the optional static credential flags; without them
// the default AWS chain (environment, shared config, IMDS, ...) is used.
type S3Credentials struct {
	AccessKeyID    string
	SecretKeyFile  string
	SessionToken   string
	allowAnonymous bool
}

// AddFlags registers --s3-access-key-id, --s3-secret-access-key-file and
// --s3-session-token.
func (c *S3Credentials) AddFlags(fs *pflag.FlagSet) {
	if fs.Lookup("s3-access-key-id") != nil {
		return
	}
	fs.StringVar(&c.AccessKeyID, "s3-access-key-id", "", "S3 access key id (empty = the default AWS credential chain)")
	fs.StringVar(&c.SecretKeyFile, "s3-secret-access-key-file", "", "file holding the S3 secret access key (with --s3-access-key-id)")
	fs.StringVar(&c.SessionToken, "s3-session-token", "", "S3 session token (optional, with --s3-access-key-id)")
}

// NewS3Client builds an S3 client for conn's endpoint, region and
// addressing and checks that credentials resolve, before any work. Against
// a loopback endpoint (the embedded S3, which ignores signatures) with no
// credentials anywhere it signs with dummy ones. Problems are usage errors
// naming the flag.
func NewS3Client(ctx context.Context, conn *cli.Conn, c S3Credentials) (*s3.Client, error) {
	region := conn.S3Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	switch {
	case c.AccessKeyID != "":
		if c.SecretKeyFile == "" {
			return nil, cli.Usagef("--s3-secret-access-key-file: required with --s3-access-key-id")
		}
		b, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return nil, cli.Usagef("--s3-secret-access-key-file: %w", err)
		}
		secret := strings.TrimRight(string(b), "\r\n")
		if secret == "" {
			return nil, cli.Usagef("--s3-secret-access-key-file %s: empty", c.SecretKeyFile)
		}
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKeyID, secret, c.SessionToken)))
	case c.SecretKeyFile != "":
		return nil, cli.Usagef("--s3-access-key-id: required with --s3-secret-access-key-file")
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, cli.Usagef("s3 configuration: %w", err)
	}
	if c.AccessKeyID == "" {
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			if !isLoopback(conn.S3Endpoint) {
				return nil, cli.Usagef("no S3 credentials: set --s3-access-key-id and --s3-secret-access-key-file, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an AWS profile (%v)", firstLine(err))
			}
			cfg.Credentials = credentials.NewStaticCredentialsProvider("drover", "drover-secret", "")
		}
	}
	if conn.S3Endpoint != "" {
		if u, err := url.Parse(conn.S3Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, cli.Usagef("--s3-endpoint %q: want a URL like http://127.0.0.1:9000", conn.S3Endpoint)
		}
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if conn.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(conn.S3Endpoint)
		}
		o.UsePathStyle = conn.S3PathStyle
		// Many S3-compatible stores (and gofakes3) reject the newer
		// default integrity checksums; only send them when required.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func isLoopback(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// CheckBuckets makes sure every bucket exists and is reachable; an unknown
// bucket is a usage error naming it.
func CheckBuckets(ctx context.Context, cl *s3.Client, buckets []string) error {
	for _, b := range buckets {
		_, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)})
		if err == nil {
			continue
		}
		var nf *s3types.NotFound
		var nsb *s3types.NoSuchBucket
		if errors.As(err, &nf) || errors.As(err, &nsb) {
			return cli.Usagef("--bucket %s: no such bucket", b)
		}
		return fmt.Errorf("bucket %s: %w", b, err)
	}
	return nil
}
