package smoke

import (
	"errors"
	"testing"
	"time"

	"github.com/drover-iot/drover/bridge/simulate"
	"github.com/drover-iot/drover/ingest/decode"
	"github.com/drover-iot/drover/ingest/routes"
)

// TestReasonStageMatchesBridge runs every invalid fixture through the
// bridge's default routes and decoders and checks that reasonStage names
// the stage the bridge really reports, so no dlq check runs without a
// stage.
func TestReasonStageMatchesBridge(t *testing.T) {
	for _, c := range simulate.Classes() {
		if reasonStage[c] == "" {
			t.Errorf("reasonStage has no stage for class %s", c)
		}
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	routes := routes.Default()
	for _, f := range simulate.FixturesAt(now, "smoke", "smoke-x-dev") {
		if f.Valid {
			continue
		}
		var de *decode.Error
		m, err := routes.Route(f.Topic, "default")
		if err == nil {
			in := decode.Input{Tenant: m.Tenant, DeviceID: m.Device, Source: m.Source, Kind: m.Kind, Payload: f.Payload, ReceivedAt: now}
			var out decode.Output
			err = decode.Decode(m.Route.Decoder.Func, &in, decode.DefaultLimits(), &out)
		}
		if !errors.As(err, &de) {
			t.Errorf("%s: bridge verdict %v, want a rejection", f.Name, err)
			continue
		}
		if string(de.Reason) != string(f.Class) || string(de.Stage) != reasonStage[f.Class] {
			t.Errorf("%s: bridge says %s/%s, smoke expects %s/%s", f.Name, de.Stage, de.Reason, reasonStage[f.Class], f.Class)
		}
	}
}
