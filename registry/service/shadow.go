package service

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/control"
	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/processors/state"
	"github.com/drover-iot/drover/schemas"
)

// desiredTTL is the deadline of a desired-state update on commands.devices
// (the state processor applies it whenever it reads it; the bridge never
// sends it as a command).
const desiredTTL = time.Hour

// kafkaShadow is the API's view of device shadows: desired-state updates
// go to commands.devices (as `drover state set` writes them), the state is
// read from state.latest (as `drover state get` reads it).
type kafkaShadow struct {
	cl    *kgo.Client
	kopts []kgo.Opt
	serde *schemas.Serde
}

func (s kafkaShadow) SetDesired(ctx context.Context, tenant, device string, d map[string]string) (string, error) {
	return control.SetDesired(ctx, s.cl, s.serde, tenant, device, d, desiredTTL)
}

func (s kafkaShadow) State(ctx context.Context, tenant, device string) (json.RawMessage, bool, error) {
	ds, err := state.Lookup(ctx, s.kopts, s.serde, identity.Key(tenant, device))
	if errors.Is(err, state.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b, err := json.Marshal(state.ViewOf(ds))
	return b, true, err
}
