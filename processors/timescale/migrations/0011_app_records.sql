-- app_records: the derived streams of stream apps (drover apps), one generic
-- table for every app's target topic (apps.*). One row per AppRecord; the
-- key is its deterministic event_id (a hash of the app, the source topic
-- and the source event id), so a replay or a rebalance writes nothing twice.
-- tenant is the tenant that owns the row: for a cross-tenant share the
-- receiving tenant, whose analysts read it through `drover sink
-- grant-tenant` (its security-barrier views cover every table with a tenant
-- column); source_tenant and agreement say where it came from and under
-- which sharing agreement. payload holds the SELECTed fields.
--
-- A plain table on both paths (not a hypertable or partitioned): app
-- outputs are filtered, small streams; the (tenant, app, ts) index serves
-- the analysts' queries.
CREATE TABLE app_records (
    event_id         text        NOT NULL PRIMARY KEY,
    ts               timestamptz NOT NULL,
    tenant           text        NOT NULL,
    source_tenant    text        NOT NULL,
    app              text        NOT NULL,
    device_id        text        NOT NULL,
    source_topic     text        NOT NULL,
    source_event_ids text[]      NOT NULL,
    agreement        text,
    payload          jsonb       NOT NULL,
    ingested_at      timestamptz NOT NULL,
    kafka_topic      text        NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_records_tenant_app_ts ON app_records (tenant, app, ts);

GRANT SELECT, INSERT, UPDATE ON app_records TO {{.Writer}};
GRANT SELECT ON app_records TO {{.Analyst}}, {{.Operator}};
