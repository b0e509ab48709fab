package simulate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// DefaultBucket is the bucket media objects go to unless Config.Bucket says
// otherwise.
const DefaultBucket = "drover-media"

// MediaKinds are the media kinds of the devices/{tenant}/{device}/media/{kind}
// channel, each with its raw.{kind}.meta topic.
var MediaKinds = []string{"image2d", "image3d", "video2d", "video3d"}

// Media is one object a simulated camera uploads before publishing its
// metadata message.
type Media struct {
	Kind        string
	Bucket      string
	Key         string
	ContentType string
	Body        []byte
	// SHA256 is the hex SHA-256 of Body, as sent in the metadata message.
	SHA256 string
}

func mediaExt(kind string) (ext, contentType string) {
	switch kind {
	case "image2d":
		return "jpg", "image/jpeg"
	case "image3d":
		return "ply", "application/x-ply"
	case "video2d":
		return "mp4", "video/mp4"
	default: // video3d: depth video in a Matroska container
		return "mkv", "video/x-matroska"
	}
}

// mediaKey lays out keys as {kind}/{tenant}/{device}/YYYY/MM/DD/{uuid}.{ext},
// the date being the capture (event) date in UTC.
func mediaKey(kind, tenant, device string, ts time.Time, id, ext string) string {
	return fmt.Sprintf("%s/%s/%s/%s/%s.%s", kind, tenant, device, ts.UTC().Format("2006/01/02"), id, ext)
}

// uuid4 returns a random (version 4) UUID drawn from r, so seeded runs name
// their objects reproducibly.
func uuid4(r *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// mediaBody returns size bytes that start like a file of the kind (magic
// numbers, a PLY header) followed by pseudo-random content.
func mediaBody(r *rand.Rand, kind string, size int) []byte {
	var head []byte
	switch kind {
	case "image2d":
		head = []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00}
	case "image3d":
		head = []byte("ply\nformat binary_little_endian 1.0\nelement vertex 4096\nproperty float x\nproperty float y\nproperty float z\nend_header\n")
	case "video2d":
		head = []byte{0x00, 0x00, 0x00, 0x18, 'f', 't', 'y', 'p', 'i', 's', 'o', 'm'}
	default:
		head = []byte{0x1a, 0x45, 0xdf, 0xa3}
	}
	b := make([]byte, size)
	n := copy(b, head)
	for i := n; i < size; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func newMedia(r *rand.Rand, kind, bucket, tenant, device string, ts time.Time) *Media {
	ext, ctype := mediaExt(kind)
	size := 8<<10 + r.IntN(40<<10)
	body := mediaBody(r, kind, size)
	sum := sha256.Sum256(body)
	return &Media{
		Kind:        kind,
		Bucket:      bucket,
		Key:         mediaKey(kind, tenant, device, ts, uuid4(r), ext),
		ContentType: ctype,
		Body:        body,
		SHA256:      hex.EncodeToString(sum[:]),
	}
}

// S3Config says where media objects go.
type S3Config struct {
	// Endpoint is the S3 endpoint URL; empty means AWS itself.
	Endpoint string
	// Region defaults to us-east-1.
	Region string
	// PathStyle selects path-style addressing (MinIO, SeaweedFS, the
	// embedded S3).
	PathStyle bool
	// CreateBucket creates the bucket when it does not exist (the default
	// for drover dev; off against real deployments).
	CreateBucket bool
}

// newS3Client builds an S3 client from the default AWS credential chain.
// Against a custom endpoint with no AWS credentials in the environment it
// uses static dummy credentials: the embedded S3 ignores signatures.
func newS3Client(ctx context.Context, c S3Config) (*s3.Client, error) {
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if c.Endpoint != "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("drover", "drover-secret", "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		// The embedded S3 and many S3-compatible stores reject the newer
		// default integrity checksums; only send them when required.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// ensureBucket creates bucket when it is missing.
func ensureBucket(ctx context.Context, cl *s3.Client, bucket string) error {
	_, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return nil
	}
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	_, err = cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err == nil || errors.As(err, &owned) || errors.As(err, &exists) {
		return nil
	}
	return fmt.Errorf("bucket %s does not exist and creating it failed: %w", bucket, err)
}

// putMedia uploads m.
func putMedia(ctx context.Context, cl *s3.Client, m *Media) error {
	_, err := cl.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(m.Bucket),
		Key:           aws.String(m.Key),
		Body:          bytes.NewReader(m.Body),
		ContentLength: aws.Int64(int64(len(m.Body))),
		ContentType:   aws.String(m.ContentType),
		Metadata:      map[string]string{"sha256": m.SHA256},
	})
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", m.Bucket, m.Key, err)
	}
	return nil
}
