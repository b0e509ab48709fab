package devstack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/schemas"
)

// ToolsPrincipal is the embedded broker's principal for tooling
// (mosquitto_pub in the README, scripts) once the broker enforces the
// device registry: it may publish to and subscribe under every device's
// topics, as an operator's test client; its password is kept in
// <data-dir>/mqtt-tools.password. Its messages still meet the bridge's
// registry check (an unregistered device's reading becomes an
// unknown_device dead letter).
const ToolsPrincipal = "drover-tools"

// EnforceRegistry switches the embedded broker to the device registry
// (devices.registry, which Provision creates): a view of the registry is
// restored and kept up to date until Close, and from then on every CONNECT,
// PUBLISH, SUBSCRIBE and delivery is decided by it (RegistryAuth; devices
// connect as TENANT/DEVICE with their secret), with two service
// principals: the bridge (BridgePrincipal, its client ids reserved as
// before) and tooling (ToolsPrincipal). A device the registry suspends or
// revokes is disconnected within moments. The tooling credentials go into
// Endpoints (DROVER_DEV_MQTT_TOOLS_USERNAME, _PASSWORD_FILE).
func (s *Stack) EnforceRegistry(ctx context.Context) error {
	ep := s.Endpoints()
	reg, err := sr.NewClient(sr.URLs(ep.SchemaRegistryURL))
	if err != nil {
		return fmt.Errorf("devstack: registry: %w", err)
	}
	serde, err := schemas.NewSerde(reg)
	if err != nil {
		return fmt.Errorf("devstack: registry: %w", err)
	}
	log := s.log.With("component", "device-registry")
	view, err := registry.NewView([]kgo.Opt{kgo.SeedBrokers(strings.Split(ep.KafkaBrokers, ",")...)}, serde, registry.WithLogger(log))
	if err != nil {
		return fmt.Errorf("devstack: registry view: %w", err)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.stops = append(s.stops, cancel)
	s.mu.Unlock()
	go func() {
		if err := view.Run(bg); err != nil {
			log.Error("device registry view stopped", "err", err)
		}
	}()
	if err := view.WaitReady(ctx); err != nil {
		return fmt.Errorf("devstack: device registry: %w", err)
	}
	bridgePW, err := bridgePassword(ep.MQTTPasswordFile)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	toolsFile := filepath.Join(s.dataDir, "mqtt-tools.password")
	toolsPW, err := bridgePassword(toolsFile)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	bh, err := registry.HashSecret(string(bridgePW))
	if err != nil {
		return err
	}
	th, err := registry.HashSecret(string(toolsPW))
	if err != nil {
		return err
	}
	auth, err := registry.NewAuth(view,
		registry.Service{Name: BridgePrincipal, Secret: bh, ClientIDPrefix: BridgePrincipal, ACL: registry.BridgeACL()},
		registry.Service{Name: ToolsPrincipal, Secret: th, ACL: registry.ACL{
			Publish: routes.Default().Filters(), Subscribe: routes.Default().Filters()}},
	)
	if err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	h := NewRegistryAuth(s.MQTT, auth, s.log.With("component", "mqtt"))
	s.gate.Enforce(h)
	go func() { _ = h.RunKicker(bg, view) }()
	s.mu.Lock()
	s.endpoints.MQTTToolsUsername, s.endpoints.MQTTToolsPasswordFile = ToolsPrincipal, toolsFile
	s.mu.Unlock()
	log.Info("embedded broker enforces the device registry", "devices", len(view.Devices()), "tools_principal", ToolsPrincipal)
	return nil
}
