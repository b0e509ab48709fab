package lorawan

import (
	"encoding/json"

	"github.com/drover-iot/drover/ingest/decode"
)

// The Things Stack v3 application-layer messages (webhook JSON: snake_case
// names, fields at their zero value omitted, bytes base64).
type ttsIDs struct {
	DevEUI  string `json:"dev_eui"`
	DevAddr string `json:"dev_addr"`
}

type ttsRx struct {
	GatewayIDs struct {
		GatewayID string `json:"gateway_id"`
	} `json:"gateway_ids"`
	RSSI *float64 `json:"rssi"`
	SNR  *float64 `json:"snr"`
}

type ttsUplink struct {
	FPort          *uint32         `json:"f_port"`
	FCnt           *uint32         `json:"f_cnt"`
	FRMPayload     []byte          `json:"frm_payload"`
	DecodedPayload json.RawMessage `json:"decoded_payload"`
	RxMetadata     []ttsRx         `json:"rx_metadata"`
	ReceivedAt     string          `json:"received_at"`
}

type ttsMessage struct {
	EndDeviceIDs  *ttsIDs    `json:"end_device_ids"`
	ReceivedAt    string     `json:"received_at"`
	UplinkMessage *ttsUplink `json:"uplink_message"`
	JoinAccept    *struct {
		ReceivedAt string `json:"received_at"`
	} `json:"join_accept"`
}

// ParseTTS parses the body of a The Things Stack webhook call: an uplink
// message (KindUp) or a join-accept (KindJoin); any other message (downlink
// events, location, service data) is KindIgnored. It returns a
// *decode.Error when the body cannot be accepted.
func ParseTTS(body []byte) (*Event, error) {
	var m ttsMessage
	if err := parseJSON(body, &m, "The Things Stack message"); err != nil {
		return nil, err
	}
	if m.UplinkMessage == nil && m.JoinAccept == nil {
		return &Event{Network: TTS, Kind: KindIgnored}, nil
	}
	if m.EndDeviceIDs == nil {
		return nil, newErr(decode.StageDecode, decode.ReasonMissingField, "end_device_ids", "end_device_ids is missing")
	}
	ev := &Event{Network: TTS, DevAddr: m.EndDeviceIDs.DevAddr}
	var err error
	if ev.DevEUI, err = eui(m.EndDeviceIDs.DevEUI, "end_device_ids.dev_eui"); err != nil {
		return nil, err
	}
	if m.JoinAccept != nil {
		ev.Kind = KindJoin
		at, field := m.JoinAccept.ReceivedAt, "join_accept.received_at"
		if at == "" {
			at, field = m.ReceivedAt, "received_at"
		}
		if ev.Time, err = rfc3339(at, field); err != nil {
			return nil, err
		}
		return ev, nil
	}
	u := m.UplinkMessage
	ev.Kind = KindUp
	at, field := u.ReceivedAt, "uplink_message.received_at"
	if at == "" {
		at, field = m.ReceivedAt, "received_at"
	}
	if ev.Time, err = rfc3339(at, field); err != nil {
		return nil, err
	}
	ev.FCnt, ev.FPort, ev.Data = orZero(u.FCnt), orZero(u.FPort), u.FRMPayload
	if ev.Object, err = objectField(u.DecodedPayload, "uplink_message.decoded_payload"); err != nil {
		return nil, err
	}
	for _, r := range u.RxMetadata {
		ev.Rx = append(ev.Rx, Rx{Gateway: r.GatewayIDs.GatewayID, RSSI: r.RSSI, SNR: r.SNR})
	}
	return ev, nil
}
