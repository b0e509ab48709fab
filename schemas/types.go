package schemas

import "time"

// The Go types below mirror the records in avsc/ field by field. Fields of
// Avro type timestamp-millis are time.Time (millisecond precision on the
// wire, decoded in UTC); nullable fields are pointers; maps default to empty.

// SensorReading is one scalar measurement from a device (topic raw.sensor).
type SensorReading struct {
	EventID    string            `avro:"event_id"`
	Tenant     string            `avro:"tenant"`
	DeviceID   string            `avro:"device_id"`
	TS         time.Time         `avro:"ts"`
	IngestedAt time.Time         `avro:"ingested_at"`
	Metric     string            `avro:"metric"`
	Value      float64           `avro:"value"`
	Unit       *string           `avro:"unit"`
	Source     string            `avro:"source"`
	Replayed   bool              `avro:"replayed"`
	Attrs      map[string]string `avro:"attrs"`
}

// GPSFix is one position fix from a device (topic raw.gps).
type GPSFix struct {
	EventID    string            `avro:"event_id"`
	Tenant     string            `avro:"tenant"`
	DeviceID   string            `avro:"device_id"`
	TS         time.Time         `avro:"ts"`
	IngestedAt time.Time         `avro:"ingested_at"`
	Lat        float64           `avro:"lat"`
	Lon        float64           `avro:"lon"`
	Alt        *float64          `avro:"alt"`
	HDOP       *float64          `avro:"hdop"`
	Speed      *float64          `avro:"speed"`
	Satellites *int32            `avro:"satellites"`
	Source     string            `avro:"source"`
	Replayed   bool              `avro:"replayed"`
	Attrs      map[string]string `avro:"attrs"`
}

// MediaObject is the metadata of one media object stored in S3 (topics
// raw.image2d.meta, raw.image3d.meta, raw.video2d.meta, raw.video3d.meta).
type MediaObject struct {
	EventID     string            `avro:"event_id"`
	Tenant      string            `avro:"tenant"`
	DeviceID    string            `avro:"device_id"`
	TS          time.Time         `avro:"ts"`
	IngestedAt  time.Time         `avro:"ingested_at"`
	Kind        string            `avro:"kind"`
	Bucket      string            `avro:"bucket"`
	Key         string            `avro:"key"`
	Size        int64             `avro:"size"`
	ContentType string            `avro:"content_type"`
	SHA256      *string           `avro:"sha256"`
	ETag        *string           `avro:"etag"`
	Replayed    bool              `avro:"replayed"`
	Attrs       map[string]string `avro:"attrs"`
}

// MediaObjectEvent is one S3 bucket notification record as received (topic
// media.object.events). TS equals EventTime.
type MediaObjectEvent struct {
	EventID      string            `avro:"event_id"`
	EventName    string            `avro:"event_name"`
	Bucket       string            `avro:"bucket"`
	Key          string            `avro:"key"`
	Size         int64             `avro:"size"`
	ETag         *string           `avro:"etag"`
	ContentType  *string           `avro:"content_type"`
	EventTime    time.Time         `avro:"event_time"`
	TS           time.Time         `avro:"ts"`
	IngestedAt   time.Time         `avro:"ingested_at"`
	UserMetadata map[string]string `avro:"user_metadata"`
	Raw          string            `avro:"raw"`
}

