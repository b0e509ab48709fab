// The JSON shapes of the console's /api (see the Go package console).
export interface Info {
  version: string
  actions: boolean
  db: boolean
  refresh_ms: number
  stages: string[]
  pages: string[]
}

export interface Node {
  id: string
  kind: 'source' | 'stage' | 'topic' | 'store'
  label: string
  stage?: string
  topics?: string[]
  groups?: string[]
  col: number
  row: number
}

export interface Edge {
  from: string
  to: string
  group?: string
  metric?: string
}

export interface StageStatus {
  name: string
  url?: string
  up: boolean
  ready: boolean
  failed?: Record<string, string>
  error?: string
  metrics?: Record<string, number>
  rates?: Record<string, number>
}

export interface TopicStat {
  name: string
  partitions: number
  start: number
  end: number
  records: number
  rate: number | null
}

export interface GroupStat {
  group: string
  state: string
  members: number
  lag: number
  committed: Record<string, number>
  topic_lag: Record<string, number>
  rates?: Record<string, number>
  error?: string
}

export interface TableStat {
  name: string
  rows: number
  exact: boolean
  rate: number | null
  error?: string
}

export interface Snapshot {
  at: string
  topology: { nodes: Node[]; edges: Edge[] }
  stages: StageStatus[]
  topics: TopicStat[]
  groups: GroupStat[]
  edges: { rate: number | null; lag?: number }[]
  dead_letters: { window_minutes: number; per_minute: number; by_stage: Record<string, number>; by_reason: Record<string, number> }
  tables: TableStat[]
  problems?: string[]
}

export interface CatalogueTopic {
  name: string
  description?: string
  in_catalogue: boolean
  on_cluster: boolean
  format?: string
  partitions: number
  replication: number
  records: number
  retention_ms?: string
  cleanup_policy?: string
  subject?: string
  version?: number
  schema_id?: number
  check?: string
  check_field?: string
  check_reason?: string
  drift: string[]
}

export interface SchemaField {
  name: string
  type: string
  doc?: string
  default?: unknown
}

export interface TopicDetail {
  name: string
  replication: number
  partitions: { partition: number; leader: number; start_offset: number; end_offset: number; bytes: number }[]
  configs: { key: string; value: string; source: string; catalogue?: string }[]
  records: number
  bytes: number
  schema?: { subject: string; version: number; id: number; type: string }
  schema_note?: string
  in_catalogue: boolean
  description?: string
  drift: string[]
  versions?: number[]
  doc?: string
  record_name?: string
  fields?: SchemaField[]
  check?: string
  check_field?: string
  check_reason?: string
  schema_text?: string
}

export interface LetterRow {
  partition: number
  offset: number
  time: string
  id: string
  stage: string
  reason: string
  message: string
  source: string
  tenant?: string
  device?: string
  payload_size: number
  excerpt: string
}

export interface LetterList {
  letters: LetterRow[]
  matched: number
  scanned: number
  stages: Record<string, number>
  reasons: Record<string, number>
}

export interface LetterDetail extends LetterRow {
  payload_base64: string
  payload_text: string
  payload_hex: string
  truncated: boolean
  content_type?: string
  headers: Record<string, string>
  kafka_headers: Record<string, string>
  received_at: string
}

export interface Outcome {
  partition: number
  offset: number
  time: string
  id: string
  status: 'redriven' | 'still_failing' | 'not_redrivable' | 'already_redriven'
  topic?: string
  key?: string
  records?: number
  reason?: string
  message?: string
}

export interface RedriveResponse {
  result: { scanned: number; selected: number; redriven: number; records: number; still_failing: number; already_redriven: number; not_redrivable: number; dry_run: boolean }
  outcomes: Outcome[]
}

export interface Device {
  tenant: string
  device_id: string
  online: boolean
  last_seen: string
  lat: number | null
  lon: number | null
  position_ts: string | null
  battery: number | null
  firmware: string | null
  active_alerts: number
  updated_at: string
  // The device's registry entry: status active, suspended, revoked or
  // unregistered; null when the registry could not be read.
  registry: RegistryInfo | null
}

export interface RegistryInfo {
  status: string
  type?: string
  labels?: Record<string, string>
}

export interface RegistryDevice {
  tenant: string
  device_id: string
  status: string
  type: string
  labels: Record<string, string>
  alt_ids: Record<string, string>
  offline_timeout_ms: number
  secret: boolean
  certificates: number
  actor: string
  created_at: string
  updated_at: string
  last_seen: string | null
  online: boolean
}

export interface RegistryTenant {
  id: string
  ca: boolean
  actor: string
  created_at: string
  updated_at: string
  devices: Record<string, number>
}

export interface RegistryList {
  topic: string
  tenants: RegistryTenant[]
  devices: RegistryDevice[]
  total: number
  by_status: Record<string, number>
  unregistered: string[]
  problems?: string[]
}

export interface AlertRow {
  alert_id: string
  rule: string
  kind: string
  tenant: string
  device_id: string
  state: string
  severity: string
  value: number | null
  threshold: number | null
  message: string
  fired_at: string
  resolved_at: string | null
  seconds: number
}

export interface DeviceDetail extends Device {
  metrics: Record<string, number>
  series: Record<string, { t: string; v: number }[]>
  last_fix: { ts: string; lat: number; lon: number } | null
  alerts: AlertRow[]
  dead_letters: LetterRow[]
  registry_device: RegistryDevice | null
  problems?: string[]
}
