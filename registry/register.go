package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/schemas"
)

// RegisterDevices makes sure tenant and the devices ids exist in the
// registry of a running stack (Kafka reached with kopts, devices.registry
// provisioned): the tenant is added when missing, every id not yet
// registered is added with type "collar" ("wildfi" for an id starting
// with "wildfi-"); ids already registered are left as they are. It returns
// once the records are written; views started afterwards see them at once.
// Load generators and tests use it for devices that publish without
// credentials of their own (through a tooling principal or a broker that
// does not check).
func RegisterDevices(ctx context.Context, kopts []kgo.Opt, serde *schemas.Serde, actor, tenant string, ids []string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	view, err := NewView(kopts, serde, WithLogger(log))
	if err != nil {
		return err
	}
	vctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- view.Run(vctx) }()
	defer func() { cancel(); <-done }()
	if err := view.WaitReady(ctx); err != nil {
		return fmt.Errorf("registry view: %w", err)
	}
	producer, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return err
	}
	defer producer.Close()
	store := NewStore(view, producer, serde, WithActor(actor))
	if _, ok := view.Tenant(tenant); !ok {
		if _, err := store.AddTenant(ctx, tenant, ""); err != nil && !errors.Is(err, ErrExists) {
			return fmt.Errorf("add tenant %s: %w", tenant, err)
		}
	}
	var nds []NewDevice
	for _, id := range ids {
		if _, ok := view.Device(tenant, id); ok {
			continue
		}
		typ := "collar"
		if strings.HasPrefix(id, "wildfi-") {
			typ = TypeWildFi
		}
		nds = append(nds, NewDevice{Tenant: tenant, ID: id, Type: typ})
	}
	if len(nds) == 0 {
		return nil
	}
	if _, err := store.AddDevices(ctx, nds, false); err != nil {
		return fmt.Errorf("add devices: %w", err)
	}
	return nil
}
