package registry

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicExists asks Kafka (kopts: seed brokers, TLS, SASL) whether the
// registry topic exists, retrying for up to 30s while Kafka does not
// answer. Stages whose registry check defaults to "when there is a
// registry" (the bridge's --registry auto, the processors' offline
// timeouts) decide with it.
func TopicExists(ctx context.Context, kopts []kgo.Opt, topic string) (bool, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		td, err := kadm.NewClient(cl).ListTopics(tctx, topic)
		if err == nil {
			t, ok := td[topic]
			return ok && t.Err == nil, nil
		}
		select {
		case <-tctx.Done():
			return false, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// OfflineTimeout returns the device's own offline timeout, 0 when it has
// none or is not in the view: the shape of the alerts group's
// WithOfflineTimeouts.
func (v *View) OfflineTimeout(tenant, device string) time.Duration {
	if d, ok := v.Device(tenant, device); ok {
		return d.OfflineTimeout
	}
	return 0
}
