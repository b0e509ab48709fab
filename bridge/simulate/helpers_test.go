package simulate

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/drover-iot/drover/ingest/decode"
	routestable "github.com/drover-iot/drover/ingest/routes"
)

// fakeClock is a settable Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var epoch = time.Date(2026, 5, 1, 6, 0, 0, 0, time.UTC)

// routes is the bridge's default routing table (MQTT topic → decoder →
// Kafka topic).
var routes = routestable.Default()

// route routes topic with the bridge's default table, WildFi collars
// getting FixtureTenant. It returns the route-stage reason for topics no
// route takes.
func route(topic string) (dec decode.Decoder, in decode.Input, kafkaTopic string, reason decode.Reason) {
	m, err := routes.Route(topic, FixtureTenant)
	if err != nil {
		var de *decode.Error
		if !errors.As(err, &de) {
			panic(err)
		}
		return dec, in, "", de.Reason
	}
	return m.Route.Decoder, decode.Input{Tenant: m.Tenant, DeviceID: m.Device, Source: m.Source, Kind: m.Kind}, m.Topic, ""
}

// bridgeVerdict runs one message through route and the bridge's decoder at
// receive time now: the Kafka topic and record count, or the reason.
func bridgeVerdict(t *testing.T, topic string, payload []byte, now time.Time) (kafkaTopic string, records int, reason decode.Reason, err error) {
	t.Helper()
	dec, in, kt, r := route(topic)
	if r != "" {
		return "", 0, r, nil
	}
	in.Payload = payload
	in.ReceivedAt = now
	var out decode.Output
	if err := decode.Decode(dec.Func, &in, decode.DefaultLimits(), &out); err != nil {
		de, ok := err.(*decode.Error)
		if !ok {
			return "", 0, "", err
		}
		return "", 0, de.Reason, de
	}
	return kt, out.Len(), "", nil
}

// parseAnyTS reads a ts as the payloads carry it: RFC 3339 or epoch ms.
func parseAnyTS(v any) (time.Time, error) {
	switch x := v.(type) {
	case float64:
		return time.UnixMilli(int64(x)).UTC(), nil
	case string:
		return time.Parse(time.RFC3339Nano, x)
	}
	return time.Time{}, fmt.Errorf("ts %v is neither a number nor a string", v)
}
