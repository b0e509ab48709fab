-- Time-series tables: hypertables on TimescaleDB, daily range partitions
-- (created ahead by the sink) on plain PostgreSQL. Their natural keys include
-- ts, as both require of a unique key.

CREATE TABLE sensor_readings (
    ts          timestamptz      NOT NULL,
    tenant      text             NOT NULL,
    device_id   text             NOT NULL,
    metric      text             NOT NULL,
    value       double precision NOT NULL,
    unit        text,
    ingested_at timestamptz      NOT NULL,
    source      text             NOT NULL DEFAULT '',
    event_id    text             NOT NULL,
    replayed    boolean          NOT NULL DEFAULT false,
    attrs       jsonb,
    written_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id, metric, ts)
){{if not .Timescale}} PARTITION BY RANGE (ts){{end}};

CREATE TABLE gps_fixes (
    ts          timestamptz      NOT NULL,
    tenant      text             NOT NULL,
    device_id   text             NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    alt         double precision,
    hdop        double precision,
    speed       double precision,
    satellites  integer,
    ingested_at timestamptz      NOT NULL,
    source      text             NOT NULL DEFAULT '',
    event_id    text             NOT NULL,
    replayed    boolean          NOT NULL DEFAULT false,
    attrs       jsonb,
    written_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id, ts)
){{if not .Timescale}} PARTITION BY RANGE (ts){{end}};

CREATE TABLE features (
    ts             timestamptz      NOT NULL,
    feature_id     text             NOT NULL,
    tenant         text             NOT NULL,
    device_id      text             NOT NULL,
    metric         text             NOT NULL,
    window_start   timestamptz      NOT NULL,
    window_end     timestamptz      NOT NULL,
    window_size_ms bigint           NOT NULL,
    count          bigint           NOT NULL,
    min            double precision,
    max            double precision,
    mean           double precision,
    stddev         double precision,
    first          double precision,
    last           double precision,
    distance_m     double precision,
    mean_speed_mps double precision,
    max_speed_mps  double precision,
    moving_s       double precision,
    stationary_s   double precision,
    late_updates   bigint           NOT NULL DEFAULT 0,
    ingested_at    timestamptz      NOT NULL,
    written_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (feature_id, ts)
){{if not .Timescale}} PARTITION BY RANGE (ts){{end}};
{{if .Timescale}}
SELECT {{.TS}}.create_hypertable('sensor_readings', 'ts', chunk_time_interval => INTERVAL '{{.ChunkInterval}}');
SELECT {{.TS}}.create_hypertable('gps_fixes', 'ts', chunk_time_interval => INTERVAL '{{.ChunkInterval}}');
SELECT {{.TS}}.create_hypertable('features', 'ts', chunk_time_interval => INTERVAL '{{.ChunkInterval}}');
{{else}}
CREATE INDEX sensor_readings_ts_brin ON sensor_readings USING brin (ts);
CREATE INDEX gps_fixes_ts_brin ON gps_fixes USING brin (ts);
CREATE INDEX features_ts_brin ON features USING brin (ts);
{{end}}
CREATE INDEX features_device_ts ON features (tenant, device_id, metric, ts);

-- One row per media object (bucket, key); a replayed copy writes nothing.
CREATE TABLE media_objects (
    bucket       text        NOT NULL,
    key          text        NOT NULL,
    ts           timestamptz NOT NULL,
    tenant       text        NOT NULL,
    device_id    text        NOT NULL,
    kind         text        NOT NULL,
    size         bigint      NOT NULL,
    content_type text        NOT NULL,
    sha256       text,
    etag         text,
    replayed     boolean     NOT NULL DEFAULT false,
    event_id     text        NOT NULL,
    ingested_at  timestamptz NOT NULL,
    attrs        jsonb,
    written_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key)
);
CREATE INDEX media_objects_device_ts ON media_objects (tenant, device_id, ts);

-- One row per alert, updated through its lifecycle (firing, then resolved).
CREATE TABLE alerts (
    alert_id    text             PRIMARY KEY,
    rule        text             NOT NULL,
    kind        text             NOT NULL,
    tenant      text             NOT NULL,
    device_id   text             NOT NULL,
    state       text             NOT NULL,
    severity    text             NOT NULL,
    value       double precision,
    threshold   double precision,
    message     text             NOT NULL,
    fired_at    timestamptz      NOT NULL,
    resolved_at timestamptz,
    ts          timestamptz      NOT NULL,
    ingested_at timestamptz      NOT NULL,
    written_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX alerts_rule_fired ON alerts (rule, fired_at);
CREATE INDEX alerts_device ON alerts (tenant, device_id, fired_at);

-- One row per device: the latest state; an older state never overwrites a newer one.
CREATE TABLE device_state (
    tenant        text             NOT NULL,
    device_id     text             NOT NULL,
    ts            timestamptz      NOT NULL,
    ingested_at   timestamptz      NOT NULL,
    online        boolean          NOT NULL,
    last_seen     timestamptz      NOT NULL,
    lat           double precision,
    lon           double precision,
    position_ts   timestamptz,
    battery       double precision,
    firmware      text,
    metrics       jsonb            NOT NULL DEFAULT '{}',
    active_alerts integer          NOT NULL DEFAULT 0,
    updated_at    timestamptz      NOT NULL,
    written_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id)
);

-- Dead letters of every stage; the sink's own (poison records) carry the
-- Kafka coordinates of the record they replace.
CREATE TABLE dead_letters (
    id              text        PRIMARY KEY,
    stage           text        NOT NULL,
    reason          text        NOT NULL,
    message         text        NOT NULL,
    source          text        NOT NULL,
    tenant          text,
    device_id       text,
    payload_excerpt bytea       NOT NULL,
    payload_size    bigint      NOT NULL,
    truncated       boolean     NOT NULL,
    content_type    text,
    headers         jsonb       NOT NULL DEFAULT '{}',
    received_at     timestamptz NOT NULL,
    ts              timestamptz NOT NULL,
    ingested_at     timestamptz NOT NULL,
    kafka_topic     text,
    kafka_partition integer,
    kafka_offset    bigint,
    written_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_reason_received ON dead_letters (reason, received_at);
CREATE INDEX dead_letters_received_brin ON dead_letters USING brin (received_at);