// Feature is a windowed aggregate of one device metric, or GPS-derived motion
// when Metric is "motion" (topic features.events). TS equals WindowEnd.
type Feature struct {
	FeatureID    string    `avro:"feature_id"`
	Tenant       string    `avro:"tenant"`
	DeviceID     string    `avro:"device_id"`
	Metric       string    `avro:"metric"`
	WindowStart  time.Time `avro:"window_start"`
	WindowEnd    time.Time `avro:"window_end"`
	WindowSizeMS int64     `avro:"window_size_ms"`
	Count        int64     `avro:"count"`
	Min          *float64  `avro:"min"`
	Max          *float64  `avro:"max"`
	Mean         *float64  `avro:"mean"`
	Stddev       *float64  `avro:"stddev"`
	First        *float64  `avro:"first"`
	Last         *float64  `avro:"last"`
	DistanceM    *float64  `avro:"distance_m"`
	MeanSpeedMPS *float64  `avro:"mean_speed_mps"`
	MaxSpeedMPS  *float64  `avro:"max_speed_mps"`
	MovingS      *float64  `avro:"moving_s"`
	StationaryS  *float64  `avro:"stationary_s"`
	LateUpdates  int64     `avro:"late_updates"`
	TS           time.Time `avro:"ts"`
	IngestedAt   time.Time `avro:"ingested_at"`
}

// Alert is one alert lifecycle event (topic alerts.events).
type Alert struct {
	AlertID    string     `avro:"alert_id"`
	Rule       string     `avro:"rule"`
	Kind       string     `avro:"kind"`
	Tenant     string     `avro:"tenant"`
	DeviceID   string     `avro:"device_id"`
	State      string     `avro:"state"`
	Severity   string     `avro:"severity"`
	Value      *float64   `avro:"value"`
	Threshold  *float64   `avro:"threshold"`
	Message    string     `avro:"message"`
	FiredAt    time.Time  `avro:"fired_at"`
	ResolvedAt *time.Time `avro:"resolved_at"`
	TS         time.Time  `avro:"ts"`
	IngestedAt time.Time  `avro:"ingested_at"`
}

// DeviceState is the latest known state of one device (topic state.latest).
type DeviceState struct {
	Tenant       string             `avro:"tenant"`
	DeviceID     string             `avro:"device_id"`
	TS           time.Time          `avro:"ts"`
	IngestedAt   time.Time          `avro:"ingested_at"`
	Online       bool               `avro:"online"`
	LastSeen     time.Time          `avro:"last_seen"`
	Lat          *float64           `avro:"lat"`
	Lon          *float64           `avro:"lon"`
	PositionTS   *time.Time         `avro:"position_ts"`
	Battery      *float64           `avro:"battery"`
	Firmware     *string            `avro:"firmware"`
	Metrics      map[string]float64 `avro:"metrics"`
	ActiveAlerts int32              `avro:"active_alerts"`
	UpdatedAt    time.Time          `avro:"updated_at"`
	// Desired is the desired state, key → value; Version counts its
	// changes.
	Desired map[string]string `avro:"desired"`
	Version int64             `avro:"version"`
}

// DeadLetter is a message a stage could not process (topic dlq.events).
// TS equals ReceivedAt.
type DeadLetter struct {
	ID          string            `avro:"id"`
	Stage       string            `avro:"stage"`
	Reason      string            `avro:"reason"`
	Message     string            `avro:"message"`
	Source      string            `avro:"source"`
	Tenant      *string           `avro:"tenant"`
	DeviceID    *string           `avro:"device_id"`
	Payload     []byte            `avro:"payload"`
	PayloadSize int64             `avro:"payload_size"`
	Truncated   bool              `avro:"truncated"`
	ContentType *string           `avro:"content_type"`
	Headers     map[string]string `avro:"headers"`
	ReceivedAt  time.Time         `avro:"received_at"`
	TS          time.Time         `avro:"ts"`
	IngestedAt  time.Time         `avro:"ingested_at"`
}

// DeviceCommand is a downlink command for a device (topic commands.devices,
// Avro record io.drover.Command; the Go name leaves Command to the CLI).
// TS equals CreatedAt.
type DeviceCommand struct {
	CommandID  string     `avro:"command_id"`
	Tenant     string     `avro:"tenant"`
	DeviceID   string     `avro:"device_id"`
	Name       string     `avro:"name"`
	Payload    string     `avro:"payload"`
	CreatedAt  time.Time  `avro:"created_at"`
	ExpiresAt  *time.Time `avro:"expires_at"`
	TS         time.Time  `avro:"ts"`
	IngestedAt time.Time  `avro:"ingested_at"`
	// ReplyTopic is the MQTT v5 Response Topic; nil means the default
	// devices/{tenant}/{device_id}/replies/{command_id}.
	ReplyTopic *string `avro:"reply_topic"`
}

