package lorawan

import (
	"encoding/json"

	"github.com/drover-iot/drover/ingest/decode"
)

// ChirpStack v4 events in the JSON encoding (the protobuf JSON mapping of
// integration.proto: camelCase names, fields at their zero value omitted,
// bytes base64).
type csDeviceInfo struct {
	DevEui string `json:"devEui"`
}

type csRx struct {
	GatewayID string   `json:"gatewayId"`
	RSSI      *float64 `json:"rssi"`
	SNR       *float64 `json:"snr"`
}

type csEvent struct {
	Time       string          `json:"time"`
	DeviceInfo *csDeviceInfo   `json:"deviceInfo"`
	DevAddr    string          `json:"devAddr"`
	FCnt       *uint32         `json:"fCnt"`
	FPort      *uint32         `json:"fPort"`
	Data       []byte          `json:"data"`
	Object     json.RawMessage `json:"object"`
	RxInfo     []csRx          `json:"rxInfo"`

	Margin                  *float64 `json:"margin"`
	ExternalPowerSource     bool     `json:"externalPowerSource"`
	BatteryLevelUnavailable bool     `json:"batteryLevelUnavailable"`
	BatteryLevel            *float64 `json:"batteryLevel"`
}

// ParseChirpStack parses the body of a ChirpStack v4 HTTP integration call
// with the query parameter event=kind. Events other than up, join and
// status are KindIgnored (their body is not read). It returns a
// *decode.Error when the body cannot be accepted.
func ParseChirpStack(kind string, body []byte) (*Event, error) {
	switch Kind(kind) {
	case KindUp, KindJoin, KindStatus:
	case "":
		return nil, newErr(decode.StageRoute, decode.ReasonMissingField, "event", "the event query parameter is missing (ChirpStack sends ?event=up, join, status, ...)")
	default:
		return &Event{Network: ChirpStack, Kind: KindIgnored}, nil
	}
	var e csEvent
	if err := parseJSON(body, &e, "ChirpStack "+kind+" event"); err != nil {
		return nil, err
	}
	if e.DeviceInfo == nil {
		return nil, newErr(decode.StageDecode, decode.ReasonMissingField, "deviceInfo", "deviceInfo is missing")
	}
	ev := &Event{Network: ChirpStack, Kind: Kind(kind), DevAddr: e.DevAddr}
	var err error
	if ev.DevEUI, err = eui(e.DeviceInfo.DevEui, "deviceInfo.devEui"); err != nil {
		return nil, err
	}
	if ev.Time, err = rfc3339(e.Time, "time"); err != nil {
		return nil, err
	}
	switch ev.Kind {
	case KindUp:
		ev.FCnt, ev.FPort, ev.Data = orZero(e.FCnt), orZero(e.FPort), e.Data
		if ev.Object, err = objectField(e.Object, "object"); err != nil {
			return nil, err
		}
		for _, r := range e.RxInfo {
			ev.Rx = append(ev.Rx, Rx{Gateway: r.GatewayID, RSSI: r.RSSI, SNR: r.SNR})
		}
	case KindStatus:
		ev.Status = &Status{Margin: e.Margin, ExternalPowerSource: e.ExternalPowerSource,
			BatteryLevelUnavailable: e.BatteryLevelUnavailable, BatteryLevel: e.BatteryLevel}
	}
	return ev, nil
}

// orZero returns p, or a pointer to 0 when p is nil: the JSON mapping
// omits a counter at zero.
func orZero(p *uint32) *uint32 {
	if p == nil {
		return new(uint32)
	}
	return p
}
