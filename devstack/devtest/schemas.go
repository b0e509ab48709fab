package devtest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/schemas"
)

// Schemas registers the schemas of names (none: every catalogue topic) in
// the schema registry at url and returns a client of that registry and a
// serde over it.
func Schemas(t testing.TB, url string, names ...string) (*schemas.Serde, *sr.Client) {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatalf("devtest: registry client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if len(names) == 0 {
		names = schemas.Topics()
	}
	if _, err := schemas.Register(ctx, cl, names); err != nil {
		t.Fatalf("devtest: register schemas: %v", err)
	}
	s, err := schemas.NewSerde(cl)
	if err != nil {
		t.Fatalf("devtest: serde: %v", err)
	}
	return s, cl
}