// CommandStatus is one transition of a command's lifecycle (topic
// commands.status, Avro record io.drover.CommandStatus; key =
// tenant/device_id). TS is when the transition happened.
type CommandStatus struct {
	CommandID  string     `avro:"command_id"`
	Tenant     string     `avro:"tenant"`
	DeviceID   string     `avro:"device_id"`
	Name       string     `avro:"name"`
	Status     string     `avro:"status"`
	CreatedAt  time.Time  `avro:"created_at"`
	ExpiresAt  *time.Time `avro:"expires_at"`
	Payload    *string    `avro:"payload"`
	Result     *string    `avro:"result"`
	Message    *string    `avro:"message"`
	TS         time.Time  `avro:"ts"`
	IngestedAt time.Time  `avro:"ingested_at"`
}

// RegistryRecord is one entry of the device registry (topic
// devices.registry, compacted): a device (Kind "device", key
// tenant/device_id) or a tenant (Kind "tenant", key tenant). Package
// registry owns its meaning; this is the wire form.
type RegistryRecord struct {
	Kind             string            `avro:"kind"`
	Tenant           string            `avro:"tenant"`
	DeviceID         string            `avro:"device_id"`
	Status           string            `avro:"status"`
	DeviceType       string            `avro:"device_type"`
	Labels           map[string]string `avro:"labels"`
	AltIDs           map[string]string `avro:"alt_ids"`
	OfflineTimeoutMS *int64            `avro:"offline_timeout_ms"`
	Secret           *SecretHash       `avro:"secret"`
	CertFingerprints []string          `avro:"cert_fingerprints"`
	CACertPEM        *string           `avro:"ca_cert_pem"`
	Actor            *string           `avro:"actor"`
	CreatedAt        time.Time         `avro:"created_at"`
	UpdatedAt        time.Time         `avro:"updated_at"`
	TS               time.Time         `avro:"ts"`
	IngestedAt       time.Time         `avro:"ingested_at"`
}

// SecretHash is a salted PBKDF2 hash of a device secret (Avro record
// io.drover.SecretHash, nested in RegistryRecord).
type SecretHash struct {
	Algorithm  string `avro:"algorithm"`
	Iterations int32  `avro:"iterations"`
	Salt       []byte `avro:"salt"`
	Hash       []byte `avro:"hash"`
}

// Envelope is the shared record of the governance, data-act, security,
// resilience and compliance topics; Payload is a JSON document.
type Envelope struct {
	EventID    string            `avro:"event_id"`
	EventType  string            `avro:"event_type"`
	TS         time.Time         `avro:"ts"`
	IngestedAt time.Time         `avro:"ingested_at"`
	Tenant     *string           `avro:"tenant"`
	Subject    *string           `avro:"subject"`
	Actor      *string           `avro:"actor"`
	Payload    string            `avro:"payload"`
	Attributes map[string]string `avro:"attributes"`
}

// AppRecord is one record of a stream app's derived stream; Payload is the
// SELECTed fields as a JSON object.
type AppRecord struct {
	EventID        string    `avro:"event_id"`
	App            string    `avro:"app"`
	Tenant         string    `avro:"tenant"`
	SourceTenant   string    `avro:"source_tenant"`
	DeviceID       string    `avro:"device_id"`
	TS             time.Time `avro:"ts"`
	IngestedAt     time.Time `avro:"ingested_at"`
	SourceTopic    string    `avro:"source_topic"`
	SourceEventIDs []string  `avro:"source_event_ids"`
	Agreement      *string   `avro:"agreement"`
	Payload        string    `avro:"payload"`
}
