package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/identity"
	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// DesiredCommand is the command name on commands.devices that sets a
// device's desired state: its payload is a JSON object of key → value.
// The state processor merges it into the shadow; the bridge never sends it
// to the device as a command (the device gets the shadow delta instead,
// on ShadowDeltaTopic).
const DesiredCommand = "desired"

// ShadowDeltaTopic returns the MQTT topic on which a device receives its
// pending shadow delta: devices/{tenant}/{device}/shadow/delta.
func ShadowDeltaTopic(tenant, device string) string {
	return "devices/" + tenant + "/" + device + "/shadow/delta"
}

// Reported returns the device's reported value of key: the metric of
// that name (shortest decimal form), or for "firmware" the firmware.
func Reported(ds *schemas.DeviceState, key string) (string, bool) {
	if v, ok := ds.Metrics[key]; ok {
		return strconv.FormatFloat(v, 'g', -1, 64), true
	}
	if key == "firmware" && ds.Firmware != nil {
		return *ds.Firmware, true
	}
	return "", false
}

// Delta returns the pending delta: the desired keys whose reported value
// is missing or differs. Numbers compare by value (desired "30.0" matches
// a reported 30).
func Delta(ds *schemas.DeviceState) map[string]string {
	d := map[string]string{}
	for k, want := range ds.Desired {
		got, ok := Reported(ds, k)
		if ok && matches(want, got) {
			continue
		}
		d[k] = want
	}
	return d
}

func matches(want, got string) bool {
	if want == got {
		return true
	}
	w, err1 := strconv.ParseFloat(want, 64)
	g, err2 := strconv.ParseFloat(got, 64)
	return err1 == nil && err2 == nil && w == g
}

// ParseDesired reads a desired-state payload: a JSON object whose string
// values are taken as they are, null as "" (remove the key), and other
// values as their JSON text. It refuses an empty object and an empty key.
func ParseDesired(payload string) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &raw); err != nil {
		return nil, fmt.Errorf("want a JSON object of key → value: %w", err)
	}
	if len(raw) == 0 {
		return nil, errors.New("no keys")
	}
	d := make(map[string]string, len(raw))
	for k, v := range raw {
		if k == "" {
			return nil, errors.New("empty key")
		}
		var s string
		switch {
		case string(v) == "null":
		case json.Unmarshal(v, &s) == nil:
		default:
			s = string(v)
		}
		d[k] = s
	}
	return d, nil
}

// Encoder encodes a record for a topic (a *schemas.Serde).
type Encoder interface {
	Encode(ctx context.Context, topic string, v any) ([]byte, error)
}

// SetDesired writes a desired-state update for tenant/device (keys →
// values, "" removes a key) to commands.devices as a DesiredCommand and
// returns its id ("d-" + 16 hex digits). ttl is its deadline from now.
func SetDesired(ctx context.Context, cl *kgo.Client, enc Encoder, tenant, device string, d map[string]string, ttl time.Duration) (string, error) {
	if err := identity.Validate(tenant, device); err != nil {
		return "", err
	}
	if len(d) == 0 {
		return "", errors.New("desired state: no keys")
	}
	for k := range d {
		if k == "" {
			return "", errors.New("desired state: empty key")
		}
	}
	payload, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := "d-" + hex.EncodeToString(b[:])
	now := time.Now().UTC().Truncate(time.Millisecond)
	exp := now.Add(ttl)
	c := schemas.DeviceCommand{CommandID: id, Tenant: tenant, DeviceID: device, Name: DesiredCommand, Payload: string(payload),
		CreatedAt: now, ExpiresAt: &exp, TS: now, IngestedAt: now}
	v, err := enc.Encode(ctx, topics.Commands, &c)
	if err != nil {
		return "", fmt.Errorf("desired state: %w", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Commands, Key: []byte(identity.Key(tenant, device)), Value: v}).FirstErr(); err != nil {
		return "", fmt.Errorf("desired state: producing to %s: %w", topics.Commands, err)
	}
	return id, nil
}
