package apps

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// TemplateTopic is the catalogue entry whose partitions, replication and
// configs every app target topic gets: apps write derived streams, so they
// follow the derived-stream rules of features.events (30 days, delete).
const TemplateTopic = topics.Features

// TargetSpec returns the catalogue spec of app's target topic: the
// TemplateTopic entry of cat (already capped for the cluster) under the
// target's name.
func TargetSpec(cat *topics.Catalogue, a *App) (topics.Topic, error) {
	t, ok := cat.Lookup(TemplateTopic)
	if !ok {
		return topics.Topic{}, fmt.Errorf("the catalogue has no %s entry to derive app topics from", TemplateTopic)
	}
	t.Name = a.Target
	t.Description = fmt.Sprintf("Derived stream of app %s (drover apps).", a.Name)
	return t, nil
}

// EnsureTarget creates app's target topic when it is missing (an existing
// one is left as it is) and registers its value schema (schemas.AppRecord)
// under TARGET-value with the BACKWARD check of schemas.Register: an
// incompatible schema already registered there is an error, nothing is
// overwritten.
func EnsureTarget(ctx context.Context, adm *kadm.Client, reg *sr.Client, cat *topics.Catalogue, a *App) error {
	spec, err := TargetSpec(cat, a)
	if err != nil {
		return err
	}
	cfg := make(map[string]*string, len(spec.Configs))
	for k, v := range spec.Configs {
		cfg[k] = kadm.StringPtr(v)
	}
	rs, err := adm.CreateTopics(ctx, spec.Partitions, spec.Replication, cfg, spec.Name)
	if err != nil {
		return fmt.Errorf("app %s: creating %s: %w", a.Name, spec.Name, err)
	}
	if r, err := rs.On(spec.Name, nil); err != nil {
		return fmt.Errorf("app %s: creating %s: %w", a.Name, spec.Name, err)
	} else if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("app %s: creating %s: %w %s", a.Name, spec.Name, r.Err, r.ErrMessage)
	}
	if _, err := schemas.Register(ctx, reg, []string{a.Target}, schemas.WithSchemas(map[string]string{a.Target: schemas.AppRecordSchema()})); err != nil {
		return fmt.Errorf("app %s: value schema of %s: %w", a.Name, a.Target, err)
	}
	return nil
}
