package topics

// Topic names used by drover's own stages. The full catalogue, with partitions,
// replication and configs, lives in catalogue.yaml; a test keeps the two in step.
const (
	RawSensor   = "raw.sensor"
	RawGPS      = "raw.gps"
	RawImage2D  = "raw.image2d.meta"
	RawImage3D  = "raw.image3d.meta"
	RawVideo2D  = "raw.video2d.meta"
	RawVideo3D  = "raw.video3d.meta"
	MediaEvents = "media.object.events"
	Features    = "features.events"
	Alerts      = "alerts.events"
	StateLatest = "state.latest"
	DLQ         = "dlq.events"
	// Commands carries downlink commands to devices (key = device id); the
	// bridge publishes them to devices/{tenant}/{device_id}/commands.
	Commands = "commands.devices"
	// CommandStatus carries every transition of a command's lifecycle
	// (key = tenant/device_id); see control/.
	CommandStatus = "commands.status"
	// DevicesRegistry is the device registry (compacted; key =
	// tenant/device_id, or tenant for a tenant entry); see registry/.
	DevicesRegistry = "devices.registry"
	// ThirdPartySharing is the Data Act register of user-authorised
	// third-party sharing: stream apps write their sharing evidence and
	// revocations there (Envelope records).
	ThirdPartySharing = "dataact.third_party.sharing"
)

// MediaTopic returns the raw metadata topic for a media kind (image2d,
// image3d, video2d, video3d) and whether the kind is known.
func MediaTopic(kind string) (string, bool) {
	switch kind {
	case "image2d":
		return RawImage2D, true
	case "image3d":
		return RawImage3D, true
	case "video2d":
		return RawVideo2D, true
	case "video3d":
		return RawVideo3D, true
	}
	return "", false
}
