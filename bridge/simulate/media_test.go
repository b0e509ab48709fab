package simulate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/devstack/devtest"
)

func TestNewMedia(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ts := time.Date(2026, 3, 9, 23, 59, 0, 0, time.FixedZone("NZDT", 13*3600))
	uuidRE := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	for _, kind := range MediaKinds {
		m := newMedia(r, kind, "b", "t", "d", ts)
		ext, ctype := mediaExt(kind)
		// The date is the UTC capture date.
		if !regexp.MustCompile("^" + kind + `/t/d/2026/03/09/` + uuidRE + `\.` + ext + "$").MatchString(m.Key) {
			t.Errorf("key %q", m.Key)
		}
		sum := sha256.Sum256(m.Body)
		if m.SHA256 != hex.EncodeToString(sum[:]) || m.ContentType != ctype || len(m.Body) < 8<<10 || len(m.Body) > 48<<10 {
			t.Errorf("%s: sha %s, type %s, %d bytes", kind, m.SHA256, m.ContentType, len(m.Body))
		}
	}
}

// TestIntegrationBucketCreated checks that a missing bucket is created when
// asked to, and that an unreachable S3 fails the run naming the endpoint.
func TestIntegrationBucketCreated(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	broker, endpoint := devtest.MQTT(t), devtest.S3(t)
	sum, err := Run(context.Background(), Config{MQTTURL: broker, Devices: 1, Count: 3, Rate: 100, MediaRatio: 1, WildFiRatio: -1, SenMLRatio: -1,
		Bucket: "fresh-bucket", S3: S3Config{Endpoint: endpoint, PathStyle: true, CreateBucket: true}, SummaryEvery: -1}, devtest.Logger())
	if err != nil || sum.MediaUploads != 3 {
		t.Fatalf("run: %v, %s", err, sum)
	}
	_, err = Run(context.Background(), Config{MQTTURL: broker, Devices: 1, Count: 3, MediaRatio: 1, WildFiRatio: -1, SenMLRatio: -1,
		S3: S3Config{Endpoint: "http://127.0.0.1:1", PathStyle: true, CreateBucket: true}, ConnectTimeout: 5 * time.Second}, devtest.Logger())
	if err == nil || !strings.Contains(err.Error(), "s3 http://127.0.0.1:1") {
		t.Fatalf("error = %v, want it to name the S3 endpoint", err)
	}
}
