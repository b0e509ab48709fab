package simulate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
)

// DeviceType is the registry type of the simulator's collars (its WildFi
// collars are registry.TypeWildFi).
const DeviceType = "collar"

// HerdLabel is the registry label RegisterHerd gives each new device: the
// herd it grazes with, "north" for the even devices of the herd and
// "south" for the odd ones, so analysts on `drover dev` have labels to
// join (processors/timescale/README.md, "Labels").
const HerdLabel = "herd"

func herdOf(i int) string {
	if i%2 == 0 {
		return "north"
	}
	return "south"
}

// RegisterHerd makes every device of cfg's herd (Herd) a registered,
// active device of cfg's tenant (labelled HerdLabel) with a secret in the CSV file secretsPath,
// and returns the secrets (Config.Credentials). It reads the registry with
// kopts and serde (a view, restored first), adds the tenant and the devices
// that are missing (all at once), gives a new secret (a rotation) to every
// registered device whose secret the file does not hold, and rewrites the
// file (mode 0600). Suspended and revoked devices are left as they are: an
// operator did that, and the broker refuses them. `drover dev` calls it
// before its simulator connects; `drover simulate --register` too.
func RegisterHerd(ctx context.Context, cfg Config, kopts []kgo.Opt, serde *schemas.Serde, secretsPath string, log *slog.Logger) (map[string]string, error) {
	if log == nil {
		log = slog.Default()
	}
	tenant := cfg.Tenant
	if tenant == "" {
		tenant = DefaultTenant
	}
	herd, err := Herd(cfg)
	if err != nil {
		return nil, err
	}
	secrets, err := ReadSecrets(secretsPath, tenant)
	if errors.Is(err, os.ErrNotExist) {
		secrets, err = map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	view, err := registry.NewView(kopts, serde, registry.WithLogger(log))
	if err != nil {
		return nil, err
	}
	vctx, stopView := context.WithCancel(ctx)
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Run(vctx) }()
	defer func() { stopView(); <-viewDone }()
	if err := view.WaitReady(ctx); err != nil {
		return nil, fmt.Errorf("device registry: %w", err)
	}
	producer, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...), kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return nil, err
	}
	defer producer.Close()
	store := registry.NewStore(view, producer, serde, registry.WithActor("drover simulate"))
	if _, ok := view.Tenant(tenant); !ok {
		if _, err := store.AddTenant(ctx, tenant, ""); err != nil && !errors.Is(err, registry.ErrExists) {
			return nil, fmt.Errorf("registering tenant %s: %w", tenant, err)
		}
	}
	var add []registry.NewDevice
	rotated := 0
	order := make([]string, len(herd))
	for i, hd := range herd {
		order[i] = hd.ID
		d, ok := view.Device(tenant, hd.ID)
		if !ok {
			typ := DeviceType
			if hd.WildFi {
				typ = registry.TypeWildFi
			}
			add = append(add, registry.NewDevice{Tenant: tenant, ID: hd.ID, Type: typ, Labels: map[string]string{HerdLabel: herdOf(i)}})
			continue
		}
		if !d.Active() {
			log.Warn("simulate: device is not active in the registry; the broker will refuse it", "device", d.Key(), "status", d.Status)
			continue
		}
		if s, known := secrets[hd.ID]; known && d.Secret != nil && d.Secret.Verify([]byte(s)) {
			continue
		}
		a, err := store.Rotate(ctx, tenant, hd.ID)
		if err != nil {
			return nil, fmt.Errorf("new secret for %s: %w", identity.Key(tenant, hd.ID), err)
		}
		secrets[hd.ID] = a.Secret
		rotated++
	}
	if len(add) > 0 {
		added, err := store.AddDevices(ctx, add, false)
		if err != nil {
			return nil, fmt.Errorf("registering the simulated devices: %w", err)
		}
		for _, a := range added {
			secrets[a.Device.ID] = a.Secret
		}
	}
	if len(add) > 0 || rotated > 0 {
		if err := WriteSecrets(secretsPath, tenant, secrets, order); err != nil {
			return nil, fmt.Errorf("writing %s: %w", secretsPath, err)
		}
	}
	log.Info("simulate: herd registered", "tenant", tenant, "devices", len(herd), "added", len(add), "new_secrets", rotated, "secrets_file", secretsPath)
	return secrets, nil
}
