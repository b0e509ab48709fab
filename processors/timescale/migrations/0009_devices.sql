-- The device registry for analysts: one row per device of the compacted
-- devices.registry topic (registry/README.md), written by the sink like
-- every other table. Status, type, labels, alternative ids (a LoRaWAN
-- DevEUI) and times; of the credential only whether there is a secret and
-- how many certificates are enrolled — never the secret's hash, its salt or
-- the certificate fingerprints, and no actor names. A registry tombstone
-- (a revoked device deleted with `drover devices delete`) deletes the row;
-- tenant entries are not rows. Readings, fixes, alerts and the rest join
-- it on (tenant, device_id) for the labels (README: "Labels").
CREATE TABLE devices (
    tenant          text        NOT NULL,
    device_id       text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    device_type     text        NOT NULL DEFAULT '',
    labels          jsonb       NOT NULL DEFAULT '{}',
    alt_ids         jsonb       NOT NULL DEFAULT '{}',
    offline_timeout interval,
    has_secret      boolean     NOT NULL DEFAULT false,
    certificates    integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    ingested_at     timestamptz NOT NULL,
    written_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, device_id)
);
-- labels @> '{"herd": "north"}' finds a herd's devices.
CREATE INDEX devices_labels ON devices USING gin (labels);

GRANT SELECT, INSERT, UPDATE, DELETE ON devices TO {{.Writer}};
GRANT SELECT ON devices TO {{.Analyst}}, {{.Operator}};
-- A state.latest tombstone deletes the device's device_state row
-- (writer.go); 0004 granted the writer no DELETE, so a sink logging in
-- with only the writer role stalled on the first one.
GRANT DELETE ON device_state TO {{.Writer}};
